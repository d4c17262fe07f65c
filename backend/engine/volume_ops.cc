/* The volume operations, each one storage transaction: create (a new image, or a snapshot
 * layer on a volume of an existing image), clone into a new image, delete, and resize.
 *
 * Every operation takes its locks in lockdep's order (docs/locking.md): domain lease,
 * domain lock (shared), image lock(s), allocator (briefly), volume lease(s). Nothing
 * outside the transaction directory changes before Transaction::MakeDurable, and the
 * commit is a single rename. On any failure after Begin, the owner settles its own
 * transaction with Recover(), the garbage collector's routine, while it still holds the
 * protecting lease. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <optional>
#include <vector>

#include "backend/engine/copy.h"
#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/operation.h"
#include "backend/engine/qemu_img.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace {

/* A reserved name and lease slot for a new volume, and the slot's lease. A slot whose
 * lease is still held (the delete of its last volume is finishing, here or on another
 * host) is passed over. Reservations are given back when this goes away; by then the
 * volume is either indexed or gone. */
class Reservation {
public:
    Reservation(FileDomain &domain, std::string name) : domain_(domain), name_(std::move(name)) {}
    ~Reservation()
    {
        for (uint64_t slot : slots_)
            domain_.Unreserve(slots_.front() == slot ? name_ : "", slot);
    }

    Result<LeaseGuard> TakeWithLease(lockdep::Role role)
    {
        constexpr int kAttempts = 16;
        for (int i = 0; i < kAttempts; i++) {
            uint64_t slot = 0;
            SDM_RETURN_IF_ERROR(domain_.Reserve(slots_.empty() ? name_ : "", &slot));
            slots_.push_back(slot);
            /* A slot past the lease batches on storage has no lease to acquire yet. */
            SDM_RETURN_IF_ERROR(domain_.leases().InitSlot(slot));
            auto lease = LeaseGuard::Volume(domain_.leases(), slot, LeaseMode::kExclusive, role,
                                            kTryOnce);
            if (lease.ok() || lease.status().code() != ErrorCode::kBusy)
                return lease;
        }
        return Status::Error(ErrorCode::kBusy,
                             _("every free lease slot tried is still held by another host; "
                               "try again later"));
    }
    uint64_t slot() const { return slots_.back(); }

private:
    FileDomain &domain_;
    std::string name_;
    std::vector<uint64_t> slots_;
};

Status ValidateCapacity(uint64_t capacity)
{
    if (capacity == 0)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("capacity must be greater than 0 bytes"));
    if (capacity > meta::kMaxCapacity)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("capacity is larger than the 64 PiB a volume may have"));
    return Status::Ok();
}

/* The error for a data file that cannot have the size asked for. */
Status SizeError(int err, const std::string &what)
{
    if (err == ENOSPC)
        return Status::Error(ErrorCode::kNoSpace,
                             _("not enough free space on the domain's filesystem for ") + what +
                                 _("; free space, or use sparse allocation"));
    if (err == EFBIG)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("capacity is larger than the domain's filesystem allows for one "
                               "file"));
    return Status::FromErrno(err, what);
}

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
            return SizeError(err, what);
    } else if (ftruncate(fd->get(), static_cast<off_t>(m.capacity)) != 0) {
        return SizeError(errno, what);
    }
    return Status::Ok();
}

/* Makes a new image in the transaction visible: the commit rename, then the index. */
Status CommitNewImage(FileDomain &domain, OpRun &run, const meta::VolumeMeta &m,
                      const char *commit_step, const char *index_step)
{
    Transaction &tx = *run.tx();
    SDM_RETURN_IF_ERROR(run.Enter(commit_step));
    SDM_RETURN_IF_ERROR(fileio::RenameAt(tx.dirfd(), m.image, domain.images_dir(), m.image, true));
    SDM_RETURN_IF_ERROR(run.Enter(index_step));
    SDM_RETURN_IF_ERROR(domain.AddIndex(m.name, m.slot, m.image, m.uuid));
    return domain.SyncNamespace(domain.images_dir(), layout::kImagesDir);
}

meta::Marker NewMarker(const FileDomain &domain, meta::TxOp op, const meta::VolumeMeta &m,
                       bool new_image)
{
    meta::Marker marker;
    /* A new image's transaction is named after the image: even with its marker lost, the
     * directory says which commit it makes (see ReadTransaction). */
    bool makes_image = new_image && (op == meta::TxOp::kCreate || op == meta::TxOp::kClone);
    marker.txid = makes_image ? m.image : layout::NewUuid();
    marker.op = op;
    marker.host_id = domain.options().host_id;
    marker.generation = domain.options().generation;
    marker.slot = m.slot;
    marker.image = m.image;
    marker.volume = m.uuid;
    marker.name = m.name;
    marker.new_image = new_image;
    marker.format = m.format;
    marker.ctime = time(nullptr);
    return marker;
}

/* Where a new image's data comes from: a committed volume (clone) or a file outside the
 * domain (import). */
struct CopySource {
    int fd = -1;              /* the source's data, when it is raw and flat */
    std::string path;         /* the source's file (a descriptor's name), for qemu-img */
    VolumeFormat format = VolumeFormat::kRaw;
    bool flat = true;         /* no backing chain */
    uint64_t size = 0;        /* the source's virtual size */
};

/* The clone's transaction, shared by clone and import: a new image whose only volume is
 * ILLEGAL while the source is copied in (and grown to m.capacity if that is larger), made
 * LEGAL once the data is durable, then committed by one rename. */
Status CopyIntoNewImage(FileDomain &domain, OpRun &run, meta::VolumeMeta &m,
                        const CopySource &source)
{
    SDM_RETURN_IF_ERROR(run.BeginTransaction(
        "clone.marker", NewMarker(domain, meta::TxOp::kClone, m, true)));
    Transaction &t = *run.tx();

    SDM_RETURN_IF_ERROR(run.Enter("clone.image-dir"));
    auto work = t.MakeImageDir(m.image);
    if (!work.ok())
        return work.status();
    /* ILLEGAL until the copy is complete: nobody may use a half-copied volume. */
    SDM_RETURN_IF_ERROR(run.Enter("clone.metadata-illegal"));
    SDM_RETURN_IF_ERROR(fileio::WriteFileAt(work->get(), layout::MetaFile(m.uuid),
                                            meta::Encode(m)));
    SDM_RETURN_IF_ERROR(run.Enter("clone.lease-area"));
    SDM_RETURN_IF_ERROR(domain.leases().InitSlot(m.slot));

    SDM_RETURN_IF_ERROR(run.Enter("clone.copy"));
    std::string target_rel = t.RelPath(m.image + "/" + m.uuid);
    fileio::Fd out;
    if (source.fd >= 0 && m.format == VolumeFormat::kRaw) {
        auto created = fileio::OpenAt(work->get(), m.uuid, O_RDWR | O_CREAT | O_EXCL, kDataMode);
        if (!created.ok())
            return created.status();
        out = std::move(*created);
        SDM_RETURN_IF_ERROR(copy::CopySparse(source.fd, out.get(), source.size, run.observer()));
        if (m.capacity > source.size && ftruncate(out.get(), static_cast<off_t>(m.capacity)) != 0)
            return SizeError(errno, target_rel);
    } else {
        SDM_RETURN_IF_ERROR(qemu::Convert(source.path, source.format, domain.AbsPath(target_rel),
                                          m.format, source.size, run.observer()));
        if (m.capacity > source.size)
            SDM_RETURN_IF_ERROR(qemu::Resize(domain.AbsPath(target_rel), m.format, m.capacity,
                                             false));
        auto opened = fileio::OpenAt(work->get(), m.uuid, O_RDWR);
        if (!opened.ok())
            return opened.status();
        out = std::move(*opened);
    }
    if (fchmod(out.get(), kDataMode) != 0) /* whatever the umask */
        return Status::FromErrno(errno, target_rel);
    SDM_RETURN_IF_ERROR(run.Enter("clone.copied"));
    /* Neither the copy nor qemu-img flushes what it wrote. */
    SDM_RETURN_IF_ERROR(fileio::FsyncFd(out.get(), target_rel));

    SDM_RETURN_IF_ERROR(run.Enter("clone.legal"));
    m.legality = Legality::kLegal;
    m.generation++;
    SDM_RETURN_IF_ERROR(fileio::AtomicWriteAt(work->get(), layout::MetaFile(m.uuid),
                                              meta::Encode(m), false));
    SDM_RETURN_IF_ERROR(run.Enter("clone.durable"));
    Barrier barrier(domain.sync_policy());
    barrier.Dir(work->get(), t.RelPath(m.image));
    SDM_RETURN_IF_ERROR(barrier.Sync());
    return CommitNewImage(domain, run, m, "clone.commit", "clone.index");
}

/* Opens and checks the data files of `top` and every volume below it in `image`, top
 * first, into `fds`: qemu-img then reads exactly these descriptors. */
Result<std::vector<qemu::Layer>> OpenChain(const FileDomain::Image &image,
                                           const meta::VolumeMeta &top,
                                           std::vector<fileio::Fd> *fds)
{
    std::vector<qemu::Layer> chain;
    const meta::VolumeMeta *v = &top;
    while (v) {
        /* A parent loop in hostile metadata would never end. */
        if (chain.size() > image.volumes.size())
            return Status::Error(ErrorCode::kCorrupt,
                                 Printf(_("the backing chain of volume '%s' in image %s loops; "
                                          "run `sdm-local check`"),
                                        top.name.c_str(), image.uuid.c_str()));
        auto fd = OpenVolumeData(image.dir.get(), *v, O_RDONLY);
        if (!fd.ok())
            return fd.status();
        chain.push_back({fd->get(), v->format});
        fds->push_back(std::move(*fd));
        if (v->parent.empty())
            break;
        const meta::VolumeMeta *parent = image.Find(v->parent);
        if (!parent)
            return Status::Error(ErrorCode::kCorrupt,
                                 Printf(_("the parent %s of volume '%s' has no readable "
                                          "metadata in image %s; run `sdm-local check`"),
                                        v->parent.c_str(), v->name.c_str(),
                                        image.uuid.c_str()));
        v = parent;
    }
    return chain;
}

}  // namespace

Result<FileDomain::VolumeScope> FileDomain::LockVolume(const std::string &name,
                                                       OpRun &run)
{
    VolumeScope scope;
    auto domain_lease = AcquireDomainLease();
    if (!domain_lease.ok())
        return domain_lease.status();
    scope.domain_lease = std::move(*domain_lease);
    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kShared, options_.lock_timeout);
    if (!domain_lock.ok())
        return domain_lock.status();
    scope.domain_lock = std::move(*domain_lock);
    auto found = Resolve(name);
    if (!found.ok())
        return found.status();
    run.SetImage(found->image);
    auto image_lock = locks_.Lock(ImageLockKey(found->image), LockMode::kExclusive,
                                  options_.lock_timeout);
    if (!image_lock.ok())
        return image_lock.status();
    scope.image_lock = std::move(*image_lock);
    /* Read again under the image lock: the volume may have changed meanwhile. */
    auto image = ReadImage(found->image);
    if (!image.ok())
        return image.status();
    const meta::VolumeMeta *m = image->Find(found->uuid);
    if (!m)
        return Status::Error(ErrorCode::kNotFound,
                             _("volume '") + name + _("' was deleted meanwhile"));
    scope.volume = *m;
    scope.image = std::move(*image);
    return scope;
}

VolumeInfo FileDomain::NewImageInfo(const meta::VolumeMeta &m)
{
    Image image;
    image.uuid = m.image;
    auto dir = fileio::OpenDirAt(images_.get(), m.image);
    if (dir.ok())
        image.dir = std::move(*dir);
    image.volumes.push_back(m);
    return ToInfo(image, m);
}

/* A planned uuid or image from the caller: a well-formed lowercase UUID or nothing. */
static Status CheckPlannedId(const std::string &id, const char *what)
{
    if (id.empty() || layout::IsUuid(id))
        return Status::Ok();
    return Status::Error(ErrorCode::kInvalidArgument,
                         sdm::Printf(_("planned %s '%s' is not a lowercase UUID; ask "
                                       "PlanVolume for one or leave it empty"),
                                     what, id.c_str()));
}

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
    Status status = run.Enter("create.begin");
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

    std::optional<meta::VolumeMeta> parent;
    status = [&]() -> Status {
        SDM_RETURN_IF_ERROR(layout::ValidateVolumeName(params.name));
        SDM_RETURN_IF_ERROR(CheckPlannedId(params.uuid, "volume uuid"));
        SDM_RETURN_IF_ERROR(CheckPlannedId(params.image, "image uuid"));
        if (params.format == VolumeFormat::kRaw && params.prealloc == Preallocation::kMetadata)
            return Status::Error(ErrorCode::kInvalidArgument,
                                 _("metadata preallocation needs the qcow2 format"));
        if (!params.backing.empty() && params.format != VolumeFormat::kQcow2)
            return Status::Error(ErrorCode::kInvalidArgument,
                                 _("a volume on a backing volume must be qcow2"));
        if (params.backing.empty() || params.capacity != 0)
            SDM_RETURN_IF_ERROR(ValidateCapacity(params.capacity));
        return Status::Ok();
    }();
    if (!status.ok())
        return run.Fail(status);

    auto domain_lease = AcquireDomainLease();
    if (!domain_lease.ok())
        return run.Fail(domain_lease.status());
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
    if (!params.backing.empty()) {
        auto read = ReadImage(m.image);
        if (!read.ok())
            return run.Fail(read.status());
        image = std::move(*read);
        /* Re-read under the image lock: the backing volume may have changed meanwhile. */
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
    }
    const bool new_image = !parent;

    Reservation reservation(*this, m.name);
    auto lease = reservation.TakeWithLease(lockdep::Role::kNone);
    if (!lease.ok())
        return run.Fail(lease.status());
    m.slot = reservation.slot();

    status = [&]() -> Status {
        SDM_RETURN_IF_ERROR(run.BeginTransaction(
            "create.marker", NewMarker(*this, meta::TxOp::kCreate, m, new_image)));
        Transaction &t = *run.tx();

        SDM_RETURN_IF_ERROR(run.Enter("create.image-dir"));
        fileio::Fd work;
        std::string work_rel = new_image ? t.RelPath(m.image)
                                         : std::string(layout::kTxDir) + "/" + t.dir_name();
        if (new_image) {
            auto dir = t.MakeImageDir(m.image);
            if (!dir.ok())
                return dir.status();
            work = std::move(*dir);
        }
        int work_fd = new_image ? work.get() : t.dirfd();

        SDM_RETURN_IF_ERROR(run.Enter("create.metadata"));
        SDM_RETURN_IF_ERROR(fileio::WriteFileAt(work_fd, layout::MetaFile(m.uuid), meta::Encode(m)));
        SDM_RETURN_IF_ERROR(run.Enter("create.lease-area"));
        SDM_RETURN_IF_ERROR(leases_->InitSlot(m.slot));
        SDM_RETURN_IF_ERROR(run.Enter("create.data"));
        SDM_RETURN_IF_ERROR(CreateData(*this, work_fd, work_rel, m,
                                       parent ? &*parent : nullptr));
        SDM_RETURN_IF_ERROR(run.Enter("create.durable"));
        Barrier barrier(sync_policy_);
        barrier.Dir(work_fd, work_rel);
        SDM_RETURN_IF_ERROR(barrier.DataAt(work_fd, layout::MetaFile(m.uuid),
                                           work_rel + "/" + layout::MetaFile(m.uuid)));
        if (m.format == VolumeFormat::kQcow2)
            SDM_RETURN_IF_ERROR(barrier.DataAt(work_fd, m.uuid, work_rel + "/" + m.uuid));
        else
            barrier.Inode(work_fd, work_rel + "/" + m.uuid);
        SDM_RETURN_IF_ERROR(barrier.Sync());
        if (new_image)
            return CommitNewImage(*this, run, m, "create.commit", "create.index");

        SDM_RETURN_IF_ERROR(t.MakeDurable());

        /* A layer's data goes into the image first; its metadata's rename is the commit. */
        SDM_RETURN_IF_ERROR(run.Enter("create.place-data"));
        SDM_RETURN_IF_ERROR(fileio::RenameAt(t.dirfd(), m.uuid, image->dir.get(), m.uuid, true));
        barrier.Dir(image->dir.get(), layout::ImagePath(m.image));
        SDM_RETURN_IF_ERROR(barrier.Sync());
        SDM_RETURN_IF_ERROR(run.Enter("create.commit"));
        SDM_RETURN_IF_ERROR(fileio::RenameAt(t.dirfd(), layout::MetaFile(m.uuid),
                                             image->dir.get(), layout::MetaFile(m.uuid), true));
        SDM_RETURN_IF_ERROR(run.Enter("create.index"));
        SDM_RETURN_IF_ERROR(AddIndex(m.name, m.slot, m.image, m.uuid));
        return SyncNamespace(image->dir.get(), layout::ImagePath(m.image));
    }();
    if (!status.ok())
        return run.Fail(status);

    /* Committed: from here on, failing to tidy up is the collector's business. */
    (void)run.Enter("create.done");
    (void)run.tx()->Finish();
    if (new_image)
        return NewImageInfo(m);
    return ToInfo(*image, m);
}

Result<VolumeInfo> FileDomain::CloneVolume(const CloneParams &params, OpObserver *observer)
{
    OpRun run(*this, observer, params.name);
    Status status = run.Enter("clone.begin");
    if (status.ok())
        status = layout::ValidateVolumeName(params.name);
    if (status.ok())
        status = CheckPlannedId(params.uuid, "volume uuid");
    if (status.ok())
        status = CheckPlannedId(params.image, "image uuid");
    if (!status.ok())
        return run.Fail(status);

    auto domain_lease = AcquireDomainLease();
    if (!domain_lease.ok())
        return run.Fail(domain_lease.status());
    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kShared, options_.lock_timeout);
    if (!domain_lock.ok())
        return run.Fail(domain_lock.status());
    auto source = Resolve(params.source);
    if (!source.ok())
        return run.Fail(source.status());

    meta::VolumeMeta m;
    m.uuid = params.uuid.empty() ? layout::NewUuid() : params.uuid;
    m.image = params.image.empty() ? layout::NewUuid() : params.image;
    m.name = params.name;
    m.format = params.format.value_or(source->format);
    m.capacity = source->capacity;
    m.legality = Legality::kIllegal;
    m.ctime = time(nullptr);
    run.SetImage(m.image);

    auto source_lock = locks_.Lock(ImageLockKey(source->image, lockdep::Role::kSource),
                                   LockMode::kShared, options_.lock_timeout);
    if (!source_lock.ok())
        return run.Fail(source_lock.status());
    auto target_lock = locks_.Lock(ImageLockKey(m.image, lockdep::Role::kDestination),
                                   LockMode::kExclusive, options_.lock_timeout);
    if (!target_lock.ok())
        return run.Fail(target_lock.status());
    auto source_image = ReadImage(source->image);
    if (!source_image.ok())
        return run.Fail(source_image.status());
    const meta::VolumeMeta *src = source_image->Find(source->uuid);
    if (!src)
        return run.Fail(Status::Error(ErrorCode::kNotFound,
                                      _("source volume '") + params.source +
                                          _("' was deleted meanwhile")));
    if (Status legal = RequireLegal(*src); !legal.ok())
        return run.Fail(legal);

    auto source_lease = LeaseGuard::Volume(*leases_, src->slot, LeaseMode::kShared,
                                           lockdep::Role::kSource, kTryOnce);
    if (!source_lease.ok())
        return run.Fail(VolumeBusy(params.source, source_lease.status()));
    Reservation reservation(*this, m.name);
    auto target_lease = reservation.TakeWithLease(lockdep::Role::kDestination);
    if (!target_lease.ok())
        return run.Fail(target_lease.status());
    m.slot = reservation.slot();

    std::vector<fileio::Fd> chain_fds;
    auto chain = OpenChain(*source_image, *src, &chain_fds);
    if (!chain.ok())
        return run.Fail(chain.status());
    CopySource from;
    from.path = qemu::ChainName(*chain);
    from.format = src->format;
    from.flat = src->parent.empty();
    from.size = src->capacity;
    if (from.flat && from.format == VolumeFormat::kRaw)
        from.fd = chain_fds.front().get();
    status = CopyIntoNewImage(*this, run, m, from);
    if (!status.ok())
        return run.Fail(status);

    (void)run.Enter("clone.done");
    (void)run.tx()->Finish();
    return NewImageInfo(m);
}

/* The size of an import's source, checked for what the copy needs. A qcow2 source must
 * name no backing file: qemu-img would follow it and read a file the caller never opened. */
static Status DescribeImportSource(const ImportParams &params, CopySource *from)
{
    from->path = qemu::FdPath(params.source_fd);
    from->format = params.source_format;
    if (params.source_format == VolumeFormat::kRaw) {
        off_t end = lseek(params.source_fd, 0, SEEK_END);
        if (end < 0)
            return Status::FromErrno(errno, _("cannot size the source of the import"));
        from->fd = params.source_fd;
        from->size = static_cast<uint64_t>(end);
    } else {
        auto info = qemu::Info(from->path);
        if (!info.ok())
            return info.status();
        if (info->format != "qcow2")
            return Status::Error(ErrorCode::kInvalidArgument,
                                 sdm::Printf(_("the source of the import is %s, not qcow2; "
                                               "give its real format"),
                                             info->format.c_str()));
        if (!info->backing_filename.empty())
            return Status::Error(ErrorCode::kUnsupported,
                                 sdm::Printf(_("the qcow2 source of the import has a backing "
                                               "file (%s); import a flattened copy (qemu-img "
                                               "convert) instead"),
                                             info->backing_filename.c_str()));
        from->size = info->virtual_size;
    }
    if (from->size == 0)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("the source of the import is empty; a volume needs at least "
                               "one byte"));
    if (params.capacity != 0 && params.capacity < from->size)
        return Status::Error(ErrorCode::kInvalidArgument,
                             sdm::Printf(_("capacity %llu is smaller than the source's %llu "
                                           "bytes; give at least that, or 0 for the source's "
                                           "size"),
                                         static_cast<unsigned long long>(params.capacity),
                                         static_cast<unsigned long long>(from->size)));
    return ValidateCapacity(std::max(params.capacity, from->size));
}

Result<VolumeInfo> FileDomain::ImportVolume(const ImportParams &params, OpObserver *observer)
{
    OpRun run(*this, observer, params.name);
    CopySource from;
    Status status = run.Enter("clone.begin");
    if (status.ok())
        status = layout::ValidateVolumeName(params.name);
    if (status.ok())
        status = CheckPlannedId(params.uuid, "volume uuid");
    if (status.ok())
        status = CheckPlannedId(params.image, "image uuid");
    if (status.ok() && params.source_fd < 0)
        status = Status::Error(ErrorCode::kInvalidArgument,
                               _("no source descriptor for the import; open the source file "
                                 "and pass it"));
    if (status.ok())
        status = DescribeImportSource(params, &from);
    if (!status.ok())
        return run.Fail(status);

    meta::VolumeMeta m;
    m.uuid = params.uuid.empty() ? layout::NewUuid() : params.uuid;
    m.image = params.image.empty() ? layout::NewUuid() : params.image;
    m.name = params.name;
    m.format = params.format.value_or(params.source_format);
    m.capacity = std::max(params.capacity, from.size);
    m.legality = Legality::kIllegal;
    m.ctime = time(nullptr);
    run.SetImage(m.image);

    auto domain_lease = AcquireDomainLease();
    if (!domain_lease.ok())
        return run.Fail(domain_lease.status());
    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kShared, options_.lock_timeout);
    if (!domain_lock.ok())
        return run.Fail(domain_lock.status());
    auto image_lock = locks_.Lock(ImageLockKey(m.image), LockMode::kExclusive,
                                  options_.lock_timeout);
    if (!image_lock.ok())
        return run.Fail(image_lock.status());
    Reservation reservation(*this, m.name);
    auto lease = reservation.TakeWithLease(lockdep::Role::kNone);
    if (!lease.ok())
        return run.Fail(lease.status());
    m.slot = reservation.slot();

    status = CopyIntoNewImage(*this, run, m, from);
    if (!status.ok())
        return run.Fail(status);

    (void)run.Enter("clone.done");
    (void)run.tx()->Finish();
    return NewImageInfo(m);
}

Status FileDomain::DeleteVolume(const std::string &name, OpObserver *observer)
{
    OpRun run(*this, observer, name);
    Status status = run.Enter("delete.begin");
    if (!status.ok())
        return run.Fail(status);
    auto scope = LockVolume(name, run);
    if (!scope.ok())
        return run.Fail(scope.status());
    const Image *image = &scope->image;
    const meta::VolumeMeta *m = &scope->volume;
    if (!image->IsLeaf(m->uuid)) {
        std::string children;
        for (const auto &v : image->volumes)
            if (v.parent == m->uuid)
                children += (children.empty() ? "'" : ", '") + v.name + "'";
        return run.Fail(Status::Error(ErrorCode::kBusy,
                                      _("volume '") + name + _("' is the backing volume of ") +
                                          children + _("; delete those first")));
    }
    auto lease = LeaseGuard::Volume(*leases_, m->slot, LeaseMode::kExclusive,
                                    lockdep::Role::kNone, kTryOnce);
    if (!lease.ok())
        return run.Fail(VolumeBusy(name, lease.status()));
    const bool whole_image = image->volumes.size() == 1 && image->bad.empty();

    status = [&]() -> Status {
        SDM_RETURN_IF_ERROR(run.BeginTransaction(
            "delete.marker", NewMarker(*this, meta::TxOp::kDelete, *m, whole_image)));
        Transaction &t = *run.tx();
        SDM_RETURN_IF_ERROR(run.Enter("delete.durable"));
        SDM_RETURN_IF_ERROR(t.MakeDurable());
        /* The commit makes the volume volatile: its metadata (or its whole image) moves into
         * the transaction, where only the collector looks. */
        SDM_RETURN_IF_ERROR(run.Enter("delete.commit"));
        Barrier barrier(sync_policy_);
        if (whole_image) {
            SDM_RETURN_IF_ERROR(fileio::RenameAt(images_dir(), m->image, t.dirfd(), m->image, true));
            barrier.Dir(images_dir(), layout::kImagesDir);
        } else {
            SDM_RETURN_IF_ERROR(fileio::RenameAt(image->dir.get(), layout::MetaFile(m->uuid),
                                                 t.dirfd(), layout::MetaFile(m->uuid), true));
            barrier.Dir(image->dir.get(), layout::ImagePath(m->image));
        }
        barrier.Dir(t.dirfd(), t.RelPath(""));
        return barrier.Sync();
    }();
    if (!status.ok())
        return run.Fail(status);

    /* Committed. The rest is garbage collection, run here at once by the owner. */
    (void)run.Enter("delete.collect");
    auto collected = Recover(*this, run.tx()->dir_name(), &run.tx()->marker());
    run.tx().reset();
    (void)run.Enter("delete.done");
    if (!collected.ok())
        return run.Fail(Status::Error(collected.status().code(),
                                      _("the volume is deleted, but removing its data failed (") +
                                          collected.status().message() +
                                          _("); the garbage collector will retry")));
    return Status::Ok();
}

Result<VolumeInfo> FileDomain::ResizeVolume(const std::string &name, uint64_t capacity,
                                            OpObserver *observer)
{
    OpRun run(*this, observer, name);
    Status status = run.Enter("resize.begin");
    if (status.ok())
        status = ValidateCapacity(capacity);
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
        meta::Marker marker = NewMarker(*this, meta::TxOp::kResize, m, false);
        marker.old_capacity = m.capacity;
        marker.new_capacity = capacity;
        SDM_RETURN_IF_ERROR(run.BeginTransaction("resize.marker", marker));
        SDM_RETURN_IF_ERROR(run.Enter("resize.durable"));
        SDM_RETURN_IF_ERROR(run.tx()->MakeDurable());

        /* The grown tail is garbage until the metadata says the volume is that large. */
        SDM_RETURN_IF_ERROR(run.Enter("resize.grow"));
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
                return SizeError(err, rel);
        }
        Barrier barrier(sync_policy_);
        if (m.format == VolumeFormat::kQcow2)
            barrier.Data(data->get(), rel);
        else
            barrier.Inode(image->dir.get(), rel);
        SDM_RETURN_IF_ERROR(barrier.Sync());

        SDM_RETURN_IF_ERROR(run.Enter("resize.commit"));
        m.capacity = capacity;
        m.generation++;
        return fileio::AtomicWriteAt(image->dir.get(), layout::MetaFile(m.uuid), meta::Encode(m));
    }();
    if (!status.ok())
        return run.Fail(status);

    (void)run.Enter("resize.done");
    (void)run.tx()->Finish();
    return ToInfo(*image, m);
}

}  // namespace sdm
