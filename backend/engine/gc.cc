/* The garbage collector.
 *
 * It looks only at tx/: its cost grows with the garbage, not with the number of volumes.
 * For each transaction directory it takes the locks the marker names (image lock, then the
 * protecting lease, both without waiting), which proves the owner is gone; re-reads the
 * marker; and settles the transaction with Recover(), which removes the marker last. A
 * lease it cannot take means a live owner (here or on another host): the transaction is
 * left for a later sweep. Several collectors may run at once on any hosts: the lease admits
 * one per transaction, and every step of Recover is idempotent. */
#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace {

constexpr std::chrono::milliseconds kNoWait{0};

}  // namespace

Result<GcReport> FileDomain::CollectGarbage(const GcOptions &options)
{
    GcReport report;
    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kShared, options_.lock_timeout);
    if (!domain_lock.ok())
        return domain_lock.status();
    auto entries = fileio::ListDirAt(tx_.get(), ".");
    if (!entries.ok())
        return entries.status();

    for (const auto &entry : *entries) {
        std::string where = std::string(layout::kTxDir) + "/" + entry;
        auto name = layout::ParseTxDirName(entry);
        if (!name) {
            report.lines.push_back(where + _(": not a transaction directory; left alone"));
            continue;
        }
        report.markers_seen++;
        if (IsOwnTransaction(entry)) {
            report.skipped_live++;
            report.lines.push_back(where + _(": running in this process"));
            continue;
        }
        TxRead first = ReadTransaction(*this, entry, *name);
        if (first.gone)
            continue;
        if (first.hostile) {
            report.errors++;
            report.lines.push_back(where + ": " + first.problem + _("; left alone"));
            continue;
        }
        LockGuard image_lock;
        if (first.marker) {
            auto lock = locks_.Lock(ImageLockKey(first.marker->image), LockMode::kExclusive, kNoWait);
            if (!lock.ok()) {
                report.skipped_live++;
                report.lines.push_back(where + _(": its image is locked by a running operation"));
                continue;
            }
            image_lock = std::move(*lock);
        }
        auto lease = LeaseGuard::Volume(*leases_, name->slot, LeaseMode::kExclusive,
                                        lockdep::Role::kNone, kNoWait);
        if (!lease.ok()) {
            if (lease.status().code() == ErrorCode::kBusy) {
                report.skipped_live++;
                report.lines.push_back(where + _(": owner alive (it holds lease slot ") +
                                       std::to_string(name->slot) + ")");
            } else {
                report.errors++;
                report.lines.push_back(where + ": " + lease.status().message());
            }
            continue;
        }
        /* The owner is gone. Read again: it may have finished its marker before dying. */
        TxRead now = ReadTransaction(*this, entry, *name);
        if (now.gone)
            continue;
        if (now.marker.has_value() != first.marker.has_value() ||
            (now.marker && now.marker->image != first.marker->image)) {
            report.lines.push_back(where + _(": changed while being inspected; next sweep"));
            continue;
        }
        std::string what = now.marker ? std::string(meta::TxOpName(now.marker->op)) + " '" +
                                            now.marker->name + "'"
                                      : "(" + now.problem + ")";
        if (now.derived)
            what += _(" (marker rebuilt from the committed image)");
        if (options.dry_run) {
            report.collected++;
            report.lines.push_back(where + _(": would collect abandoned ") + what);
            continue;
        }
        auto recovered = Recover(*this, entry, now.marker ? &*now.marker : nullptr);
        if (!recovered.ok()) {
            report.errors++;
            report.lines.push_back(where + ": " + what + ": " + recovered.status().message());
            continue;
        }
        report.collected++;
        if (*recovered)
            report.rolled_forward++;
        report.lines.push_back(where + (*recovered ? _(": completed committed ")
                                                   : _(": rolled back ")) + what);
    }
    return report;
}

}  // namespace sdm
