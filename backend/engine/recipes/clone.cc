/* Recipe: clone a volume into a new image (its chain flattened), or import a file from
 * outside the domain into a new image. Both are data movement: they hold no domain-wide
 * lease, only local image locks and, for a clone, the source volume's lease shared for the
 * whole copy (a VM may keep reading the source; nobody may write, resize or delete it).
 * The target takes no lease: nobody can reach it before its commit.
 *
 * marker          mkdir tx/<image>-<slot>-<owner>-<incarnation>; write marker (clone)
 * claim           symlink images/@<name>: the name is taken for the whole copy
 * image-dir       mkdir <tx>/<image>
 * metadata-illegal <tx>/<image>/<vol>.meta, ILLEGAL
 * copy            the data, sparse (raw) or through qemu-img convert
 * copied          fsync of the data (neither the copy nor qemu-img flushes)
 * legal           the metadata rewritten LEGAL
 * durable         barrier 1: marker, image directory, claim
 * commit          rename <tx>/<image> -> images/<image>
 * index           root link; barrier 2
 * done            remove the transaction directory
 *
 * Recovery: as a new image's create (recipes::SettleCreate in create.cc): the commit
 * decides; before it, the transaction directory and the claim go, so an interrupted clone
 * leaves nothing a user could mistake for a volume. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <vector>

#include "backend/engine/copy.h"
#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/operation.h"
#include "backend/engine/qemu_img.h"
#include "backend/engine/recipes/recipes.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace st = steps::clone;

namespace {

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
        st::kMarker, recipes::NewMarker(domain, meta::TxOp::kClone, m, true)));
    Transaction &t = *run.tx();
    SDM_RETURN_IF_ERROR(run.Enter(st::kClaim));
    SDM_RETURN_IF_ERROR(domain.ClaimName(m.name, m.image, m.uuid, t.dirfd()));

    SDM_RETURN_IF_ERROR(run.Enter(st::kImageDir));
    auto work = t.MakeImageDir(m.image);
    if (!work.ok())
        return work.status();
    /* ILLEGAL until the copy is complete: nobody may use a half-copied volume. */
    SDM_RETURN_IF_ERROR(run.Enter(st::kMetadataIllegal));
    SDM_RETURN_IF_ERROR(fileio::WriteFileAt(work->get(), layout::MetaFile(m.uuid),
                                            meta::Encode(m)));

    SDM_RETURN_IF_ERROR(run.Enter(st::kCopy));
    std::string target_rel = t.RelPath(m.image + "/" + m.uuid);
    fileio::Fd out;
    if (source.fd >= 0 && m.format == VolumeFormat::kRaw) {
        auto created = fileio::OpenAt(work->get(), m.uuid, O_RDWR | O_CREAT | O_EXCL, kDataMode);
        if (!created.ok())
            return created.status();
        out = std::move(*created);
        SDM_RETURN_IF_ERROR(copy::CopySparse(source.fd, out.get(), source.size, run.observer()));
        if (m.capacity > source.size && ftruncate(out.get(), static_cast<off_t>(m.capacity)) != 0)
            return recipes::SizeError(errno, target_rel);
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
    SDM_RETURN_IF_ERROR(run.Enter(st::kCopied));
    SDM_RETURN_IF_ERROR(fileio::FsyncFd(out.get(), target_rel));

    SDM_RETURN_IF_ERROR(run.Enter(st::kLegal));
    m.legality = Legality::kLegal;
    m.generation++;
    SDM_RETURN_IF_ERROR(fileio::AtomicWriteAt(work->get(), layout::MetaFile(m.uuid),
                                              meta::Encode(m), false));
    SDM_RETURN_IF_ERROR(run.Enter(st::kDurable));
    Barrier barrier(domain.sync_policy());
    SDM_RETURN_IF_ERROR(t.AddTo(barrier));
    barrier.Dir(work->get(), t.RelPath(m.image));
    barrier.Dir(domain.images_dir(), layout::kImagesDir);
    SDM_RETURN_IF_ERROR(barrier.Sync());

    SDM_RETURN_IF_ERROR(run.Enter(st::kCommit));
    SDM_RETURN_IF_ERROR(fileio::RenameAt(t.dirfd(), m.image, domain.images_dir(), m.image, true));
    SDM_RETURN_IF_ERROR(run.Enter(st::kIndex));
    domain.LinkRoot(m.name, m.image, m.uuid);
    return domain.SyncNamespace(domain.images_dir(), layout::kImagesDir);
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

/* The size of an import's source, checked for what the copy needs. A qcow2 source must
 * name no backing file: qemu-img would follow it and read a file the caller never opened. */
Status DescribeImportSource(const ImportParams &params, CopySource *from)
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
    return recipes::ValidateCapacity(std::max(params.capacity, from->size));
}

}  // namespace

Result<VolumeInfo> FileDomain::CloneVolume(const CloneParams &params, OpObserver *observer)
{
    OpRun run(*this, observer, params.name);
    Status status = run.Enter(st::kBegin);
    if (status.ok())
        status = layout::ValidateVolumeName(params.name);
    if (status.ok())
        status = recipes::CheckPlannedId(params.uuid, "volume uuid");
    if (status.ok())
        status = recipes::CheckPlannedId(params.image, "image uuid");
    if (!status.ok())
        return run.Fail(status);

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
    SlotTicket ticket(*this, run);
    if (Status taken = ticket.Take(); !taken.ok())
        return run.Fail(taken);
    m.slot = ticket.slot();

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

    ticket.Committed();
    (void)run.Enter(st::kDone);
    (void)run.tx()->Finish();
    return NewImageInfo(m);
}

Result<VolumeInfo> FileDomain::ImportVolume(const ImportParams &params, OpObserver *observer)
{
    OpRun run(*this, observer, params.name);
    CopySource from;
    Status status = run.Enter(st::kBegin);
    if (status.ok())
        status = layout::ValidateVolumeName(params.name);
    if (status.ok())
        status = recipes::CheckPlannedId(params.uuid, "volume uuid");
    if (status.ok())
        status = recipes::CheckPlannedId(params.image, "image uuid");
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

    auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kShared, options_.lock_timeout);
    if (!domain_lock.ok())
        return run.Fail(domain_lock.status());
    auto image_lock = locks_.Lock(ImageLockKey(m.image), LockMode::kExclusive,
                                  options_.lock_timeout);
    if (!image_lock.ok())
        return run.Fail(image_lock.status());
    SlotTicket ticket(*this, run);
    if (Status taken = ticket.Take(); !taken.ok())
        return run.Fail(taken);
    m.slot = ticket.slot();

    status = CopyIntoNewImage(*this, run, m, from);
    if (!status.ok())
        return run.Fail(status);

    ticket.Committed();
    (void)run.Enter(st::kDone);
    (void)run.tx()->Finish();
    return NewImageInfo(m);
}

}  // namespace sdm
