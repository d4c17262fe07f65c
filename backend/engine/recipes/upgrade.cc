/* Recipe: upgrade a format 1 domain to format 2 in place.
 *
 * Format 1 ran every metadata operation under the domain lease, named each transaction
 * <txid>-<slot> after the volume lease protecting it, and indexed every volume by slot
 * (images/<slot>). Format 2 needs chunks/ and the owners file, names transactions after
 * their owner, and has no slot index. Under the domain lease held exclusively (no format 1
 * operation is running anywhere, and no host has the domain attached):
 *
 * begin     domain.meta read; the domain lease taken exclusively
 * skeleton  chunks/ made, the owners file made (both kept if there)
 * adopt     every format 1 transaction renamed to a format 2 name owned by this upgrade:
 *           abandoned (its owner held the domain lease, which is ours now), it is settled
 *           by the sweep below as any transaction of a dead owner
 * commit    domain.meta rewritten with version 2
 * cleanup   the slot index entries removed
 * done      the leases released; the domain opened and swept
 *
 * Every step is idempotent: after an interruption, run the upgrade again; on a format 2
 * domain it does what is left (cleanup and sweep). */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/local_lease.h"

namespace sdm {

namespace st = steps::upgrade;

Result<UpgradeReport> Domain::Upgrade(const std::string &path, const DomainOptions &options)
{
    UpgradeReport report;
    Step(st::kBegin, nullptr);
    auto root = fileio::OpenDirPath(path);
    if (!root.ok())
        return root.status();
    const int fd = root->get();
    meta::DomainMeta meta;
    auto info = ReadDomainInfo(fd, path, &meta);
    if (!info.ok())
        return info.status();
    report.from_version = meta.version;
    report.to_version = meta::kDomainVersion;
    auto leases = options.leases ? options.leases
                                 : std::make_shared<LocalLeaseManager>(path, meta.alignment);

    auto images = fileio::OpenDirAt(fd, layout::kImagesDir);
    if (!images.ok())
        return images.status();
    auto tx = fileio::OpenDirAt(fd, layout::kTxDir);
    if (!tx.ok())
        return tx.status();

    Status status = [&]() -> Status {
        auto domain_lease = leases->Acquire(LeaseArea::kLeases, layout::kDomainLeaseSlot,
                                            LeaseMode::kExclusive, options.lock_timeout);
        if (!domain_lease.ok())
            return Status::Error(
                domain_lease.status().code(),
                Printf(_("cannot upgrade domain %s: it is in use (%s); stop the pool (detach "
                         "the domain) on every host, then run the upgrade again"),
                       meta.uuid.c_str(), domain_lease.status().message().c_str()));

        Step(st::kSkeleton, nullptr);
        if (mkdirat(fd, layout::kChunksDir, 0755) != 0 && errno != EEXIST)
            return Status::FromErrno(errno, path + "/" + layout::kChunksDir);
        if (fchmodat(fd, layout::kChunksDir, 0755, 0) != 0)
            return Status::FromErrno(errno, path + "/" + layout::kChunksDir);
        {
            auto owners = fileio::OpenAt(fd, layout::kOwners, O_RDWR | O_CREAT, 0660);
            if (!owners.ok())
                return owners.status();
            struct stat st;
            if (fstat(owners->get(), &st) != 0 || fchmod(owners->get(), 0660) != 0 ||
                (static_cast<uint64_t>(st.st_size) < meta.alignment &&
                 ftruncate(owners->get(), static_cast<off_t>(meta.alignment)) != 0))
                return Status::FromErrno(errno, path + "/" + layout::kOwners);
            SDM_RETURN_IF_ERROR(fileio::FsyncFd(owners->get(), path + "/" + layout::kOwners));
        }
        SDM_RETURN_IF_ERROR(fileio::FsyncDirAt(fd, "."));

        /* The adopted transactions need an owner that is gone once the upgrade ends. */
        std::unique_ptr<LeaseHandle> owner_lease;
        layout::Owner owner;
        for (uint32_t o = leases->FirstOwner(); o <= leases->LastOwner() && !owner_lease; o++) {
            SDM_RETURN_IF_ERROR(leases->InitOwner(o));
            auto lease = leases->Acquire(LeaseArea::kOwners, o, LeaseMode::kExclusive,
                                         std::chrono::milliseconds(0));
            if (lease.ok()) {
                owner_lease = std::move(*lease);
                owner = {o, layout::NewIncarnation()};
            } else if (lease.status().code() != ErrorCode::kBusy) {
                return lease.status();
            }
        }
        if (!owner_lease)
            return Status::Error(ErrorCode::kBusy,
                                 _("no owner lease is free to adopt the domain's pending "
                                   "transactions; is another sdmd running with this host id?"));

        Step(st::kAdopt, nullptr);
        auto pending = fileio::ListDirAt(tx->get(), ".");
        if (!pending.ok())
            return pending.status();
        for (const auto &entry : *pending) {
            auto legacy = layout::ParseLegacyTxDirName(entry);
            if (!legacy || layout::ParseTxDirName(entry))
                continue;
            std::string adopted = layout::TxDirName({legacy->txid, legacy->slot, owner});
            SDM_RETURN_IF_ERROR(fileio::RenameAt(tx->get(), entry, tx->get(), adopted, true));
            report.adopted++;
        }
        SDM_RETURN_IF_ERROR(fileio::FsyncDirAt(tx->get(), "."));

        Step(st::kCommit, nullptr);
        if (meta.version < meta::kDomainVersion) {
            meta.version = meta::kDomainVersion;
            SDM_RETURN_IF_ERROR(fileio::AtomicWriteAt(fd, layout::kDomainMeta, meta::Encode(meta)));
        }

        Step(st::kCleanup, nullptr);
        auto entries = fileio::ListDirAt(images->get(), ".");
        if (!entries.ok())
            return entries.status();
        for (const auto &entry : *entries) {
            if (layout::ClassifyImagesEntry(entry) != layout::EntryKind::kLegacySlot)
                continue;
            struct stat st;
            if (fstatat(images->get(), entry.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISLNK(st.st_mode))
                continue; /* not ours to remove: check reports it */
            if (unlinkat(images->get(), entry.c_str(), 0) != 0 && errno != ENOENT)
                return Status::FromErrno(errno, path + "/" + layout::kImagesDir + "/" + entry);
            report.slot_links_removed++;
        }
        return fileio::FsyncDirAt(images->get(), ".");
    }();
    if (!status.ok())
        return status;

    Step(st::kDone, nullptr);
    auto domain = Domain::Open(path, options);
    if (!domain.ok())
        return domain.status();
    auto swept = (*domain)->CollectGarbage();
    if (!swept.ok())
        return swept.status();
    report.gc = std::move(*swept);
    return report;
}

}  // namespace sdm
