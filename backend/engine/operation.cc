/* What the engine's operations share: slot tickets, the locks of an operation on an
 * existing volume, the recipes' helpers and the errors about a volume's lease and
 * legality; see operation.h and recipes/recipes.h. */
#include "backend/engine/operation.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <ctime>

#include "backend/engine/layout.h"
#include "backend/engine/qemu_img.h"
#include "backend/engine/recipes/recipes.h"

namespace sdm {

SlotTicket::~SlotTicket()
{
    if (slot_ != 0)
        domain_.allocator().Settle(slot_, committed_ || run_.left_garbage());
}

Status SlotTicket::Take()
{
    auto slot = domain_.allocator().Take();
    if (!slot.ok())
        return slot.status();
    slot_ = *slot;
    return Status::Ok();
}

Result<FileDomain::VolumeScope> FileDomain::LockVolume(const std::string &name, OpRun &run)
{
    VolumeScope scope;
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

namespace recipes {

meta::Marker NewMarker(const FileDomain &domain, meta::TxOp op, const meta::VolumeMeta &m,
                       bool new_image)
{
    meta::Marker marker;
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

Status CheckPlannedId(const std::string &id, const char *what)
{
    if (id.empty() || layout::IsUuid(id))
        return Status::Ok();
    return Status::Error(ErrorCode::kInvalidArgument,
                         sdm::Printf(_("planned %s '%s' is not a lowercase UUID; ask "
                                       "PlanVolume for one or leave it empty"),
                                     what, id.c_str()));
}

Status MarkerMismatch(const meta::Marker &m)
{
    return Status::Error(ErrorCode::kCorrupt,
                         _("marker of transaction ") + m.txid + _(" does not match volume ") +
                             m.image + "/" + m.volume +
                             _(" (name or lease slot differ); left alone: inspect it and remove "
                               "the transaction directory by hand"));
}

}  // namespace recipes

Status VolumeBusy(const std::string &name, const Status &lease_status)
{
    if (lease_status.code() != ErrorCode::kBusy)
        return lease_status;
    return Status::Error(ErrorCode::kBusy,
                         _("volume '") + name +
                             _("' is in use: its lease is held (by a running VM, another "
                               "host or another operation); stop that user and try again (") +
                             lease_status.message() + ")");
}

Status RequireLegal(const meta::VolumeMeta &m)
{
    if (m.legality == Legality::kLegal)
        return Status::Ok();
    return Status::Error(ErrorCode::kBusy,
                         _("volume '") + m.name +
                             _("' is ILLEGAL (its data is being written, or an operation on it "
                               "was interrupted); wait for it, run gc, or write its data again "
                               "(upload, wipe) or delete it"));
}

Result<fileio::Fd> OpenVolumeData(int image_dir, const meta::VolumeMeta &m, int flags)
{
    const std::string rel = layout::VolumePath(m.image, m.uuid);
    auto corrupt = [&](const std::string &what) {
        return Status::Error(ErrorCode::kCorrupt,
                             Printf(_("the data file %s of volume '%s' %s; it was not written "
                                      "by libvirt-sdm: run `sdm-local check` and repair or "
                                      "delete the volume"),
                                    rel.c_str(), m.name.c_str(), what.c_str()));
    };
    /* O_NONBLOCK: opening a planted FIFO must fail the check, not hang. */
    auto fd = fileio::OpenAt(image_dir, m.uuid, flags | O_NONBLOCK);
    if (!fd.ok())
        return fd.status().code() == ErrorCode::kCorrupt ? corrupt(_("is a symlink"))
                                                           : fd.status();
    struct stat st;
    if (fstat(fd->get(), &st) != 0)
        return Status::FromErrno(errno, "stat " + rel);
    if (!S_ISREG(st.st_mode))
        return corrupt(_("is not a regular file"));
    if (st.st_nlink != 1)
        return corrupt(Printf(_("has %llu hard links, so it is shared with another file"),
                              static_cast<unsigned long long>(st.st_nlink)));
    if (m.format != VolumeFormat::kQcow2)
        return fd;
    /* qemu-img follows the backing file its header names; it must be the parent's data
     * file beside it (named by the parent's uuid, as CreateData writes it), or none. */
    auto info = qemu::Info(qemu::FdPath(fd->get()));
    if (!info.ok())
        return info.status();
    if (info->format != "qcow2")
        return corrupt(Printf(_("is %s, not qcow2 as its metadata says"), info->format.c_str()));
    if (info->backing_filename != m.parent) {
        if (info->backing_filename.empty())
            return corrupt(Printf(_("names no backing file, but its metadata names parent %s"),
                                  m.parent.c_str()));
        /* The name is the image's: shown without control characters. */
        std::string named = info->backing_filename;
        for (char &c : named)
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                c = '?';
        return corrupt(Printf(_("names backing file '%s', but its metadata names %s"),
                              named.c_str(),
                              m.parent.empty() ? _("no parent") : m.parent.c_str()));
    }
    return fd;
}

}  // namespace sdm
