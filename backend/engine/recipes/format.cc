/* Recipe: format a directory as a domain, and remove an empty domain.
 *
 * Format. The claim decides between formatters (two hosts building the same pool at once):
 *
 * begin     the directory must be empty but for what an interrupted format leaves
 * claim     symlink .format -> <uuid> (EEXIST: another format runs or ran; see below)
 * skeleton  images/, tx/, chunks/, and ids, leases, owners sized to one slot
 * areas     the lease manager writes its areas (sanlock: lockspace, domain lease)
 * durable   every file and directory above, and the root
 * commit    domain.meta written aside and renamed in without replacing: now a domain
 * done      the claim removed
 *
 * A directory without domain.meta is no domain, whatever else it holds: an interrupted
 * format is redone from the start by the next format. The claim names its process (boot,
 * pid namespace, pid and start time): on the same machine a format knows at once whether
 * the claimer lives. Another machine's claim is judged by its age: younger than
 * kStaleClaim, a format in progress, whose commit the next format waits for (then
 * kAlreadyExists: the caller joins the domain; kBusy if it never comes); older, abandoned.
 * An abandoned claim is taken over.
 *
 * Remove: the domain lease exclusively (nobody else has the domain attached); the images/
 * and tx/ empty; commit = unlink domain.meta; the leases released; then the skeleton. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>
#include <thread>
#include <vector>

#include "backend/engine/crashpoint.h"
#include "backend/engine/domain_impl.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/engine/transaction.h"

namespace sdm {

namespace st = steps::format;

namespace {

/* A format takes well under a second; a claim this old was abandoned. */
constexpr time_t kStaleClaim = 30;
/* How long a format waits for a concurrent one to commit. */
constexpr auto kWaitForOther = std::chrono::seconds(10);

Status ValidateFormatParams(const FormatParams &p)
{
    if (p.io_timeout < 1 || p.io_timeout > 600)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("io_timeout must be 1 to 600 seconds"));
    if (p.sector_size != 512 && p.sector_size != 4096)
        return Status::Error(ErrorCode::kInvalidArgument, _("sector size must be 512 or 4096"));
    const uint64_t mib = 1 << 20;
    if (p.alignment != mib && p.alignment != 2 * mib && p.alignment != 4 * mib &&
        p.alignment != 8 * mib)
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("lease alignment must be 1, 2, 4 or 8 MiB"));
    return Status::Ok();
}

bool IsSkeleton(const std::string &entry)
{
    return std::any_of(std::begin(layout::kSkeleton), std::end(layout::kSkeleton),
                       [&](const char *name) { return entry == name; });
}

std::string ReadText(const char *path)
{
    char buf[128] = {};
    fileio::Fd fd(open(path, O_RDONLY | O_CLOEXEC));
    ssize_t n = fd.valid() ? read(fd.get(), buf, sizeof(buf) - 1) : -1;
    std::string text = n > 0 ? std::string(buf, n) : "";
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
    return text;
}

std::vector<std::string> Words(const std::string &text)
{
    std::vector<std::string> words;
    std::string word;
    for (char c : text + " ") {
        if (c != ' ') {
            word += c;
        } else if (!word.empty()) {
            words.push_back(word);
            word.clear();
        }
    }
    return words;
}

/* Field 22 of /proc/<pid>/stat: the process's start time, in clock ticks since boot; ""
 * if there is no such process or it is a zombie (dead, not yet reaped). */
std::string StartTime(const std::string &pid)
{
    std::string text = ReadText(("/proc/" + pid + "/stat").c_str());
    size_t at = text.rfind(')');
    if (at == std::string::npos)
        return "";
    std::vector<std::string> fields = Words(text.substr(at + 1));
    if (fields.size() <= 19 || fields[0] == "Z" || fields[0] == "X")
        return "";
    return fields[19]; /* field 22 is the 20th after comm; field 3, the state, the 1st */
}

/* "<boot id> <pid namespace> <pid> <start time>" of this process. */
std::string ThisProcess()
{
    struct stat ns;
    std::string pid = std::to_string(getpid());
    return ReadText("/proc/sys/kernel/random/boot_id") + " " +
           (stat("/proc/self/ns/pid", &ns) == 0 ? std::to_string(ns.st_ino) : "?") + " " +
           pid + " " + StartTime(pid);
}

/* The claim's text: "<uuid> <boot id> <pid namespace> <pid> <start time>". */
std::string ClaimText(const std::string &uuid) { return uuid + " " + ThisProcess(); }

/* Whether the process a claim names is alive; nullopt when this machine cannot tell (the
 * claim is another machine's, or another pid namespace's). */
std::optional<bool> ClaimerAlive(const std::string &claim)
{
    std::vector<std::string> theirs = Words(claim), mine = Words(ThisProcess());
    if (theirs.size() != 5 || mine.size() != 4 || theirs[1] != mine[0] || theirs[2] != mine[1])
        return std::nullopt;
    return StartTime(theirs[3]) == theirs[4];
}

/* kAlreadyExists if `root` is a domain. */
Status AlreadyDomain(int root, const std::string &path)
{
    meta::DomainMeta existing;
    auto info = ReadDomainInfo(root, path, &existing);
    if (!info.ok())
        return info.status().code() == ErrorCode::kNotFound ? Status::Ok() : info.status();
    return Status::Error(ErrorCode::kAlreadyExists,
                         path + _(" is already a storage domain (uuid ") + info->uuid + ")");
}

/* An empty directory, or what an interrupted format leaves (the skeleton, empty, and its
 * claim), may be formatted. */
Status CheckFormattable(int root, const std::string &path)
{
    SDM_RETURN_IF_ERROR(AlreadyDomain(root, path));
    auto entries = fileio::ListDirAt(root, ".");
    if (!entries.ok())
        return entries.status();
    for (const auto &entry : *entries) {
        struct stat st;
        if (entry == "lost+found" || entry == layout::kFormatClaim ||
            entry == std::string(layout::kDomainMeta) + layout::kTempSuffix)
            continue;
        if (IsSkeleton(entry) && fstatat(root, entry.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISREG(st.st_mode))
                continue;
            auto sub = fileio::ListDirAt(root, entry);
            if (S_ISDIR(st.st_mode) && sub.ok() && sub->empty())
                continue;
        }
        return Status::Error(ErrorCode::kInvalidArgument,
                             path + _(" is not empty (it holds '") + entry +
                                 _("'); a domain is formatted on an empty directory"));
    }
    return Status::Ok();
}

/* Takes the claim for `uuid`, or says why not: kAlreadyExists once another format's
 * commit shows, kBusy if a live claim never commits. */
Status Claim(int root, const std::string &path, const std::string &uuid)
{
    const std::string ours = ClaimText(uuid);
    const auto give_up = std::chrono::steady_clock::now() + kWaitForOther;
    for (;;) {
        if (symlinkat(ours.c_str(), root, layout::kFormatClaim) == 0)
            return Status::Ok();
        if (errno != EEXIST)
            return Status::FromErrno(errno, path + "/" + layout::kFormatClaim);
        SDM_RETURN_IF_ERROR(AlreadyDomain(root, path));
        struct stat st;
        char target[256];
        ssize_t n = readlinkat(root, layout::kFormatClaim, target, sizeof(target) - 1);
        if (n < 0 || fstatat(root, layout::kFormatClaim, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* removed meanwhile */
        std::optional<bool> alive = ClaimerAlive(std::string(target, n));
        if (alive == false || (!alive && time(nullptr) - st.st_ctim.tv_sec >= kStaleClaim)) {
            /* Abandoned: replace it atomically; whoever's claim stands afterwards won. */
            std::string temp = std::string(layout::kFormatClaim) + "." + uuid;
            if (symlinkat(ours.c_str(), root, temp.c_str()) != 0 ||
                renameat(root, temp.c_str(), root, layout::kFormatClaim) != 0) {
                (void)unlinkat(root, temp.c_str(), 0);
                return Status::FromErrno(errno, path + "/" + layout::kFormatClaim);
            }
            n = readlinkat(root, layout::kFormatClaim, target, sizeof(target) - 1);
            if (n > 0 && std::string(target, n) == ours)
                return Status::Ok();
            continue;
        }
        if (std::chrono::steady_clock::now() >= give_up)
            return Status::Error(ErrorCode::kBusy,
                                 path + _(" is being formatted by another host or process "
                                          "(its claim .format is younger than 30 s and no "
                                          "domain.meta came); try again in a minute"));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

/* A skeleton file of one slot, emptied first: leftovers of an interrupted format go. */
Status CreateAreaFile(int root, const char *name, uint64_t size)
{
    auto fd = fileio::OpenAt(root, name, O_RDWR | O_CREAT, 0660);
    if (!fd.ok())
        return fd.status();
    if (fchmod(fd->get(), 0660) != 0) /* whatever the umask */
        return Status::FromErrno(errno, std::string(_("cannot set the mode of ")) + name);
    if (ftruncate(fd->get(), 0) != 0 || ftruncate(fd->get(), static_cast<off_t>(size)) != 0)
        return Status::FromErrno(errno, std::string(_("cannot size ")) + name);
    return Status::Ok();
}

}  // namespace

Result<DomainInfo> Domain::Format(const std::string &path, const FormatParams &params)
{
    SDM_RETURN_IF_ERROR(ValidateFormatParams(params));
    Step(st::kBegin, nullptr);
    auto root = fileio::OpenDirPath(path);
    if (!root.ok())
        return root.status();
    const int fd = root->get();
    SDM_RETURN_IF_ERROR(CheckFormattable(fd, path));

    meta::DomainMeta meta;
    meta.uuid = layout::NewUuid();
    meta.io_timeout = params.io_timeout;
    meta.sector_size = params.sector_size;
    meta.alignment = params.alignment;
    meta.lockspace = meta.uuid;
    meta.ctime = time(nullptr);
    DomainInfo info;
    info.uuid = meta.uuid;
    info.path = path;
    info.version = meta.version;
    info.io_timeout = meta.io_timeout;
    info.sector_size = meta.sector_size;
    info.alignment = meta.alignment;
    info.lockspace = meta.lockspace;

    Step(st::kClaim, nullptr);
    SDM_RETURN_IF_ERROR(Claim(fd, path, meta.uuid));
    /* Checked again under the claim: the directory may have filled meanwhile. */
    SDM_RETURN_IF_ERROR(CheckFormattable(fd, path));

    Step(st::kSkeleton, nullptr);
    for (const char *dir : {layout::kImagesDir, layout::kTxDir, layout::kChunksDir}) {
        if (mkdirat(fd, dir, 0755) != 0 && errno != EEXIST)
            return Status::FromErrno(errno, path + "/" + dir);
        /* Whatever the umask: the hypervisor's user must reach the data files below. */
        if (fchmodat(fd, dir, 0755, 0) != 0)
            return Status::FromErrno(errno, path + "/" + dir);
    }
    for (const char *file : {layout::kIds, layout::kLeases, layout::kOwners})
        SDM_RETURN_IF_ERROR(CreateAreaFile(fd, file, params.alignment));

    Step(st::kAreas, nullptr);
    if (params.write_lease_areas)
        SDM_RETURN_IF_ERROR(params.write_lease_areas(info));

    Step(st::kDurable, nullptr);
    std::string why;
    Barrier barrier(ResolveSyncPolicy(fd, Durability::kAuto, &why));
    for (const char *file : {layout::kIds, layout::kLeases, layout::kOwners})
        SDM_RETURN_IF_ERROR(barrier.DataAt(fd, file, path + "/" + file));
    for (const char *dir : {layout::kImagesDir, layout::kTxDir, layout::kChunksDir})
        SDM_RETURN_IF_ERROR(fileio::FsyncDirAt(fd, dir));
    barrier.Dir(fd, path);
    SDM_RETURN_IF_ERROR(barrier.Sync());

    Step(st::kCommit, nullptr);
    const std::string temp = std::string(layout::kDomainMeta) + layout::kTempSuffix;
    (void)unlinkat(fd, temp.c_str(), 0);
    SDM_RETURN_IF_ERROR(fileio::WriteFileAt(fd, temp, meta::Encode(meta)));
    SDM_RETURN_IF_ERROR(fileio::FsyncFileAt(fd, temp, path + "/" + temp));
    SDM_RETURN_IF_ERROR(fileio::RenameAt(fd, temp, fd, layout::kDomainMeta, true));
    SDM_RETURN_IF_ERROR(fileio::FsyncDirAt(fd, "."));

    Step(st::kDone, nullptr);
    (void)unlinkat(fd, layout::kFormatClaim, 0);
    return info;
}

Status FileDomain::Remove()
{
    /* The attachment's shared domain lease becomes the exclusive one: nobody else may have
     * the domain attached. */
    domain_lease_.reset();
    lockdep::WillAcquire(DomainLeaseKey());
    auto exclusive = leases_->Acquire(LeaseArea::kLeases, layout::kDomainLeaseSlot,
                                      LeaseMode::kExclusive, std::chrono::milliseconds(0));
    if (!exclusive.ok()) {
        auto shared = leases_->Acquire(LeaseArea::kLeases, layout::kDomainLeaseSlot,
                                       LeaseMode::kShared, options_.lock_timeout);
        if (shared.ok())
            domain_lease_ = std::move(*shared);
        return Status::Error(ErrorCode::kBusy,
                             Printf(_("domain %s is attached by another host or process (%s); "
                                      "stop the pool (detach the domain) everywhere else "
                                      "first"),
                                    info_.uuid.c_str(), exclusive.status().message().c_str()));
    }
    lockdep::Acquired(DomainLeaseKey());
    std::unique_ptr<LeaseHandle> held = std::move(*exclusive);
    auto release = [&held] {
        if (held) {
            lockdep::Released(DomainLeaseKey());
            held.reset();
        }
    };

    Status status = [&]() -> Status {
        auto domain_lock = locks_.Lock(DomainLockKey(), LockMode::kExclusive,
                                       options_.lock_timeout);
        if (!domain_lock.ok())
            return domain_lock.status();
        auto images = fileio::ListDirAt(images_dir(), ".");
        if (!images.ok())
            return images.status();
        auto pending = fileio::ListDirAt(tx_dir(), ".");
        if (!pending.ok())
            return pending.status();
        if (!images->empty()) {
            size_t volumes = std::count_if(images->begin(), images->end(), [](const auto &e) {
                return layout::ClassifyImagesEntry(e) == layout::EntryKind::kName;
            });
            return Status::Error(ErrorCode::kBusy,
                                 Printf(_("domain %s is not empty: it holds %zu volumes (%zu "
                                          "entries in images/); delete them first (a domain is "
                                          "removed only when empty), and run gc and check if "
                                          "none is listed"),
                                        info_.uuid.c_str(), volumes, images->size()));
        }
        if (!pending->empty())
            return Status::Error(ErrorCode::kBusy,
                                 Printf(_("domain %s has %zu pending transactions (running "
                                          "here or on another host, or abandoned); wait for "
                                          "them or run gc, then retry"),
                                        info_.uuid.c_str(), pending->size()));
        /* The commit: without domain.meta the directory is no domain, only what an
         * interrupted format leaves, which a new format accepts. */
        if (unlinkat(root(), layout::kDomainMeta, 0) != 0)
            return Status::FromErrno(errno, AbsPath(layout::kDomainMeta));
        return fileio::FsyncDirAt(root(), ".");
    }();
    if (!status.ok()) {
        release();
        auto shared = leases_->Acquire(LeaseArea::kLeases, layout::kDomainLeaseSlot,
                                       LeaseMode::kShared, options_.lock_timeout);
        if (shared.ok())
            domain_lease_ = std::move(*shared);
        return status;
    }

    /* The leases live in the files about to go: release them first. */
    allocator_.Stop();
    owner_lease_.reset();
    release();
    auto chunks = fileio::ListDirAt(chunks_dir(), ".");
    if (chunks.ok()) {
        for (const auto &entry : *chunks)
            (void)unlinkat(chunks_dir(), entry.c_str(), 0);
    }
    for (const char *dir : {layout::kTxDir, layout::kImagesDir, layout::kChunksDir}) {
        if (unlinkat(root(), dir, AT_REMOVEDIR) != 0 && errno != ENOENT)
            return Status::FromErrno(errno, AbsPath(dir));
    }
    for (const char *file : {layout::kOwners, layout::kLeases, layout::kIds}) {
        if (unlinkat(root(), file, 0) != 0 && errno != ENOENT)
            return Status::FromErrno(errno, AbsPath(file));
    }
    return fileio::FsyncDirAt(root(), ".");
}

}  // namespace sdm
