/* Recipe: grow a volume (shrinking is refused: it would destroy the data at its end).
 *
 * Locks: domain lock (shared), image lock (exclusive), the volume's lease exclusive, tried
 * once (a running VM refuses it: libvirt resizes a guest's disk through the guest).
 *
 * marker    mkdir tx/<txid>-<slot>-<owner>-<incarnation>; write marker (old and new size)
 * durable   barrier 1: the marker
 * grow      the data file grown (raw: truncate or fallocate; qcow2: qemu-img resize of the
 *           top file alone); its tail is garbage until the commit; barrier 2
 * commit    the metadata rewritten with the new capacity (write, fsync, rename, fsync)
 * done      remove the transaction directory
 *
 * Recovery (SettleResize): committed if the metadata says the new size; if it still says
 * the old one, the grow is undone (the collector holds the volume's lease exclusively
 * while it does, so no VM that started meanwhile sees its disk shrink). */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/operation.h"
#include "backend/engine/qemu_img.h"
#include "backend/engine/recipes/recipes.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace st = steps::resize;

Result<VolumeInfo> FileDomain::ResizeVolume(const std::string &name, uint64_t capacity,
                                            OpObserver *observer)
{
    OpRun run(*this, observer, name);
    Status status = run.Enter(st::kBegin);
    if (status.ok())
        status = recipes::ValidateCapacity(capacity);
    if (!status.ok())
        return run.Fail(status);
    auto scope = LockVolume(name, run);
    if (!scope.ok())
        return run.Fail(scope.status());
    const Image *image = &scope->image;
    meta::VolumeMeta m = scope->volume;
    if (Status legal = RequireLegal(m); !legal.ok())
        return run.Fail(legal);
    if (capacity < m.capacity)
        return run.Fail(Status::Error(ErrorCode::kInvalidArgument,
                                      _("shrinking a volume is not supported: it would destroy "
                                        "the data at its end; give a capacity of at least ") +
                                          std::to_string(m.capacity) + _(" bytes")));
    if (capacity == m.capacity)
        return ToInfo(*image, m);
    auto lease = LeaseGuard::Volume(*leases_, m.slot, LeaseMode::kExclusive, lockdep::Role::kNone,
                                    kTryOnce);
    if (!lease.ok())
        return run.Fail(VolumeBusy(name, lease.status()));

    status = [&]() -> Status {
        meta::Marker marker = recipes::NewMarker(*this, meta::TxOp::kResize, m, false);
        marker.old_capacity = m.capacity;
        marker.new_capacity = capacity;
        SDM_RETURN_IF_ERROR(run.BeginTransaction(st::kMarker, marker));
        SDM_RETURN_IF_ERROR(run.Enter(st::kDurable));
        SDM_RETURN_IF_ERROR(run.tx()->MakeDurable());

        /* The grown tail is garbage until the metadata says the volume is that large. */
        SDM_RETURN_IF_ERROR(run.Enter(st::kGrow));
        std::string rel = layout::VolumePath(m.image, m.uuid);
        auto data = OpenVolumeData(image->dir.get(), m, O_RDWR);
        if (!data.ok())
            return data.status();
        /* Growing the top layer reads nothing below it: qemu-img gets this file alone. */
        if (m.format == VolumeFormat::kQcow2)
            SDM_RETURN_IF_ERROR(qemu::Resize(qemu::ChainName({{data->get(), m.format}}),
                                             m.format, capacity, false));
        if (m.format == VolumeFormat::kRaw) {
            int err = m.prealloc == Preallocation::kFull
                          ? posix_fallocate(data->get(), 0, static_cast<off_t>(capacity))
                          : (ftruncate(data->get(), static_cast<off_t>(capacity)) == 0 ? 0 : errno);
            if (err != 0)
                return recipes::SizeError(err, rel);
        }
        Barrier barrier(sync_policy_);
        if (m.format == VolumeFormat::kQcow2)
            barrier.Data(data->get(), rel);
        else
            barrier.Inode(image->dir.get(), rel);
        SDM_RETURN_IF_ERROR(barrier.Sync());

        SDM_RETURN_IF_ERROR(run.Enter(st::kCommit));
        m.capacity = capacity;
        m.generation++;
        return fileio::AtomicWriteAt(image->dir.get(), layout::MetaFile(m.uuid), meta::Encode(m));
    }();
    if (!status.ok())
        return run.Fail(status);

    (void)run.Enter(st::kDone);
    (void)run.tx()->Finish();
    return ToInfo(*image, m);
}

namespace recipes {

/* A grow that did not commit is undone, so the data is no larger than its metadata says. */
Result<bool> SettleResize(FileDomain &domain, const meta::Marker &m)
{
    auto image = fileio::OpenDirAt(domain.images_dir(), m.image);
    if (!image.ok())
        return image.status().code() == ErrorCode::kNotFound ? Result<bool>(false)
                                                             : Result<bool>(image.status());
    auto meta = domain.ReadVolumeMeta(image->get(), m.image, m.volume);
    if (!meta.ok())
        return meta.status().code() == ErrorCode::kNotFound ? Result<bool>(false)
                                                            : Result<bool>(meta.status());
    if (meta->slot != m.slot || meta->name != m.name)
        return MarkerMismatch(m);
    (void)unlinkat(image->get(), (layout::MetaFile(m.volume) + layout::kTempSuffix).c_str(), 0);
    if (meta->capacity != m.old_capacity)
        return true;
    /* O_NONBLOCK: a FIFO planted there must not hang the collector. Only a regular file
     * with no other name is the volume's: through a hard link the shrink would cut a file
     * outside the domain, and qemu-img below must not meet anything else. */
    auto data = fileio::OpenAt(image->get(), m.volume, O_WRONLY | O_NONBLOCK);
    if (!data.ok())
        return data.status();
    struct stat st;
    if (fstat(data->get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1)
        return Status::Error(ErrorCode::kCorrupt,
                             layout::VolumePath(m.image, m.volume) +
                                 _(" is not a regular file with one name, so it is not the "
                                   "volume's data; left alone: inspect it and remove it by "
                                   "hand"));
    if (meta->format == VolumeFormat::kRaw) {
        if (static_cast<uint64_t>(st.st_size) > m.old_capacity &&
            ftruncate(data->get(), static_cast<off_t>(m.old_capacity)) != 0)
            return Status::FromErrno(errno, _("cannot undo the grow of ") +
                                                layout::VolumePath(m.image, m.volume));
        SDM_RETURN_IF_ERROR(fileio::FsyncFd(data->get(), layout::VolumePath(m.image, m.volume)));
        return false;
    }
    std::string path = domain.AbsPath(layout::VolumePath(m.image, m.volume));
    auto info = qemu::Info(path);
    if (!info.ok())
        return info.status();
    if (info->virtual_size > m.old_capacity)
        SDM_RETURN_IF_ERROR(qemu::Resize(path, meta->format, m.old_capacity, true));
    return false;
}

}  // namespace recipes
}  // namespace sdm
