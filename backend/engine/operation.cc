/* The errors shared by the engine's operations; see operation.h. */
#include "backend/engine/operation.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "backend/engine/layout.h"
#include "backend/engine/qemu_img.h"

namespace sdm {

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
