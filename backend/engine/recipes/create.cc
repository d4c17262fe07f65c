/* Recipe: create a volume — the base volume of a new image, or a snapshot layer (qcow2 on a
 * backing volume of an existing image).
 *
 * Locks: domain lock (shared), image lock (exclusive); a layer also takes its backing
 * volume's lease shared, once (a VM writing the backing volume, or another host deleting
 * or resizing it, refuses the layer). A new image takes no lease at all: its transaction
 * is protected by this attachment's owner lease and its lease slot comes from this
 * owner's chunks.
 *
 * New image                              | Layer
 * ---------------------------------------+-----------------------------------------------
 * marker    mkdir tx/<image>-<slot>-<o>-<i>| mkdir tx/<txid>-...; write marker
 * image-dir mkdir <tx>/<image>            |
 * metadata  <tx>/<image>/<vol>.meta       | <tx>/<vol>.meta
 * data      <tx>/<image>/<vol>            | <tx>/<vol> (qcow2 backed by the parent)
 * claim     symlink images/@<name>        | the same
 * durable   barrier 1                     | barrier 1 (marker too)
 * place-data                              | rename <tx>/<vol> -> images/<image>/; barrier
 * commit    rename <tx>/<image> -> images/ | rename <tx>/<vol>.meta -> images/<image>/
 * index     root link; barrier 2          | the same
 * done      remove the transaction directory (not synced: the collector finishes it)
 *
 * Recovery (SettleCreate, also clone's): committed if the volume's metadata is in images/.
 * Forward: the claim and the root link are made again if a crash lost them, and synced.
 * Back: a layer's placed data file is removed; the claim is released if it is ours. A
 * claim whose transaction a power cut lost before barrier 1 is an orphan, removed by the
 * next create of that name (FileDomain::ClaimName). */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <optional>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/operation.h"
#include "backend/engine/qemu_img.h"
#include "backend/engine/recipes/recipes.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace st = steps::create;

namespace {

/* Creates a volume's data file in `dir` as the format and preallocation ask; the caller
 * syncs it together with the metadata (one journal commit on most filesystems). */
Status CreateData(FileDomain &domain, int dir, const std::string &dir_rel,
                  const meta::VolumeMeta &m, const meta::VolumeMeta *parent)
{
    if (m.format == VolumeFormat::kQcow2) {
        std::string path = domain.AbsPath(dir_rel + "/" + m.uuid);
        SDM_RETURN_IF_ERROR(qemu::Create(path, m.format, m.capacity, m.prealloc,
                                         parent ? parent->uuid : "",
                                         parent ? parent->format : VolumeFormat::kRaw));
        if (fchmodat(dir, m.uuid.c_str(), kDataMode, 0) != 0)
            return Status::FromErrno(errno, path);
        return Status::Ok();
    }
    auto fd = fileio::OpenAt(dir, m.uuid, O_RDWR | O_CREAT | O_EXCL, kDataMode);
    if (!fd.ok())
        return fd.status();
    std::string what = dir_rel + "/" + m.uuid;
    if (fchmod(fd->get(), kDataMode) != 0) /* whatever the umask */
        return Status::FromErrno(errno, what);
    if (m.prealloc == Preallocation::kFull) {
        int err = posix_fallocate(fd->get(), 0, static_cast<off_t>(m.capacity));
        if (err != 0)
            return recipes::SizeError(err, what);
    } else if (ftruncate(fd->get(), static_cast<off_t>(m.capacity)) != 0) {
        return recipes::SizeError(errno, what);
    }
    return Status::Ok();
}

Status ValidateCreate(const CreateParams &params)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(params.name));
    SDM_RETURN_IF_ERROR(recipes::CheckPlannedId(params.uuid, "volume uuid"));
    SDM_RETURN_IF_ERROR(recipes::CheckPlannedId(params.image, "image uuid"));
    if (params.format == VolumeFormat::kRaw && params.prealloc == Preallocation::kMetadata)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("metadata preallocation needs the qcow2 format"));
    if (!params.backing.empty() && params.format != VolumeFormat::kQcow2)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("a volume on a backing volume must be qcow2"));
    if (params.backing.empty() || params.capacity != 0)
        SDM_RETURN_IF_ERROR(recipes::ValidateCapacity(params.capacity));
    return Status::Ok();
}

}  // namespace

Result<VolumeInfo> FileDomain::PlanVolume(const CreateParams &params)
{
    SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(params.name));
    meta::VolumeMeta m;
    m.uuid = layout::NewUuid();
    m.image = layout::NewUuid();
    m.name = params.name;
    m.format = params.format;
    m.capacity = params.capacity;
    if (!params.backing.empty()) {
        auto backing = Resolve(params.backing);
        if (!backing.ok())
            return backing.status();
        m.image = backing->image;
        m.parent = backing->uuid;
    }
    Image image;
    image.uuid = m.image;
    return ToInfo(image, m);
}

Result<VolumeInfo> FileDomain::CreateVolume(const CreateParams &params, OpObserver *observer)
{
    OpRun run(*this, observer, params.name);
    Status status = run.Enter(st::kBegin);
    if (status.ok())
        status = ValidateCreate(params);
    if (!status.ok())
        return run.Fail(status);
    meta::VolumeMeta m;
    m.uuid = params.uuid.empty() ? layout::NewUuid() : params.uuid;
    m.image = params.image.empty() ? layout::NewUuid() : params.image;
    m.name = params.name;
    m.format = params.format;
    m.prealloc = params.prealloc;
    m.capacity = params.capacity;
    m.ctime = time(nullptr);

    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kShared, options_.lock_timeout);
    if (!domain_lock.ok())
        return run.Fail(domain_lock.status());
    if (!params.backing.empty()) {
        auto backing = Resolve(params.backing);
        if (!backing.ok())
            return run.Fail(backing.status());
        if (!params.image.empty() && params.image != backing->image)
            return run.Fail(Status::Error(
                ErrorCode::kInvalidArgument,
                sdm::Printf(_("a layer lives in its backing volume's image %s, not in the "
                              "planned image %s; plan the volume again"),
                            backing->image.c_str(), params.image.c_str())));
        m.image = backing->image;
    }
    run.SetImage(m.image);
    auto image_lock = locks_.Lock(ImageLockKey(m.image), LockMode::kExclusive,
                                  options_.lock_timeout);
    if (!image_lock.ok())
        return run.Fail(image_lock.status());

    std::optional<Image> image;
    std::optional<meta::VolumeMeta> parent;
    LeaseGuard backing_lease;
    if (!params.backing.empty()) {
        auto read = ReadImage(m.image);
        if (!read.ok())
            return run.Fail(read.status());
        image = std::move(*read);
        /* Read again under the image lock: the backing volume may have changed meanwhile. */
        for (const auto &v : image->volumes)
            if (v.name == params.backing)
                parent = v;
        if (!parent)
            return run.Fail(Status::Error(ErrorCode::kNotFound,
                                          _("backing volume '") + params.backing +
                                              _("' was deleted meanwhile")));
        if (Status legal = RequireLegal(*parent); !legal.ok())
            return run.Fail(legal);
        if (m.capacity == 0)
            m.capacity = parent->capacity;
        if (m.capacity < parent->capacity)
            return run.Fail(Status::Error(ErrorCode::kInvalidArgument,
                                          _("a layer cannot be smaller than its backing volume")));
        m.parent = parent->uuid;
        /* A guest writing the backing volume would go on writing what just became a
         * read-only backing file; another host's delete or resize of it must wait. */
        auto lease = LeaseGuard::Volume(*leases_, parent->slot, LeaseMode::kShared,
                                        lockdep::Role::kNone, kTryOnce);
        if (!lease.ok())
            return run.Fail(VolumeBusy(params.backing, lease.status()));
        backing_lease = std::move(*lease);
    }
    const bool new_image = !parent;

    SlotTicket ticket(*this, run);
    if (Status taken = ticket.Take(); !taken.ok())
        return run.Fail(taken);
    m.slot = ticket.slot();

    status = [&]() -> Status {
        SDM_RETURN_IF_ERROR(run.BeginTransaction(
            st::kMarker, recipes::NewMarker(*this, meta::TxOp::kCreate, m, new_image)));
        Transaction &t = *run.tx();

        SDM_RETURN_IF_ERROR(run.Enter(st::kImageDir));
        fileio::Fd work;
        std::string work_rel = new_image ? t.RelPath(m.image) : t.Rel();
        if (new_image) {
            auto dir = t.MakeImageDir(m.image);
            if (!dir.ok())
                return dir.status();
            work = std::move(*dir);
        }
        int work_fd = new_image ? work.get() : t.dirfd();

        SDM_RETURN_IF_ERROR(run.Enter(st::kMetadata));
        SDM_RETURN_IF_ERROR(fileio::WriteFileAt(work_fd, layout::MetaFile(m.uuid), meta::Encode(m)));
        SDM_RETURN_IF_ERROR(run.Enter(st::kData));
        SDM_RETURN_IF_ERROR(CreateData(*this, work_fd, work_rel, m,
                                       parent ? &*parent : nullptr));
        SDM_RETURN_IF_ERROR(run.Enter(st::kClaim));
        SDM_RETURN_IF_ERROR(ClaimName(m.name, m.image, m.uuid, t.dirfd()));

        SDM_RETURN_IF_ERROR(run.Enter(st::kDurable));
        Barrier barrier(sync_policy_);
        if (!new_image)
            SDM_RETURN_IF_ERROR(t.AddTo(barrier));
        barrier.Dir(work_fd, work_rel);
        barrier.Dir(images_.get(), layout::kImagesDir);
        SDM_RETURN_IF_ERROR(barrier.DataAt(work_fd, layout::MetaFile(m.uuid),
                                           work_rel + "/" + layout::MetaFile(m.uuid)));
        if (m.format == VolumeFormat::kQcow2)
            SDM_RETURN_IF_ERROR(barrier.DataAt(work_fd, m.uuid, work_rel + "/" + m.uuid));
        else
            barrier.Inode(work_fd, work_rel + "/" + m.uuid);
        SDM_RETURN_IF_ERROR(barrier.Sync());

        if (new_image) {
            SDM_RETURN_IF_ERROR(run.Enter(st::kCommit));
            SDM_RETURN_IF_ERROR(fileio::RenameAt(t.dirfd(), m.image, images_.get(), m.image, true));
            SDM_RETURN_IF_ERROR(run.Enter(st::kIndex));
            LinkRoot(m.name, m.image, m.uuid);
            return SyncNamespace(images_.get(), layout::kImagesDir);
        }
        /* A layer's data goes into the image first; its metadata's rename is the commit. */
        SDM_RETURN_IF_ERROR(run.Enter(st::kPlaceData));
        SDM_RETURN_IF_ERROR(fileio::RenameAt(t.dirfd(), m.uuid, image->dir.get(), m.uuid, true));
        barrier.Dir(image->dir.get(), layout::ImagePath(m.image));
        SDM_RETURN_IF_ERROR(barrier.Sync());
        SDM_RETURN_IF_ERROR(run.Enter(st::kCommit));
        SDM_RETURN_IF_ERROR(fileio::RenameAt(t.dirfd(), layout::MetaFile(m.uuid),
                                             image->dir.get(), layout::MetaFile(m.uuid), true));
        SDM_RETURN_IF_ERROR(run.Enter(st::kIndex));
        LinkRoot(m.name, m.image, m.uuid);
        return SyncNamespace(image->dir.get(), layout::ImagePath(m.image));
    }();
    if (!status.ok())
        return run.Fail(status);

    /* Committed: from here on, failing to tidy up is the collector's business. */
    ticket.Committed();
    (void)run.Enter(st::kDone);
    (void)run.tx()->Finish();
    if (new_image)
        return NewImageInfo(m);
    return ToInfo(*image, m);
}

namespace recipes {

/* The claim and root link of a committed volume, made again if a crash lost them. A claim
 * held by another volume means the marker is not this volume's. */
static Status RollForward(FileDomain &domain, const meta::Marker &m, int dir_fd)
{
    auto image = domain.ReadImage(m.image);
    if (!image.ok())
        return image.status();
    const meta::VolumeMeta *v = image->Find(m.volume);
    if (!v || v->name != m.name || v->slot != m.slot)
        return MarkerMismatch(m);
    Status claimed = domain.ClaimName(m.name, m.image, m.volume, dir_fd);
    if (!claimed.ok())
        return claimed.code() == ErrorCode::kAlreadyExists ? MarkerMismatch(m) : claimed;
    domain.LinkRoot(m.name, m.image, m.volume);
    /* After a crash the commit itself may not be durable yet: sync it with the claim. */
    return m.new_image ? domain.SyncNamespace(domain.images_dir(), layout::kImagesDir)
                       : domain.SyncNamespace(image->dir.get(), layout::ImagePath(m.image));
}

Result<bool> SettleCreate(FileDomain &domain, const std::string &dir_name, const meta::Marker &m)
{
    std::string committed = m.new_image ? layout::ImagePath(m.image)
                                        : layout::MetaPath(m.image, m.volume);
    struct stat st;
    if (fstatat(domain.root(), committed.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        auto dir = fileio::OpenDirAt(domain.tx_dir(), dir_name);
        if (!dir.ok())
            return dir.status();
        SDM_RETURN_IF_ERROR(RollForward(domain, m, dir->get()));
        return true;
    }
    if (!m.new_image) {
        /* A layer's data is placed in its image just before the commit. */
        auto image = fileio::OpenDirAt(domain.images_dir(), m.image);
        if (image.ok())
            SDM_RETURN_IF_ERROR(fileio::RemoveTreeAt(image->get(), m.volume));
    }
    SDM_RETURN_IF_ERROR(domain.ReleaseName(m.name, m.image, m.volume));
    return false;
}

}  // namespace recipes
}  // namespace sdm
