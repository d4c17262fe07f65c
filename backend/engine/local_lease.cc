/* Leases for single-host domains as OFD byte-range locks; see local_lease.h.
 *
 * Every acquire opens the area's file anew: an OFD lock belongs to its open file
 * description, so one description per lease makes two leases of this process conflict
 * exactly as two processes' leases do, and closing the handle's descriptor (or the death
 * of the process) drops the lease. The manager keeps no mutable state; it is thread-safe. */
#include "backend/engine/local_lease.h"

#include <fcntl.h>
#include <glib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <thread>

#include "backend/engine/fileio.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"

namespace sdm {

namespace {

/* Polling, because F_OFD_SETLKW cannot time out: start fast for locks held a moment,
 * back off so that a long wait does not burn a core. */
constexpr std::chrono::milliseconds kFirstPoll{1};
constexpr std::chrono::milliseconds kMaxPoll{10};

class LocalLeaseHandle : public LeaseHandle {
public:
    explicit LocalLeaseHandle(fileio::Fd fd) : fd_(std::move(fd)) {}

private:
    fileio::Fd fd_; /* closing it drops the lock */
};

struct flock SlotRange(short type, off_t offset)
{
    struct flock range = {};
    range.l_type = type;
    range.l_whence = SEEK_SET;
    range.l_start = offset;
    range.l_len = 1;
    return range; /* l_pid stays 0, as OFD locks require */
}

/* The byte that stands for `slot`, or why there is none. */
Result<off_t> SlotOffset(uint64_t slot, uint64_t alignment)
{
    if (slot > layout::kMaxSlot) {
        g_autofree char *message = g_strdup_printf(
            _("lease slot %llu is out of range (the last slot is %llu); the metadata naming "
              "it is damaged: run `sdm-local check`"),
            static_cast<unsigned long long>(slot),
            static_cast<unsigned long long>(layout::kMaxSlot));
        return Status::Error(ErrorCode::kInvalidArgument, message);
    }
    uint64_t offset;
    if (alignment == 0 || __builtin_mul_overflow(slot, alignment, &offset) ||
        offset >= static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
        g_autofree char *message = g_strdup_printf(
            _("lease alignment %llu cannot place slot %llu in a file; the domain metadata "
              "holding the alignment is damaged: run `sdm-local check`"),
            static_cast<unsigned long long>(alignment), static_cast<unsigned long long>(slot));
        return Status::Error(ErrorCode::kInvalidArgument, message);
    }
    return static_cast<off_t>(offset);
}

Status NotRegularError(const std::string &path)
{
    g_autofree char *message = g_strdup_printf(
        _("lease area %s is not a regular file; remove it, then run `sdm-local check`"),
        path.c_str());
    return Status::Error(ErrorCode::kCorrupt, message);
}

/* A fresh open file description of the lease area; never creates it. */
Result<fileio::Fd> OpenLeaseArea(const std::string &path)
{
    fileio::Fd fd(open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW));
    if (!fd.valid()) {
        int err = errno;
        if (err == EISDIR)
            return NotRegularError(path);
        if (err != ENOENT && err != ELOOP)
            return Status::FromErrno(err, std::string(_("cannot open lease area ")) + path);
        g_autofree char *message = g_strdup_printf(
            err == ENOENT ? _("lease area %s is missing: the domain is not formatted or is "
                              "damaged; run `sdm-local check`")
                          : _("lease area %s is a symlink; the domain must not contain "
                              "symlinks: remove it, then run `sdm-local check`"),
            path.c_str());
        return Status::Error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kCorrupt,
                             message);
    }
    struct stat st;
    if (fstat(fd.get(), &st) != 0)
        return Status::FromErrno(errno, std::string(_("cannot stat lease area ")) + path);
    if (!S_ISREG(st.st_mode))
        return NotRegularError(path);
    return fd;
}

/* kBusy naming the holder if the kernel knows it: OFD locks report pid -1, classic
 * POSIX locks (e.g. taken by an older tool) the holder's pid. */
Status BusyError(int fd, const std::string &path, uint64_t slot, const struct flock &wanted,
                 std::chrono::milliseconds waited)
{
    struct flock holder = wanted;
    bool known = fcntl(fd, F_OFD_GETLK, &holder) == 0 && holder.l_type != F_UNLCK &&
                 holder.l_pid > 0;
    g_autofree char *who = known ? g_strdup_printf(_("process %d"), holder.l_pid)
                                 : g_strdup(_("another process or thread"));
    g_autofree char *message = g_strdup_printf(
        _("lease slot %llu of %s is held by %s (waited %lld ms); try again when its "
          "operation finishes"),
        static_cast<unsigned long long>(slot), path.c_str(), who,
        static_cast<long long>(waited.count()));
    return Status::Error(ErrorCode::kBusy, message);
}

}  // namespace

LocalLeaseManager::LocalLeaseManager(const std::string &root, uint64_t alignment)
    : leases_file_(root + "/" + layout::kLeases), owners_file_(root + "/" + layout::kOwners),
      alignment_(alignment)
{
}

const std::string &LocalLeaseManager::FileOf(LeaseArea area) const
{
    return area == LeaseArea::kOwners ? owners_file_ : leases_file_;
}

Result<std::unique_ptr<LeaseHandle>> LocalLeaseManager::Acquire(
    LeaseArea area, uint64_t slot, LeaseMode mode, std::chrono::milliseconds timeout)
{
    const std::string &path = FileOf(area);
    Result<off_t> offset = SlotOffset(slot, alignment_);
    if (!offset.ok())
        return offset.status();
    Result<fileio::Fd> fd = OpenLeaseArea(path);
    if (!fd.ok())
        return fd.status();

    timeout = std::max(timeout, std::chrono::milliseconds::zero());
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto poll = kFirstPoll;
    const struct flock wanted =
        SlotRange(mode == LeaseMode::kExclusive ? F_WRLCK : F_RDLCK, *offset);
    for (;;) {
        struct flock range = wanted;
        if (fcntl(fd->get(), F_OFD_SETLK, &range) == 0)
            return std::unique_ptr<LeaseHandle>(
                std::make_unique<LocalLeaseHandle>(std::move(*fd)));
        int err = errno;
        if (err == EINTR)
            continue;
        if (err != EAGAIN && err != EACCES) {
            g_autofree char *what =
                g_strdup_printf(_("cannot lock lease slot %llu of %s"),
                                static_cast<unsigned long long>(slot), path.c_str());
            return Status::FromErrno(err, what);
        }
        auto now = std::chrono::steady_clock::now();
        if (now >= deadline)
            return BusyError(fd->get(), path, slot, wanted, timeout);
        std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
            poll, deadline - now));
        poll = std::min(poll * 2, kMaxPoll);
    }
}

/* Byte-range locks need no bytes on disk; only the file itself must exist. */
Status LocalLeaseManager::InitChunk(uint64_t chunk)
{
    (void)chunk;
    Result<fileio::Fd> fd = OpenLeaseArea(leases_file_);
    return fd.ok() ? Status::Ok() : fd.status();
}

Status LocalLeaseManager::InitOwner(uint32_t owner)
{
    (void)owner;
    Result<fileio::Fd> fd = OpenLeaseArea(owners_file_);
    return fd.ok() ? Status::Ok() : fd.status();
}

uint32_t LocalLeaseManager::FirstOwner() const { return layout::kFirstOwner; }
uint32_t LocalLeaseManager::LastOwner() const { return layout::kMaxOwner; }

}  // namespace sdm
