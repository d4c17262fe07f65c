/* Defensive file I/O relative to directory descriptors; see fileio.h for the contract.
 * Every function is stateless and thread-safe; error messages name the full path (read
 * back from /proc/self/fd) so that an administrator can find the offending file. */
#include "backend/engine/fileio.h"

#include <dirent.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"

namespace sdm::fileio {
namespace {

/* A hostile domain may hold an arbitrarily deep tree; the engine's own trees are at most
 * four levels deep, so anything deeper is refused before it exhausts descriptors or stack. */
constexpr int kMaxTreeDepth = 32;

void CloseFd(int fd)
{
    /* Linux releases the descriptor even when close fails with EINTR: never retry. */
    if (fd >= 0)
        close(fd);
}

/* "dirpath/name" for messages; only called on error paths. */
std::string DescribeAt(int dirfd, const std::string &name)
{
    if (dirfd == AT_FDCWD)
        return name;
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
    char target[PATH_MAX];
    ssize_t len = readlink(link, target, sizeof(target) - 1);
    if (len <= 0)
        return name;
    std::string dir(target, static_cast<size_t>(len));
    return name == "." ? dir : dir + "/" + name;
}

Status CheckComponent(const std::string &name, bool allow_dot)
{
    bool bad = name.empty() || name.find('/') != std::string::npos ||
               name.find('\0') != std::string::npos || name == ".." ||
               (name == "." && !allow_dot);
    if (!bad)
        return Status::Ok();
    g_autofree char *msg = g_strdup_printf(
        _("'%s' is not a single file name inside a directory; this is a bug in the caller, "
          "please report it"),
        name.c_str());
    return Status::Error(ErrorCode::kInvalidArgument, msg);
}

Status SymlinkError(int dirfd, const std::string &name)
{
    g_autofree char *msg = g_strdup_printf(
        _("%s is a symlink; the domain must not contain symlinks there: remove it, then run "
          "`sdm-local check`"),
        DescribeAt(dirfd, name).c_str());
    return Status::Error(ErrorCode::kCorrupt, msg);
}

/* Whether dirfd/name, not followed, is of `type` (S_IFLNK, S_IFDIR, ...). */
bool IsTypeAt(int dirfd, const std::string &name, mode_t type)
{
    struct stat st;
    return fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           (st.st_mode & S_IFMT) == type;
}

Status ExistsError(int dirfd, const std::string &name)
{
    g_autofree char *msg = g_strdup_printf(
        _("%s already exists; choose another name or remove it first"),
        DescribeAt(dirfd, name).c_str());
    return Status::Error(ErrorCode::kAlreadyExists, msg);
}

Status ErrnoAt(int err, const char *call, int dirfd, const std::string &name)
{
    return Status::FromErrno(err, std::string(call) + " " + DescribeAt(dirfd, name));
}

/* fsync, retried on EINTR; 0 or an errno. */
int FsyncRetry(int fd)
{
    while (fsync(fd) < 0) {
        if (errno != EINTR)
            return errno;
    }
    return 0;
}

/* Creates dirfd/name (O_EXCL: never an existing inode) and writes all of `content`; on
 * failure the new file is removed again. */
Result<Fd> CreateAndWrite(int dirfd, const std::string &name, const std::string &content)
{
    auto fd = OpenAt(dirfd, name, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (!fd.ok())
        return fd.status();
    if (fchmod(fd->get(), 0644) != 0) { /* whatever the umask */
        int err = errno;
        unlinkat(dirfd, name.c_str(), 0);
        return ErrnoAt(err, "chmod", dirfd, name);
    }
    size_t done = 0;
    while (done < content.size()) {
        ssize_t n = write(fd->get(), content.data() + done, content.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : EIO;
            unlinkat(dirfd, name.c_str(), 0);
            return ErrnoAt(err, "write", dirfd, name);
        }
        done += static_cast<size_t>(n);
    }
    return fd;
}

Status RemoveTreeBelow(int dirfd, const std::string &name, int depth);

Status RemoveDirContents(int dirfd, const std::string &name, int depth)
{
    if (depth >= kMaxTreeDepth) {
        g_autofree char *msg = g_strdup_printf(
            _("%s is nested more than %d directories deep, which libvirt-sdm never creates; "
              "inspect it and remove it by hand"),
            DescribeAt(dirfd, name).c_str(), kMaxTreeDepth);
        return Status::Error(ErrorCode::kCorrupt, msg);
    }
    auto dir = OpenDirAt(dirfd, name);
    if (!dir.ok())
        return dir.status();
    auto entries = ListDirAt(dir->get(), ".");
    if (!entries.ok())
        return entries.status();
    for (const std::string &entry : *entries)
        SDM_RETURN_IF_ERROR(RemoveTreeBelow(dir->get(), entry, depth + 1));
    return Status::Ok();
}

Status RemoveTreeBelow(int dirfd, const std::string &name, int depth)
{
    struct stat st;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? Status::Ok() : ErrnoAt(errno, "stat", dirfd, name);
    if (S_ISDIR(st.st_mode)) {
        SDM_RETURN_IF_ERROR(RemoveDirContents(dirfd, name, depth));
        if (unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT)
            return ErrnoAt(errno, "rmdir", dirfd, name);
        return Status::Ok();
    }
    if (unlinkat(dirfd, name.c_str(), 0) < 0 && errno != ENOENT)
        return ErrnoAt(errno, "unlink", dirfd, name);
    return Status::Ok();
}

}  // namespace

Fd &Fd::operator=(Fd &&other) noexcept
{
    if (this != &other)
        CloseFd(std::exchange(fd_, std::exchange(other.fd_, -1)));
    return *this;
}

Fd::~Fd() { CloseFd(fd_); }

Result<Fd> OpenAt(int dirfd, const std::string &name, int flags, mode_t mode)
{
    SDM_RETURN_IF_ERROR(CheckComponent(name, true));
    int fd;
    do {
        fd = openat(dirfd, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode);
    } while (fd < 0 && errno == EINTR);
    if (fd >= 0)
        return Fd(fd);
    int err = errno;
    /* O_DIRECTORY on a symlink fails with ENOTDIR before O_NOFOLLOW is looked at. */
    if (err == ELOOP || (err == ENOTDIR && IsTypeAt(dirfd, name, S_IFLNK)))
        return SymlinkError(dirfd, name);
    return ErrnoAt(err, "open", dirfd, name);
}

Result<Fd> OpenDirAt(int dirfd, const std::string &name)
{
    return OpenAt(dirfd, name, O_RDONLY | O_DIRECTORY);
}

Result<Fd> OpenDirPath(const std::string &path)
{
    int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return Status::FromErrno(errno, "open " + path);
    return Fd(fd);
}

Status AtomicWriteAt(int dirfd, const std::string &name, const std::string &content,
                     bool sync_dir)
{
    SDM_RETURN_IF_ERROR(CheckComponent(name, false));
    const std::string tmp = name + layout::kTempSuffix;
    /* A stale temp file may be a hard link planted by another host: unlink it and create a
     * fresh inode rather than truncate whatever it points to. */
    if (unlinkat(dirfd, tmp.c_str(), 0) < 0 && errno != ENOENT)
        return ErrnoAt(errno, "unlink", dirfd, tmp);
    auto fd = CreateAndWrite(dirfd, tmp, content);
    if (!fd.ok())
        return fd.status();
    Status status;
    if (int err = FsyncRetry(fd->get()))
        status = ErrnoAt(err, "fsync", dirfd, tmp);
    else if (renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) < 0)
        status = ErrnoAt(errno, "rename", dirfd, tmp);
    if (!status.ok()) {
        unlinkat(dirfd, tmp.c_str(), 0);
        return status;
    }
    return sync_dir ? FsyncDirAt(dirfd, ".") : Status::Ok();
}

Result<std::string> ReadSmallFileAt(int dirfd, const std::string &name, size_t max_size)
{
    /* O_NONBLOCK: opening a FIFO planted in the domain must not hang the reader. */
    auto fd = OpenAt(dirfd, name, O_RDONLY | O_NONBLOCK);
    if (!fd.ok())
        return fd.status();
    struct stat st;
    if (fstat(fd->get(), &st) < 0)
        return ErrnoAt(errno, "stat", dirfd, name);
    if (!S_ISREG(st.st_mode)) {
        g_autofree char *msg = g_strdup_printf(
            _("%s is not a regular file; remove it, then run `sdm-local check`"),
            DescribeAt(dirfd, name).c_str());
        return Status::Error(ErrorCode::kCorrupt, msg);
    }
    auto too_big = [&](uint64_t size) {
        g_autofree char *msg = g_strdup_printf(
            _("%s is %llu bytes, more than the %llu a metadata file may hold; it was not "
              "written by libvirt-sdm: run `sdm-local check`"),
            DescribeAt(dirfd, name).c_str(), static_cast<unsigned long long>(size),
            static_cast<unsigned long long>(max_size));
        return Status::Error(ErrorCode::kCorrupt, msg);
    };
    if (static_cast<uint64_t>(st.st_size) > max_size)
        return too_big(static_cast<uint64_t>(st.st_size));
    /* One byte of slack tells a file that grew after fstat from one that did not. */
    std::string content(static_cast<size_t>(st.st_size) + 1, '\0');
    size_t done = 0;
    for (;;) {
        if (done == content.size()) {
            if (done > max_size)
                return too_big(done);
            content.resize(std::min(content.size() * 2, max_size + 1));
        }
        ssize_t n = read(fd->get(), content.data() + done, content.size() - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return ErrnoAt(errno, "read", dirfd, name);
        }
        if (n == 0)
            break;
        done += static_cast<size_t>(n);
    }
    content.resize(done);
    return content;
}

Status WriteFileAt(int dirfd, const std::string &name, const std::string &content)
{
    SDM_RETURN_IF_ERROR(CheckComponent(name, false));
    auto fd = CreateAndWrite(dirfd, name, content);
    return fd.ok() ? Status::Ok() : fd.status();
}

Status FsyncFd(int fd, const std::string &what)
{
    int err = FsyncRetry(fd);
    return err ? Status::FromErrno(err, "fsync " + what) : Status::Ok();
}

Status FsyncFileAt(int dirfd, const std::string &name, const std::string &what)
{
    auto fd = OpenAt(dirfd, name, O_RDONLY);
    if (!fd.ok())
        return fd.status();
    return FsyncFd(fd->get(), what);
}

Status FsyncDirAt(int dirfd, const std::string &name)
{
    auto dir = OpenDirAt(dirfd, name);
    if (!dir.ok())
        return dir.status();
    return FsyncFd(dir->get(), DescribeAt(dirfd, name));
}

Result<std::vector<std::string>> ListDirAt(int dirfd, const std::string &name)
{
    auto dir = OpenDirAt(dirfd, name);
    if (!dir.ok())
        return dir.status();
    DIR *stream = fdopendir(dir->get());
    if (!stream)
        return ErrnoAt(errno, "opendir", dirfd, name);
    dir->release();
    std::vector<std::string> names;
    int err = 0;
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(stream);
        if (!entry) {
            err = errno;
            break;
        }
        std::string entry_name(entry->d_name);
        if (entry_name != "." && entry_name != "..")
            names.push_back(std::move(entry_name));
    }
    closedir(stream);
    if (err)
        return ErrnoAt(err, "readdir", dirfd, name);
    return names;
}

Status RemoveTreeAt(int dirfd, const std::string &name)
{
    SDM_RETURN_IF_ERROR(CheckComponent(name, false));
    return RemoveTreeBelow(dirfd, name, 0);
}

Status RenameAt(int olddirfd, const std::string &oldname, int newdirfd,
                const std::string &newname, bool no_replace)
{
    SDM_RETURN_IF_ERROR(CheckComponent(oldname, false));
    SDM_RETURN_IF_ERROR(CheckComponent(newname, false));
    if (renameat2(olddirfd, oldname.c_str(), newdirfd, newname.c_str(),
                  no_replace ? RENAME_NOREPLACE : 0) == 0)
        return Status::Ok();
    int err = errno;
    if (no_replace && err == EEXIST)
        return ExistsError(newdirfd, newname);
    if (no_replace && err == EINVAL && !IsTypeAt(olddirfd, oldname, S_IFDIR)) {
        /* NFS refuses RENAME_NOREPLACE; link(2) refuses an existing target just as
         * atomically. A crash before the unlink leaves both names on the same inode. */
        if (linkat(olddirfd, oldname.c_str(), newdirfd, newname.c_str(), 0) < 0) {
            if (errno == EEXIST)
                return ExistsError(newdirfd, newname);
            return ErrnoAt(errno, "link", olddirfd, oldname);
        }
        if (unlinkat(olddirfd, oldname.c_str(), 0) < 0)
            return ErrnoAt(errno, "unlink", olddirfd, oldname);
        return Status::Ok();
    }
    if (no_replace && err == EINVAL) {
        g_autofree char *msg = g_strdup_printf(
            _("cannot rename %s to %s without replacing: the filesystem does not support "
              "RENAME_NOREPLACE for directories; put the domain on a filesystem that does"),
            DescribeAt(olddirfd, oldname).c_str(), DescribeAt(newdirfd, newname).c_str());
        return Status::Error(ErrorCode::kUnsupported, msg);
    }
    return ErrnoAt(err, "rename", olddirfd, oldname);
}

}  // namespace sdm::fileio
