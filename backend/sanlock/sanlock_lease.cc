/* Storage leases through sanlock; see sanlock_lease.h.
 *
 * libsanlock opens a new connection to the daemon for every call except those made on a
 * registered connection, which carry this process's leases and must not overlap. A pool
 * of registrations lets threads acquire at once: an acquire borrows an idle registration
 * (or registers a new one), and the lease handle keeps a reference to it for its release,
 * which locks it against a concurrent acquire. sanlock does not queue waiters: a
 * contended acquire fails, within about a second with SANLK_ACQUIRE_OWNER_NOWAIT (without
 * it, a first conflict after the join took 4 s at io_timeout 1: sanlock watched the
 * owner's host lease for a renewal), so waiting is a retry loop here, which keeps the
 * timeout honest.
 * The chunks known to be on storage are cached under a mutex. One monitor thread per
 * joined manager polls the lockspace's health once a second. Behaviour quoted in comments
 * was measured with sanlock 3.8.5. */
#include "backend/sanlock/sanlock_lease.h"

extern "C" {
#include <sanlock.h>
#include <sanlock_admin.h>
#include <sanlock_direct.h>
#include <sanlock_resource.h>
#include <sanlock_rv.h>
}

#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstddef>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "backend/engine/fileio.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"

namespace sdm {

namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

/* Retry pace for contended acquires and for the join: an uncontended acquire takes
 * 10-15 ms, a join seconds. */
constexpr milliseconds kFirstRetry{5};
constexpr milliseconds kMaxRetry{100};
constexpr milliseconds kMaxJoinPoll{200};
/* How often the monitor looks at the lockspace. */
constexpr milliseconds kMonitorPoll{1000};
/* How long a try (timeout 0) goes on when it may have met only another acquire or release
 * in flight, not a holder. A shared acquire owns the lease's paxos leader for a moment
 * while it writes its mode block: two hosts taking one lease shared at once see each other
 * as its owner (measured with sanlock 3.8.5: 25 of 30 simultaneous pairs, without this
 * retry), and one of them loses the round, not the lease. */
constexpr milliseconds kTransientRetry{2000};

/* sanlock renews a host's lease every 2 x io_timeout (measured with io_timeout 1: a new
 * timestamp of this host's lease shows in sanlock_get_hosts every 2 to 3 s) and gives
 * the lockspace up after 8 x io_timeout without a renewal. No new timestamp for
 * 3 x io_timeout + 2 s means renewals are failing, well before that with io_timeout 10
 * (32 s of 80), and about 3 s before it with io_timeout 1. */
std::chrono::seconds FailingAfter(uint32_t io_timeout)
{
    return std::chrono::seconds(3 * io_timeout + 2);
}

/* An acquire that may have met another acquire or release in flight rather than a
 * holder: for a shared acquire, any owner of the leader may be another shared acquirer. */
bool Transient(int rv, LeaseMode mode)
{
    if (mode == LeaseMode::kShared && rv != -EEXIST)
        return true;
    return rv == -EAGAIN || rv == -EBUSY || rv == SANLK_ACQUIRE_SHRETRY ||
           rv == SANLK_ACQUIRE_OWNED_RETRY || rv == SANLK_DBLOCK_LVER ||
           rv == SANLK_DBLOCK_MBAL;
}

/* The sector size / alignment pairs sanlock supports, and the flags that say them. The
 * RES and LSF flags have equal values, but each call gets its own family. */
struct AreaFormat {
    uint32_t sector_size;
    uint64_t alignment;
    uint32_t res_flags;
    uint32_t ls_flags;
    uint32_t max_hosts;
};

constexpr uint64_t kMiB = 1 << 20;
constexpr AreaFormat kFormats[] = {
    {512, 1 * kMiB, SANLK_RES_SECTOR512 | SANLK_RES_ALIGN1M,
     SANLK_LSF_SECTOR512 | SANLK_LSF_ALIGN1M, 2000},
    {4096, 1 * kMiB, SANLK_RES_SECTOR4K | SANLK_RES_ALIGN1M,
     SANLK_LSF_SECTOR4K | SANLK_LSF_ALIGN1M, 250},
    {4096, 2 * kMiB, SANLK_RES_SECTOR4K | SANLK_RES_ALIGN2M,
     SANLK_LSF_SECTOR4K | SANLK_LSF_ALIGN2M, 500},
    {4096, 4 * kMiB, SANLK_RES_SECTOR4K | SANLK_RES_ALIGN4M,
     SANLK_LSF_SECTOR4K | SANLK_LSF_ALIGN4M, 1000},
    {4096, 8 * kMiB, SANLK_RES_SECTOR4K | SANLK_RES_ALIGN8M,
     SANLK_LSF_SECTOR4K | SANLK_LSF_ALIGN8M, 2000},
};

const AreaFormat *FindFormat(const SanlockGeometry &g)
{
    for (const AreaFormat &f : kFormats) {
        if (f.sector_size == g.sector_size && f.alignment == g.alignment)
            return &f;
    }
    return nullptr;
}

Status Invalid(const char *format, ...) G_GNUC_PRINTF(1, 2);
Status Invalid(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    g_autofree char *message = g_strdup_vprintf(format, args);
    va_end(args);
    return Status::Error(ErrorCode::kInvalidArgument, message);
}

/* sanlock separates fields with ':' on its command line and in its log
 * (name:host_id:path:offset): an administrator could not name such a lockspace there. */
bool IsSanlockName(const std::string &name)
{
    if (name.empty() || name.size() > SANLK_NAME_LEN)
        return false;
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return c > ' ' && c < 0x7f && c != ':'; });
}

Status CheckPath(const std::string &path)
{
    /* The daemon resolves a relative path against its own working directory. */
    if (path.empty() || path[0] != '/' || path.size() >= SANLK_PATH_LEN)
        return Invalid(_("sanlock area path \"%s\" must be absolute and shorter than %d "
                         "bytes; open the domain by an absolute path"),
                       path.c_str(), SANLK_PATH_LEN);
    return Status::Ok();
}

Status CheckGeometry(const SanlockGeometry &g)
{
    if (!IsSanlockName(g.lockspace))
        return Invalid(_("lockspace name \"%s\" is not valid for sanlock: it must be 1 to %d "
                         "printable ASCII characters without spaces or ':'; use the domain "
                         "UUID"),
                       g.lockspace.c_str(), SANLK_NAME_LEN);
    SDM_RETURN_IF_ERROR(CheckPath(g.ids_path));
    SDM_RETURN_IF_ERROR(CheckPath(g.leases_path));
    SDM_RETURN_IF_ERROR(CheckPath(g.owners_path));
    if (!FindFormat(g))
        return Invalid(_("sanlock cannot use sector size %u with alignment %llu: use 512 with "
                         "1 MiB, or 4096 with 1, 2, 4 or 8 MiB; check domain.meta"),
                       g.sector_size, static_cast<unsigned long long>(g.alignment));
    if (g.io_timeout == 0)
        return Invalid(_("sanlock io_timeout 0 of lockspace %s is not valid; use a number of "
                         "seconds (10 is sanlock's default); check domain.meta"),
                       g.lockspace.c_str());
    return Status::Ok();
}

Status CheckManager(const SanlockGeometry &g, uint32_t host_id)
{
    SDM_RETURN_IF_ERROR(CheckGeometry(g));
    uint32_t max_hosts = FindFormat(g)->max_hosts;
    if (host_id == 0 || host_id > max_hosts)
        return Invalid(_("host id %u is out of range for lockspace %s (1 to %u with sector "
                         "size %u and alignment %llu); configure this host's id in range"),
                       host_id, g.lockspace.c_str(), max_hosts, g.sector_size,
                       static_cast<unsigned long long>(g.alignment));
    return Status::Ok();
}

Status CheckSlot(uint64_t slot)
{
    if (slot <= layout::kMaxSlot)
        return Status::Ok();
    return Invalid(_("lease slot %llu is out of range (the last slot is %llu); the metadata "
                     "naming it is damaged: run `sdm check`"),
                   static_cast<unsigned long long>(slot),
                   static_cast<unsigned long long>(layout::kMaxSlot));
}

/* The one place that turns a slot into a byte offset: sanlock never checks offsets, and a
 * wrong one silently wipes or takes a neighbour's lease. */
uint64_t SlotOffset(const SanlockGeometry &g, uint64_t slot)
{
    assert(slot <= layout::kMaxSlot);
    return layout::LeaseOffset(slot, g.alignment);
}

void CopyName(char (&dst)[SANLK_NAME_LEN], const std::string &name)
{
    memset(dst, 0, sizeof(dst));
    memcpy(dst, name.data(), std::min(name.size(), sizeof(dst)));
}

void CopyPath(char (&dst)[SANLK_PATH_LEN], const std::string &path)
{
    memset(dst, 0, sizeof(dst));
    memcpy(dst, path.data(), std::min(path.size(), sizeof(dst) - 1));
}

sanlk_lockspace MakeLockspace(const SanlockGeometry &g, uint32_t host_id)
{
    sanlk_lockspace ls = {};
    CopyName(ls.name, g.lockspace);
    ls.host_id = host_id;
    ls.flags = FindFormat(g)->ls_flags;
    CopyPath(ls.host_id_disk.path, g.ids_path);
    ls.host_id_disk.offset = 0;
    return ls;
}

const std::string &AreaPath(const SanlockGeometry &g, LeaseArea area)
{
    return area == LeaseArea::kOwners ? g.owners_path : g.leases_path;
}

/* A sanlk_resource followed by its one disk, laid out as libsanlock expects: its last
 * member is an array of disks (disks[0] before sanlock 3.9, disks[] since), so the disk
 * must come right after it, in one buffer. */
class SlotResource {
public:
    SlotResource(const SanlockGeometry &g, LeaseArea area, uint64_t slot,
                 LeaseMode mode = LeaseMode::kExclusive)
    {
        sanlk_resource *res = get();
        CopyName(res->lockspace_name, g.lockspace);
        CopyName(res->name, SanlockLeaseManager::ResourceName(area, slot));
        res->flags =
            FindFormat(g)->res_flags | (mode == LeaseMode::kShared ? SANLK_RES_SHARED : 0);
        res->num_disks = 1;
        auto *disk = reinterpret_cast<sanlk_disk *>(buffer_ + offsetof(sanlk_resource, disks));
        CopyPath(disk->path, AreaPath(g, area));
        disk->offset = SlotOffset(g, slot);
    }

    sanlk_resource *get() { return reinterpret_cast<sanlk_resource *>(buffer_); }

private:
    alignas(sanlk_resource) unsigned char buffer_[sizeof(sanlk_resource) +
                                                  sizeof(sanlk_disk)] = {};
};

/* What a sanlock return code means for the user. */
struct Meaning {
    ErrorCode code;
    const char *reason; /* N_() */
    const char *advice; /* N_() */
};

constexpr const char kDaemonAdvice[] =
    N_("start it (`systemctl start sanlock`); its socket is sanlock.sock in $SANLOCK_RUN_DIR, "
       "by default /run/sanlock");
constexpr const char kStorageAdvice[] =
    N_("check that the storage is reachable from this host and not overloaded");
constexpr const char kCheckAdvice[] = N_("the domain's lease areas are damaged: run `sdm check`");

bool IsContention(int rv)
{
    switch (rv) {
    case -EEXIST:  /* held on this host, by this process or another */
    case -EAGAIN:  /* being released on this host */
    case -EBUSY:   /* being acquired on this host */
    case SANLK_ACQUIRE_IDLIVE:
    case SANLK_ACQUIRE_OWNED:
    case SANLK_ACQUIRE_OTHER:
    case SANLK_ACQUIRE_OWNED_RETRY:
    case SANLK_ACQUIRE_SHRETRY:
    case SANLK_DBLOCK_LVER:
    case SANLK_DBLOCK_MBAL:
        return true;
    default:
        return false;
    }
}

Meaning Interpret(int rv)
{
    switch (rv) {
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -ENOTCONN:
    case -EPIPE:
    case -ENOENT: /* the socket; a missing file is told apart by the caller */
        return {ErrorCode::kIoError, N_("the sanlock daemon is not running or not reachable"),
                kDaemonAdvice};
    case -EACCES:
    case -EPERM:
        return {ErrorCode::kIoError, N_("permission denied"),
                N_("run sdmd as root, or give it access to the sanlock socket and the domain")};
    case -ENOSPC:
        return {ErrorCode::kIoError,
                N_("the lockspace is not joined on this host, or is failing"),
                N_("wait until sdmd has joined the domain's lockspace; if it was lost, check "
                   "the storage")};
    case -EINVAL:
    case -E2BIG:
    case -ERANGE:
    case -ENAMETOOLONG:
    case SANLK_ADDLS_SIZES:
    case SANLK_ADDLS_INVALID_HOSTID:
        return {ErrorCode::kInvalidArgument, N_("sanlock refused the request"),
                N_("check the host id and the lease geometry (sector size, alignment) in "
                   "domain.meta")};
    case -EIO:
    case -ETIMEDOUT:
    case SANLK_AIO_TIMEOUT:
    case SANLK_DBLOCK_READ:
    case SANLK_DBLOCK_WRITE:
    case SANLK_LEADER_READ:
    case SANLK_LEADER_WRITE:
    case SANLK_ACQUIRE_IDDISK:
        return {ErrorCode::kIoError, N_("storage I/O failed or timed out"), kStorageAdvice};
    case -EMSGSIZE: /* a short read: beyond the end of the area */
    case SANLK_LEADER_MAGIC:
        return {ErrorCode::kNotFound, N_("there is no lease there"), kCheckAdvice};
    case SANLK_LEADER_LOCKSPACE:
    case SANLK_LEADER_RESOURCE:
        return {ErrorCode::kCorrupt,
                N_("the lease there belongs to another lockspace or resource"), kCheckAdvice};
    case SANLK_LEADER_DIFF:
    case SANLK_LEADER_VERSION:
    case SANLK_LEADER_SECTORSIZE:
    case SANLK_LEADER_NUMHOSTS:
    case SANLK_LEADER_CHECKSUM:
    case SANLK_DBLOCK_CHECKSUM:
        return {ErrorCode::kCorrupt,
                N_("the lease there is damaged or was written with another geometry"),
                N_("check the sector size and alignment in domain.meta; run `sdm check`")};
    case SANLK_ACQUIRE_LOCKSPACE:
        return {ErrorCode::kIoError,
                N_("the lease names a lockspace this host has not joined"), kCheckAdvice};
    case SANLK_HOSTID_BUSY:
        return {ErrorCode::kBusy, N_("the host id is in use by another host"),
                N_("give every host its own host id")};
    case SANLK_RELEASE_LVER:
    case SANLK_RELEASE_OWNER:
        return {ErrorCode::kIoError, N_("another host took the lease over"),
                N_("this host lost its lockspace lease for a while; check the storage")};
    default:
        if (IsContention(rv))
            return {ErrorCode::kBusy, N_("the lease is held by another host or process"),
                    N_("try again when its operation finishes")};
        return {ErrorCode::kIoError, N_("sanlock failed"),
                N_("the sanlock log (/var/log/sanlock.log) says why")};
    }
}

std::string Detail(int rv)
{
    if (rv > -200)
        return strerror(-rv);
    g_autofree char *text = g_strdup_printf("%s, %d", sanlock_strerror(rv), rv);
    return text;
}

bool FileMissing(const std::string &path)
{
    struct stat st;
    return !path.empty() && stat(path.c_str(), &st) != 0 && errno == ENOENT;
}

/* `call` failed on `object` (a lockspace or lease, for people) stored in `file`. */
Status SanlockError(int rv, const char *call, const std::string &object, const std::string &file)
{
    if (rv == -ENOENT && FileMissing(file)) {
        g_autofree char *message = g_strdup_printf(
            _("%s failed: %s is missing; the domain is not formatted for sanlock or is "
              "damaged: run `sdm check`"),
            call, file.c_str());
        return Status::Error(ErrorCode::kNotFound, message);
    }
    Meaning m = Interpret(rv);
    g_autofree char *message = g_strdup_printf(_("%s on %s failed: %s (%s); %s"), call,
                                               object.c_str(), _(m.reason), Detail(rv).c_str(),
                                               _(m.advice));
    return Status::Error(m.code, message);
}

std::string LockspaceWhat(const SanlockGeometry &g)
{
    g_autofree char *text =
        g_strdup_printf(_("lockspace %s (%s)"), g.lockspace.c_str(), g.ids_path.c_str());
    return text;
}

std::string LeaseWhat(const SanlockGeometry &g, LeaseArea area, uint64_t slot)
{
    g_autofree char *text = g_strdup_printf(
        _("lease %s of lockspace %s (slot %llu of %s)"),
        SanlockLeaseManager::ResourceName(area, slot).c_str(), g.lockspace.c_str(),
        static_cast<unsigned long long>(slot), AreaPath(g, area).c_str());
    return text;
}

/* sanlock reads and writes the areas but never creates them. */
Status CheckAreaFile(const std::string &path)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
        int err = errno;
        if (err != ENOENT)
            return Status::FromErrno(err, std::string(_("cannot stat sanlock area ")) + path);
        g_autofree char *message = g_strdup_printf(
            _("sanlock area %s is missing: the domain is not formatted or is damaged; run "
              "`sdm check`"),
            path.c_str());
        return Status::Error(ErrorCode::kNotFound, message);
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
        g_autofree char *message = g_strdup_printf(
            _("sanlock area %s is neither a file nor a block device; remove it, then run "
              "`sdm check`"),
            path.c_str());
        return Status::Error(ErrorCode::kCorrupt, message);
    }
    return Status::Ok();
}

/* Writes reach the areas with O_DIRECT, which does not make a file's new size durable. */
Status SyncArea(const std::string &path)
{
    fileio::Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid())
        return Status::FromErrno(errno, std::string(_("cannot open sanlock area ")) + path);
    return fileio::FsyncFd(fd.get(), path);
}

const char *HostState(uint32_t flags)
{
    switch (flags & SANLK_HOST_MASK) {
    case SANLK_HOST_FREE: return "free";
    case SANLK_HOST_LIVE: return "live";
    case SANLK_HOST_FAIL: return "fail";
    case SANLK_HOST_DEAD: return "dead";
    default: return "unknown";
    }
}

/* libsanlock writes to the daemon's socket with plain send(): if the daemon dies, the
 * write raises SIGPIPE, which kills a process that does not ignore it (measured). Every
 * entry point that talks to the daemon blocks it for the calling thread and discards the
 * one its calls raised; the call then fails with -EPIPE. */
class SigpipeBlock {
public:
    SigpipeBlock()
    {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigpending(&pending);
        was_pending_ = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe_, &saved_);
    }
    ~SigpipeBlock()
    {
        sigset_t pending;
        sigpending(&pending);
        if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipe_, nullptr, &zero);
        }
        pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
    }
    SigpipeBlock(const SigpipeBlock &) = delete;
    SigpipeBlock &operator=(const SigpipeBlock &) = delete;

private:
    sigset_t pipe_;
    sigset_t saved_;
    bool was_pending_ = false;
};

/* A registered connection to the daemon: the leases acquired on it are this process's,
 * and closing it makes the daemon release whatever is still held on it. */
class Registration {
public:
    explicit Registration(int fd) : fd_(fd) {}
    Registration(const Registration &) = delete;
    Registration &operator=(const Registration &) = delete;

    int fd() const { return fd_.get(); }
    /* libsanlock calls on one registered connection must not overlap. */
    std::mutex &calls() { return calls_; }
    /* A release failed on it: the pool stops handing it out. */
    std::atomic<bool> broken{false};

private:
    fileio::Fd fd_;
    std::mutex calls_;
};

class SanlockLeaseHandle : public LeaseHandle {
public:
    SanlockLeaseHandle(std::shared_ptr<Registration> registration, const SlotResource &resource,
                       std::string what)
        : registration_(std::move(registration)), resource_(resource), what_(std::move(what))
    {
    }

    ~SanlockLeaseHandle() override
    {
        SigpipeBlock no_sigpipe;
        int rv;
        {
            std::lock_guard lock(registration_->calls());
            sanlk_resource *list[] = {resource_.get()};
            rv = sanlock_release(registration_->fd(), -1, 0, 1, list);
        }
        if (rv == 0)
            return;
        /* Nobody to return an error to. Dropping the registration makes the daemon release
         * whatever it still holds for it once its last handle goes. */
        registration_->broken = true;
        g_warning(_("sanlock_release of %s failed (%s); this host may keep the lease until "
                    "this process exits or the host leaves the lockspace"),
                  what_.c_str(), Detail(rv).c_str());
    }

private:
    std::shared_ptr<Registration> registration_;
    SlotResource resource_;
    std::string what_;
};

}  // namespace

class SanlockLeaseManager::RegistrationPool {
public:
    Result<std::shared_ptr<Registration>> Take()
    {
        {
            std::lock_guard lock(mutex_);
            while (!idle_.empty()) {
                std::shared_ptr<Registration> r = std::move(idle_.back());
                idle_.pop_back();
                if (!r->broken)
                    return r;
            }
        }
        int fd = sanlock_register();
        if (fd < 0)
            return SanlockError(fd, "sanlock_register", _("this process"), "");
        /* A child that inherited it would keep this process's leases alive after its death. */
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        return std::make_shared<Registration>(fd);
    }

    void Put(std::shared_ptr<Registration> r)
    {
        if (r->broken)
            return;
        std::lock_guard lock(mutex_);
        idle_.push_back(std::move(r));
    }

private:
    std::mutex mutex_;
    std::vector<std::shared_ptr<Registration>> idle_;
};

std::string SanlockLeaseManager::ResourceName(LeaseArea area, uint64_t slot)
{
    if (area == LeaseArea::kOwners)
        return "o" + std::to_string(slot);
    return slot == layout::kDomainLeaseSlot ? "SDM" : "v" + std::to_string(slot);
}

Status SanlockLeaseManager::FormatAreas(const SanlockGeometry &g)
{
    SDM_RETURN_IF_ERROR(CheckGeometry(g));
    SDM_RETURN_IF_ERROR(CheckAreaFile(g.ids_path));
    SDM_RETURN_IF_ERROR(CheckAreaFile(g.leases_path));

    sanlk_lockspace ls = MakeLockspace(g, 0);
    int rv = sanlock_direct_write_lockspace(&ls, 0, 0, g.io_timeout);
    if (rv != 0)
        return SanlockError(rv, "sanlock_direct_write_lockspace", LockspaceWhat(g), g.ids_path);
    SlotResource res(g, LeaseArea::kLeases, layout::kDomainLeaseSlot);
    rv = sanlock_direct_write_resource(res.get(), 0, 0, 0);
    if (rv != 0)
        return SanlockError(rv, "sanlock_direct_write_resource",
                            LeaseWhat(g, LeaseArea::kLeases, layout::kDomainLeaseSlot),
                            g.leases_path);
    SDM_RETURN_IF_ERROR(SyncArea(g.ids_path));
    return SyncArea(g.leases_path);
}

SanlockLeaseManager::SanlockLeaseManager(SanlockGeometry g, uint32_t host_id)
    : g_(std::move(g)),
      host_id_(host_id),
      valid_(CheckManager(g_, host_id)),
      pool_(std::make_unique<RegistrationPool>()),
      chunk_done_(layout::kMaxChunk + 1, false),
      wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK))
{
}

SanlockLeaseManager::~SanlockLeaseManager()
{
    StopMonitor();
    SigpipeBlock no_sigpipe;
    std::lock_guard lock(join_mutex_);
    if (!join_requested_ || !added_)
        return;
    /* UNUSED: never let the daemon kill holders (VMs, or this process) to leave. */
    sanlk_lockspace ls = MakeLockspace(g_, host_id_);
    sanlock_rem_lockspace(&ls, SANLK_REM_ASYNC | SANLK_REM_UNUSED);
}

Status SanlockLeaseManager::Join()
{
    SDM_RETURN_IF_ERROR(valid_);
    SDM_RETURN_IF_ERROR(CheckAreaFile(g_.ids_path));
    SigpipeBlock no_sigpipe;
    std::lock_guard lock(join_mutex_);
    sanlk_lockspace ls = MakeLockspace(g_, host_id_);
    /* The io_timeout passed here is the one sanlock records in this host's lease; the
     * next join of this host id waits out twice that. */
    int rv = sanlock_add_lockspace_timeout(&ls, SANLK_ADD_ASYNC, g_.io_timeout);
    if (rv == 0 || rv == -EINPROGRESS) {
        join_requested_ = true;
        added_ = true;
        StartMonitor();
        return Status::Ok();
    }
    if (rv == -EAGAIN) {
        g_autofree char *message = g_strdup_printf(
            _("%s is being left on this host; join it again when that finishes (a few "
              "seconds)"),
            LockspaceWhat(g_).c_str());
        return Status::Error(ErrorCode::kBusy, message);
    }
    if (rv != -EEXIST)
        return SanlockError(rv, "sanlock_add_lockspace", LockspaceWhat(g_), g_.ids_path);

    /* Joined already (by an earlier sdmd, say); the daemon matches by name only. */
    int inq = sanlock_inq_lockspace(&ls, 0);
    if (inq == 0 || inq == -EINPROGRESS) {
        join_requested_ = true;
        StartMonitor();
        return Status::Ok();
    }
    uint64_t other = 0;
    sanlk_lockspace *all = nullptr;
    int count = 0;
    if (sanlock_get_lockspaces(&all, &count, 0) == 0) {
        for (int i = 0; i < count; i++) {
            if (strncmp(all[i].name, ls.name, SANLK_NAME_LEN) == 0)
                other = all[i].host_id;
        }
    }
    free(all);
    g_autofree char *message = g_strdup_printf(
        _("%s is already joined on this host with host id %llu, not %u; leave it (`sanlock "
          "client rem_lockspace -s %s:%llu:%s:0`) or configure host id %llu"),
        LockspaceWhat(g_).c_str(), static_cast<unsigned long long>(other), host_id_,
        g_.lockspace.c_str(), static_cast<unsigned long long>(other), g_.ids_path.c_str(),
        static_cast<unsigned long long>(other));
    return Status::Error(ErrorCode::kAlreadyExists, message);
}

Status SanlockLeaseManager::WaitJoined(std::chrono::milliseconds timeout)
{
    SDM_RETURN_IF_ERROR(valid_);
    return AwaitJoin(steady_clock::now() + std::max(timeout, milliseconds::zero()), true);
}

/* The lockspace is not there: a join this object started has failed, or nobody joined. */
Status SanlockLeaseManager::JoinEnded(bool requested) const
{
    g_autofree char *message =
        requested
            ? g_strdup_printf(_("joining lockspace %s as host %u failed; is another host "
                                "using id %u? is the storage reachable? the sanlock log "
                                "(/var/log/sanlock.log) says why"),
                              g_.lockspace.c_str(), host_id_, host_id_)
            : g_strdup_printf(_("lockspace %s is not joined on this host as host %u; sdmd "
                                "joins it when it opens the domain"),
                              g_.lockspace.c_str(), host_id_);
    return Status::Error(ErrorCode::kIoError, message);
}

Status SanlockLeaseManager::AwaitJoin(steady_clock::time_point deadline, bool need_generation)
{
    SigpipeBlock no_sigpipe;
    const auto start = steady_clock::now();
    sanlk_lockspace ls = MakeLockspace(g_, host_id_);
    milliseconds poll = kFirstRetry;
    for (;;) {
        int rv = sanlock_inq_lockspace(&ls, 0);
        if (rv == 0) {
            joined_ = true;
            if (!need_generation)
                return Status::Ok();
            /* The daemon reports hosts only after its first look at the lockspace,
             * a fraction of a second after the join (-EAGAIN until then). */
            sanlk_host *host = nullptr;
            int count = 0;
            int hrv = sanlock_get_hosts(g_.lockspace.c_str(), host_id_, &host, &count, 0);
            uint64_t generation = hrv == 0 && count > 0 ? host[0].generation : 0;
            free(host);
            if (generation != 0) {
                generation_ = generation;
                return Status::Ok();
            }
            if (hrv != 0 && hrv != -EAGAIN)
                return SanlockError(hrv, "sanlock_get_hosts", LockspaceWhat(g_), "");
        } else if (rv == -ENOENT) {
            joined_ = false;
            std::lock_guard lock(join_mutex_);
            Status ended = JoinEnded(join_requested_);
            join_requested_ = false;
            return ended;
        } else if (rv != -EINPROGRESS) {
            return SanlockError(rv, "sanlock_inq_lockspace", LockspaceWhat(g_), g_.ids_path);
        }
        auto now = steady_clock::now();
        if (now >= deadline) {
            auto waited = std::chrono::duration_cast<std::chrono::seconds>(now - start);
            g_autofree char *message = g_strdup_printf(
                _("joining lockspace %s as host %u did not finish within %lld s; is another "
                  "host using id %u? is the storage reachable?"),
                g_.lockspace.c_str(), host_id_, static_cast<long long>(waited.count()),
                host_id_);
            return Status::Error(ErrorCode::kTimeout, message);
        }
        std::this_thread::sleep_for(
            std::min<steady_clock::duration>(poll, deadline - now));
        poll = std::min(poll * 2, kMaxJoinPoll);
    }
}

Status SanlockLeaseManager::Leave()
{
    SDM_RETURN_IF_ERROR(valid_);
    /* First, so that leaving is never taken for a loss. */
    StopMonitor();
    SigpipeBlock no_sigpipe;
    std::lock_guard lock(join_mutex_);
    sanlk_lockspace ls = MakeLockspace(g_, host_id_);
    int rv = sanlock_rem_lockspace(&ls, SANLK_REM_UNUSED);
    if (rv == -EBUSY) {
        g_autofree char *message = g_strdup_printf(
            _("cannot leave %s: leases are still held in it on this host (by this process or "
              "by VMs); release them first"),
            LockspaceWhat(g_).c_str());
        return Status::Error(ErrorCode::kBusy, message);
    }
    if (rv != 0 && rv != -ENOENT && rv != -EINPROGRESS)
        return SanlockError(rv, "sanlock_rem_lockspace", LockspaceWhat(g_), g_.ids_path);
    join_requested_ = false;
    added_ = false;
    joined_ = false;
    generation_ = 0;
    SetState(LockspaceState::kJoining, "");
    return Status::Ok();
}

Result<std::vector<SanlockLeaseManager::Host>> SanlockLeaseManager::Hosts()
{
    SDM_RETURN_IF_ERROR(valid_);
    SigpipeBlock no_sigpipe;
    sanlk_host *hosts = nullptr;
    int count = 0;
    int rv = sanlock_get_hosts(g_.lockspace.c_str(), 0, &hosts, &count, 0);
    if (rv == -ENOENT) {
        std::lock_guard lock(join_mutex_);
        return JoinEnded(join_requested_);
    }
    if (rv == -EAGAIN) {
        free(hosts);
        g_autofree char *message = g_strdup_printf(
            _("sanlock has not looked at the hosts of %s since joining it; try again in a few "
              "seconds"),
            LockspaceWhat(g_).c_str());
        return Status::Error(ErrorCode::kBusy, message);
    }
    if (rv != 0) {
        free(hosts);
        return SanlockError(rv, "sanlock_get_hosts", LockspaceWhat(g_), "");
    }
    std::vector<Host> result;
    for (int i = 0; i < count; i++)
        result.push_back({hosts[i].host_id, hosts[i].generation, HostState(hosts[i].flags),
                          hosts[i].timestamp});
    free(hosts);
    return result;
}

Status SanlockLeaseManager::BusyError(LeaseArea area, uint64_t slot, int rv,
                                      milliseconds waited) const
{
    std::string holder;
    /* -EAGAIN and -EBUSY (a release or acquire under way on this host) say nothing about
     * who holds it; storage does. */
    if (rv == -EEXIST) {
        g_autofree char *text = g_strdup_printf(
            _("this host (host id %u: this process or another one on this host)"), host_id_);
        holder = text;
    } else {
        SlotResource res(g_, area, slot);
        sanlk_host *owners = nullptr;
        int count = 0;
        if (sanlock_read_resource_owners(res.get(), 0, &owners, &count) == 0) {
            for (int i = 0; i < count; i++) {
                g_autofree char *one = g_strdup_printf(
                    _("host %llu (generation %llu)"),
                    static_cast<unsigned long long>(owners[i].host_id),
                    static_cast<unsigned long long>(owners[i].generation));
                holder += (holder.empty() ? "" : ", ") + std::string(one);
            }
        }
        free(owners);
        if (holder.empty())
            holder = _("another host, or an acquire or release in flight");
    }
    g_autofree char *message = g_strdup_printf(
        _("%s is held by %s (waited %lld ms); try again when its user is done (a host that "
          "died keeps its leases until about %u s after its last renewal, or until an "
          "administrator frees its host id with `sanlock direct release_id`)"),
        LeaseWhat(g_, area, slot).c_str(), holder.c_str(), static_cast<long long>(waited.count()),
        8 * g_.io_timeout + 60);
    return Status::Error(ErrorCode::kBusy, message);
}

Result<std::unique_ptr<LeaseHandle>> SanlockLeaseManager::Acquire(LeaseArea area, uint64_t slot,
                                                                  LeaseMode mode,
                                                                  milliseconds timeout)
{
    SDM_RETURN_IF_ERROR(valid_);
    SDM_RETURN_IF_ERROR(CheckSlot(slot));
    SDM_RETURN_IF_ERROR(Unusable());
    SigpipeBlock no_sigpipe;
    const auto start = steady_clock::now();
    const auto deadline = start + std::max(timeout, milliseconds::zero());
    const auto transient_deadline = start + std::max(timeout, kTransientRetry);
    if (!joined_)
        SDM_RETURN_IF_ERROR(AwaitJoin(deadline, false));

    SlotResource res(g_, area, slot, mode);
    milliseconds backoff = kFirstRetry;
    for (;;) {
        Result<std::shared_ptr<Registration>> registration = pool_->Take();
        if (!registration.ok())
            return registration.status();
        int rv;
        {
            std::lock_guard lock((*registration)->calls());
            sanlk_resource *list[] = {res.get()};
            rv = sanlock_acquire((*registration)->fd(), -1, SANLK_ACQUIRE_OWNER_NOWAIT, 1, list,
                                 nullptr);
        }
        pool_->Put(*registration);
        if (rv == 0)
            return std::unique_ptr<LeaseHandle>(std::make_unique<SanlockLeaseHandle>(
                *registration, res, LeaseWhat(g_, area, slot)));
        if (rv == -ENOSPC)
            joined_ = false; /* lost or left: the next call looks again */
        if (!IsContention(rv))
            return SanlockError(rv, "sanlock_acquire", LeaseWhat(g_, area, slot),
                                AreaPath(g_, area));
        auto now = steady_clock::now();
        if (now >= (Transient(rv, mode) ? transient_deadline : deadline))
            return BusyError(area, slot, rv,
                             std::chrono::duration_cast<milliseconds>(now - start));
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, kMaxRetry);
    }
}

/* Whether the lease of `slot` is on storage: a record with this lockspace and name. */
Result<bool> SanlockLeaseManager::SlotOnStorage(LeaseArea area, uint64_t slot) const
{
    SlotResource res(g_, area, slot);
    int rv = sanlock_read_resource(res.get(), 0);
    if (rv == 0)
        return true;
    if (rv == SANLK_LEADER_MAGIC || rv == -EMSGSIZE)
        return false;
    return SanlockError(rv, "sanlock_read_resource", LeaseWhat(g_, area, slot),
                        AreaPath(g_, area));
}

Status SanlockLeaseManager::InitChunk(uint64_t chunk)
{
    SDM_RETURN_IF_ERROR(valid_);
    SDM_RETURN_IF_ERROR(Unusable());
    if (chunk > layout::kMaxChunk)
        return Invalid(_("lease chunk %llu is out of range; run `sdm check`"),
                       static_cast<unsigned long long>(chunk));
    SigpipeBlock no_sigpipe;
    const uint64_t first = layout::FirstSlotOf(chunk), last = layout::LastSlotOf(chunk);
    std::lock_guard lock(init_mutex_);
    if (chunk_done_[chunk])
        return Status::Ok();
    /* Its boundary is written last: if it is there, the chunk was written completely (by an
     * earlier incarnation of its owner, or in format 1 by any host) and its slots may be
     * held: never write it again. */
    Result<bool> done = SlotOnStorage(LeaseArea::kLeases, last);
    if (!done.ok())
        return done.status();
    if (!*done) {
        for (uint64_t s = first; s <= last; s++) {
            SlotResource res(g_, LeaseArea::kLeases, s);
            int rv = sanlock_write_resource(res.get(), 0, 0, 0);
            if (rv != 0)
                return SanlockError(rv, "sanlock_write_resource",
                                    LeaseWhat(g_, LeaseArea::kLeases, s), g_.leases_path);
        }
        SDM_RETURN_IF_ERROR(SyncArea(g_.leases_path));
    }
    chunk_done_[chunk] = true;
    return Status::Ok();
}

Status SanlockLeaseManager::InitOwner(uint32_t owner)
{
    SDM_RETURN_IF_ERROR(valid_);
    SDM_RETURN_IF_ERROR(Unusable());
    SDM_RETURN_IF_ERROR(CheckAreaFile(g_.owners_path));
    SigpipeBlock no_sigpipe;
    Result<bool> there = SlotOnStorage(LeaseArea::kOwners, owner);
    if (!there.ok())
        return there.status();
    if (*there)
        return Status::Ok();
    SlotResource res(g_, LeaseArea::kOwners, owner);
    int rv = sanlock_write_resource(res.get(), 0, 0, 0);
    if (rv != 0)
        return SanlockError(rv, "sanlock_write_resource", LeaseWhat(g_, LeaseArea::kOwners, owner),
                            g_.owners_path);
    return SyncArea(g_.owners_path);
}

std::string SanlockLeaseManager::LeaseXml(uint64_t slot) const
{
    g_autofree char *lockspace = g_markup_escape_text(g_.lockspace.c_str(), -1);
    g_autofree char *key =
        g_markup_escape_text(ResourceName(LeaseArea::kLeases, slot).c_str(), -1);
    g_autofree char *path = g_markup_escape_text(g_.leases_path.c_str(), -1);
    g_autofree char *xml = g_strdup_printf(
        "<lease>\n"
        "  <lockspace>%s</lockspace>\n"
        "  <key>%s</key>\n"
        "  <target path='%s' offset='%llu'/>\n"
        "</lease>\n",
        lockspace, key, path, static_cast<unsigned long long>(SlotOffset(g_, slot)));
    return xml;
}

/* --- lockspace health --- */

const char *SanlockLeaseManager::StateName(LockspaceState state)
{
    switch (state) {
    case LockspaceState::kJoining: return "joining";
    case LockspaceState::kJoined: return "joined";
    case LockspaceState::kFailing: return "failing";
    case LockspaceState::kLost: return "lost";
    }
    return "unknown";
}

Status SanlockLeaseManager::Unusable() const
{
    LockspaceState state = state_.load();
    if (state != LockspaceState::kFailing && state != LockspaceState::kLost)
        return Status::Ok();
    std::lock_guard lock(why_mutex_);
    return Status::Error(ErrorCode::kIoError, why_);
}

void SanlockLeaseManager::SetState(LockspaceState state, std::string why)
{
    {
        std::lock_guard lock(why_mutex_);
        why_ = std::move(why);
    }
    state_ = state;
}

/* What the monitor remembers between two looks. */
struct SanlockLeaseManager::Health {
    uint64_t stamp = 0;                 /* this host's lease timestamp, as last reported */
    steady_clock::time_point stamp_seen; /* when it last changed */
};

void SanlockLeaseManager::CheckHealth(Health &health)
{
    LockspaceState state = state_.load();
    if (state == LockspaceState::kLost)
        return;
    sanlk_lockspace ls = MakeLockspace(g_, host_id_);
    int rv = sanlock_inq_lockspace(&ls, 0);
    auto now = steady_clock::now();
    if (state == LockspaceState::kJoining) {
        /* A failed join is WaitJoined's to report. */
        if (rv == 0) {
            health = {0, now};
            SetState(LockspaceState::kJoined, "");
        }
        return;
    }
    g_autofree char *domain = g_path_get_dirname(g_.ids_path.c_str());
    if (rv != 0) {
        /* Being removed (-EINPROGRESS) or gone: this process never removes it while the
         * monitor runs. */
        std::string reason =
            rv == -ENOENT || rv == -EINPROGRESS
                ? Printf(_("sanlock no longer has it: it gives a lockspace up %u s after the "
                           "last renewal of this host's lease, an administrator may have "
                           "removed it, or the sanlock daemon stopped"),
                         8 * g_.io_timeout)
                : Printf(_("the sanlock daemon does not answer (%s)"), Detail(rv).c_str());
        SetState(LockspaceState::kLost,
                 Printf(_("this host lost lockspace %s (%s): %s; new metadata operations on "
                          "the domain are refused: check the storage from this host, then "
                          "attach the domain again (`sdm detach %s`, `sdm attach %s`) or restart "
                          "sdmd"),
                        g_.lockspace.c_str(), g_.ids_path.c_str(), reason.c_str(),
                        g_.lockspace.c_str(), domain));
        return;
    }
    sanlk_host *host = nullptr;
    int count = 0;
    int hrv = sanlock_get_hosts(g_.lockspace.c_str(), host_id_, &host, &count, 0);
    uint64_t stamp = hrv == 0 && count > 0 ? host[0].timestamp : 0;
    free(host);
    if (stamp == 0)
        return; /* not looked at yet */
    if (stamp != health.stamp) {
        health = {stamp, now};
        if (state == LockspaceState::kFailing)
            SetState(LockspaceState::kJoined, "");
        return;
    }
    auto stalled = std::chrono::duration_cast<std::chrono::seconds>(now - health.stamp_seen);
    if (state == LockspaceState::kJoined && stalled >= FailingAfter(g_.io_timeout))
        SetState(LockspaceState::kFailing,
                 Printf(_("this host's lease in lockspace %s (%s) has not been renewed for %lld "
                          "s (sanlock renews it every %u s): the storage is unreachable or "
                          "overloaded; new metadata operations on the domain are refused: "
                          "check the storage from this host. If renewals do not resume within %u s "
                          "of the last one, sanlock stops sdmd and the domain must be "
                          "attached again"),
                        g_.lockspace.c_str(), g_.ids_path.c_str(),
                        static_cast<long long>(stalled.count()), 2 * g_.io_timeout,
                        8 * g_.io_timeout));
}

/* --- the monitor thread --- */

void SanlockLeaseManager::StartMonitor()
{
    std::lock_guard lock(monitor_mutex_);
    if (monitor_.joinable() || !wake_.valid())
        return;
    stop_monitor_ = false;
    monitor_ = std::thread([this] { MonitorLoop(); });
}

void SanlockLeaseManager::StopMonitor()
{
    std::lock_guard lock(monitor_mutex_);
    if (!monitor_.joinable())
        return;
    stop_monitor_ = true;
    uint64_t one = 1;
    if (write(wake_.get(), &one, sizeof(one)) != sizeof(one))
        g_warning("cannot wake the sanlock monitor of %s: %s", g_.lockspace.c_str(),
                  strerror(errno));
    monitor_.join();
}

void SanlockLeaseManager::MonitorLoop()
{
    SigpipeBlock no_sigpipe;
    Health health;
    while (!stop_monitor_) {
        CheckHealth(health);
        struct pollfd wake = {wake_.get(), POLLIN, 0};
        if (poll(&wake, 1, static_cast<int>(kMonitorPoll.count())) <= 0)
            continue;
        uint64_t count;
        if (read(wake_.get(), &count, sizeof(count)) < 0 && errno != EAGAIN)
            break;
    }
}

}  // namespace sdm
