/* The garbage collector.
 *
 * It looks only at tx/: its cost grows with the garbage, not with the number of volumes.
 * A transaction directory names its owner (an owner lease's slot) and the owner's
 * incarnation. The owner is gone when:
 *   - it is this attachment's owner slot in another incarnation (this process holds that
 *     owner lease, so the incarnation that wrote it is dead: an sdmd restart sweeps its
 *     predecessor's garbage at once), or this incarnation's own transaction that no thread
 *     runs any more (a failed cleanup);
 *   - it is another owner whose lease the collector can take (probed without waiting and
 *     given back at once). A dead host holds its owner lease until sanlock lets it expire
 *     (or an administrator frees its host id), so its garbage waits exactly that long.
 * A transaction of a live owner is left for a later sweep. One of the dead is taken over
 * by renaming its directory to the collector's own owner and incarnation: of several
 * collectors on several hosts, exactly one rename succeeds. The collector then takes the
 * locks the marker names (the image lock, and the volume lease for a resize, both without
 * waiting), settles the transaction with Recover() and removes the marker last. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/operation.h"
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
    /* A format that committed but died before removing its claim. */
    struct stat st;
    if (!options.dry_run &&
        fstatat(root_.get(), layout::kFormatClaim, &st, AT_SYMLINK_NOFOLLOW) == 0)
        (void)unlinkat(root_.get(), layout::kFormatClaim, 0);
    auto entries = fileio::ListDirAt(tx_.get(), ".");
    if (!entries.ok())
        return entries.status();

    for (const auto &entry : *entries) {
        std::string where = std::string(layout::kTxDir) + "/" + entry;
        auto name = layout::ParseTxDirName(entry);
        if (!name) {
            report.lines.push_back(where + (layout::ParseLegacyTxDirName(entry)
                                                ? _(": a format 1 transaction; run the "
                                                    "upgrade again")
                                                : _(": not a transaction directory; left "
                                                    "alone")));
            continue;
        }
        report.markers_seen++;
        if (IsOwnTransaction(entry)) {
            report.skipped_live++;
            report.lines.push_back(where + _(": running in this process"));
            continue;
        }
        if (name->owner.owner != owner_.owner) {
            lockdep::Key key = OwnerLeaseKey(name->owner.owner);
            lockdep::WillAcquire(key);
            auto probe = leases_->Acquire(LeaseArea::kOwners, name->owner.owner,
                                          LeaseMode::kExclusive, kNoWait);
            /* An owner lease never written was never held: its owner is no process. */
            bool never = !probe.ok() && probe.status().code() == ErrorCode::kNotFound;
            if (!probe.ok() && !never) {
                if (probe.status().code() == ErrorCode::kBusy) {
                    report.skipped_live++;
                    report.lines.push_back(where + Printf(_(": owner %u alive (it holds its "
                                                            "owner lease)"),
                                                          name->owner.owner));
                } else {
                    report.errors++;
                    report.lines.push_back(where + ": " + probe.status().message());
                }
                continue;
            }
            if (!never) {
                lockdep::Acquired(key);
                probe->reset(); /* proof enough: that incarnation can never come back */
                lockdep::Released(key);
            }
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
        LeaseGuard volume_lease;
        if (first.marker) {
            auto lock = locks_.Lock(ImageLockKey(first.marker->image), LockMode::kExclusive, kNoWait);
            if (!lock.ok()) {
                report.skipped_live++;
                report.lines.push_back(where + _(": its image is locked by a running operation"));
                continue;
            }
            image_lock = std::move(*lock);
            /* Undoing a grow shrinks a volume: not under a VM that started on it since. */
            if (first.marker->op == meta::TxOp::kResize) {
                auto lease = LeaseGuard::Volume(*leases_, first.marker->slot,
                                                LeaseMode::kExclusive, lockdep::Role::kNone,
                                                kNoWait);
                if (!lease.ok()) {
                    report.skipped_live++;
                    report.lines.push_back(where + _(": its volume is in use: ") +
                                           lease.status().message());
                    continue;
                }
                volume_lease = std::move(*lease);
            }
        }
        std::string what = first.marker ? std::string(meta::TxOpName(first.marker->op)) +
                                              " '" + first.marker->name + "'"
                                        : "(" + first.problem + ")";
        if (first.derived)
            what += _(" (marker rebuilt from the image)");
        if (options.dry_run) {
            report.collected++;
            report.lines.push_back(where + _(": would collect abandoned ") + what);
            continue;
        }

        /* Take it over: of all collectors, the one whose rename succeeds settles it. */
        Step(steps::gc::kClaim, nullptr);
        std::string mine = layout::TxDirName({name->txid, name->slot, owner_});
        if (mine != entry) {
            if (renameat(tx_.get(), entry.c_str(), tx_.get(), mine.c_str()) != 0) {
                if (errno != ENOENT) {
                    report.errors++;
                    report.lines.push_back(where + ": " +
                                           Status::FromErrno(errno, _("cannot take it over"))
                                               .message());
                }
                continue;
            }
        }
        AddOwnTransaction(mine);
        /* Read again as ours: the owner may have finished its marker before dying. */
        TxRead now = ReadTransaction(*this, mine, *name);
        if (now.marker.has_value() != first.marker.has_value() ||
            (now.marker && now.marker->image != first.marker->image)) {
            RemoveOwnTransaction(mine);
            report.lines.push_back(where + _(": changed while being inspected; next sweep"));
            continue;
        }
        auto recovered = Recover(*this, mine, now.marker ? &*now.marker : nullptr);
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
