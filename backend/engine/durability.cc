/* Sync policies and barriers; see durability.h. */
#include "backend/engine/durability.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "backend/engine/i18n.h"

namespace sdm {

namespace {

constexpr long kGfs2Magic = 0x01161970;
constexpr long kCephMagic = 0x00c36400;

/* ext2, ext3 and ext4 share one magic number; only a journaled one orders its metadata.
 * ext4 names its journal thread in /sys/fs/ext4/<device>/journal_task ("<none>" without a
 * journal); ext2/ext3 mounted by the ext4 driver show up there too. */
bool HasJournal(int dirfd)
{
    struct stat st;
    if (fstat(dirfd, &st) != 0)
        return false;
    char link[64], target[256];
    snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    const char *device = strrchr(target, '/');
    device = device ? device + 1 : target;
    std::string path = std::string("/sys/fs/ext4/") + device + "/journal_task";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char task[64] = {};
    ssize_t got = read(fd, task, sizeof(task) - 1);
    close(fd);
    return got > 0 && strncmp(task, "<none>", 6) != 0;
}

}  // namespace

const char *SyncPolicyName(SyncPolicy policy)
{
    switch (policy) {
    case SyncPolicy::kAuto: return "auto";
    case SyncPolicy::kStrict: return "strict";
    case SyncPolicy::kOrdered: return "ordered";
    }
    return "strict";
}

SyncPolicy ResolveSyncPolicy(int dirfd, SyncPolicy requested, std::string *why)
{
    if (requested != SyncPolicy::kAuto) {
        *why = _("as configured");
        return requested;
    }
    if (const char *env = getenv("SDM_SYNC"); env && *env) {
        *why = _("from $SDM_SYNC");
        if (strcmp(env, "ordered") == 0)
            return SyncPolicy::kOrdered;
        if (strcmp(env, "strict") == 0)
            return SyncPolicy::kStrict;
        *why = _("$SDM_SYNC is neither 'strict' nor 'ordered'; using strict");
        return SyncPolicy::kStrict;
    }
    struct statfs fs;
    if (fstatfs(dirfd, &fs) != 0) {
        *why = _("filesystem type unknown");
        return SyncPolicy::kStrict;
    }
    switch (static_cast<long>(fs.f_type)) {
    case EXT4_SUPER_MAGIC:
        if (HasJournal(dirfd)) {
            *why = _("ext4 with a journal");
            return SyncPolicy::kOrdered;
        }
        *why = _("ext2/3/4 without a journal");
        return SyncPolicy::kStrict;
    case XFS_SUPER_MAGIC:
        *why = "XFS";
        return SyncPolicy::kOrdered;
    case NFS_SUPER_MAGIC:
        *why = "NFS";
        return SyncPolicy::kOrdered;
    case kGfs2Magic:
        *why = "GFS2";
        return SyncPolicy::kOrdered;
    case kCephMagic:
        *why = "CephFS";
        return SyncPolicy::kOrdered;
    case TMPFS_MAGIC:
        *why = _("tmpfs (nothing survives a reboot anyway)");
        return SyncPolicy::kOrdered;
    default:
        *why = _("filesystem not known to order its metadata");
        return SyncPolicy::kStrict;
    }
}

void Barrier::Data(int fd, std::string what)
{
    entries_.push_back({fd, std::move(what), true});
}

Status Barrier::DataAt(int dirfd, const std::string &name, std::string what)
{
    if (policy_ == SyncPolicy::kStrict) {
        Dir(dirfd, std::move(what)); /* syncfs needs no descriptor of the file itself */
        return Status::Ok();
    }
    auto fd = fileio::OpenAt(dirfd, name, O_RDONLY);
    if (!fd.ok())
        return fd.status();
    entries_.push_back({fd->get(), std::move(what), true});
    owned_.push_back(std::move(*fd));
    return Status::Ok();
}

void Barrier::Inode(int dirfd, std::string what)
{
    entries_.push_back({dirfd, std::move(what), false});
}

void Barrier::Dir(int fd, std::string what)
{
    entries_.push_back({fd, std::move(what), false});
}

Status Barrier::Sync()
{
    Status status;
    if (entries_.empty()) {
        /* nothing registered */
    } else if (policy_ == SyncPolicy::kStrict) {
        if (syncfs(entries_.front().fd) != 0)
            status = Status::FromErrno(errno, _("cannot sync the filesystem of ") +
                                                  entries_.front().what);
    } else {
        bool synced_any = false;
        for (const auto &e : entries_) {
            if (!e.always)
                continue;
            status = fileio::FsyncFd(e.fd, e.what);
            if (!status.ok())
                break;
            synced_any = true;
        }
        /* Nothing written: one fsync still commits the journal with every earlier change. */
        if (status.ok() && !synced_any)
            status = fileio::FsyncFd(entries_.back().fd, entries_.back().what);
    }
    entries_.clear();
    owned_.clear();
    return status;
}

}  // namespace sdm
