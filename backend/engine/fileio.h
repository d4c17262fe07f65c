/* Defensive file I/O relative to a directory descriptor.
 *
 * The domain is untrusted input (another host wrote it): every open here refuses to follow
 * symlinks, reads are bounded, and every durable write is temp + fsync + rename + fsync of
 * the directory. Functions are stateless and thread-safe. */
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "sdm/status.h"

namespace sdm::fileio {

/* An owned file descriptor. */
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd &operator=(Fd &&other) noexcept;
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd();

    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }

private:
    int fd_ = -1;
};

/* openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC). A symlink is kCorrupt ("... is a
 * symlink; the domain must not contain symlinks"); a missing file is kNotFound. `name` must
 * be a single path component (no '/'), else kInvalidArgument. */
Result<Fd> OpenAt(int dirfd, const std::string &name, int flags, mode_t mode = 0644);
/* Opens a directory (O_DIRECTORY | O_NOFOLLOW); `name` may be "." for dirfd itself. */
Result<Fd> OpenDirAt(int dirfd, const std::string &name);
/* Opens an absolute or relative directory path, following symlinks (the domain root
 * given by an administrator); everything below it is then opened with OpenAt. */
Result<Fd> OpenDirPath(const std::string &path);

/* Writes `name.tmp`, fsyncs it, renames it over `name`, and, if sync_dir, fsyncs dirfd. */
Status AtomicWriteAt(int dirfd, const std::string &name, const std::string &content,
                     bool sync_dir = true);
/* Creates `name` (it must not exist) and writes `content` without syncing: for files
 * whose durability a later fsync of the file provides. */
Status WriteFileAt(int dirfd, const std::string &name, const std::string &content);
/* Reads a regular file of at most max_size bytes; larger, non-regular or symlink: kCorrupt. */
Result<std::string> ReadSmallFileAt(int dirfd, const std::string &name, size_t max_size);

Status FsyncFd(int fd, const std::string &what);
/* fsync of the regular file dirfd/name; `what` names it in errors. */
Status FsyncFileAt(int dirfd, const std::string &name, const std::string &what);
/* fsync of the directory dirfd/name ("." for dirfd itself). */
Status FsyncDirAt(int dirfd, const std::string &name);

/* Names in dirfd/name, without "." and "..", in no particular order. */
Result<std::vector<std::string>> ListDirAt(int dirfd, const std::string &name);
/* Removes dirfd/name and, if it is a directory, everything below it, never following a
 * symlink (a symlink is removed, not its target). A missing name is success. */
Status RemoveTreeAt(int dirfd, const std::string &name);
/* renameat2 with RENAME_NOREPLACE when no_replace: an existing target is kAlreadyExists. */
Status RenameAt(int olddirfd, const std::string &oldname, int newdirfd,
                const std::string &newname, bool no_replace);

}  // namespace sdm::fileio
