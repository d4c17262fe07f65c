/* faultfs: a passthrough FUSE filesystem that injects I/O faults, for tests.
 *
 *     faultfs SOURCE MOUNTPOINT CONTROL_SOCKET
 *
 * Mirrors the directory SOURCE on MOUNTPOINT. SOURCE is opened before the mount, so
 * MOUNTPOINT may be SOURCE itself (the fault then sits in the path every process already
 * uses). Every file is opened direct_io on the FUSE side and no attribute or name is
 * cached (timeouts 0), so a process reading through the mount sees at once what others
 * write to SOURCE directly, as with shared storage; O_DIRECT opens are accepted, and the
 * underlying file is opened without O_DIRECT (libfuse's buffers are not aligned), which
 * the kernel keeps coherent with other local O_DIRECT users. syncfs(2) on the mount does
 * not reach SOURCE's filesystem (FUSE has no such request); fsync does.
 *
 * Control: a unix stream socket at CONTROL_SOCKET, created once the mount is in place
 * (so a connect that succeeds means the mount is there). One command a line, one reply
 * a line ("ok" or "error: <why>"; `list` sends its lines before the "ok"):
 *
 *     add NAME OPS GLOB ACTION [after=N] [times=N]
 *         OPS     comma-separated operation names (read write open create flush fsync
 *                 fsyncdir truncate fallocate unlink rename mkdir rmdir link symlink
 *                 readlink getattr opendir readdir statfs utimens chmod chown mknod
 *                 copy_file_range lseek access), "io" (read, write, copy_file_range)
 *                 or "all"
 *         GLOB    fnmatch(3) pattern on the path from the mount's root, which starts
 *                 with "/" ("/ids", "*.meta", "*images*"); '*' crosses '/'. A
 *                 rename or link matches on either of its paths; an open file that was
 *                 unlinked has the path "".
 *         ACTION  error=EIO|ENOSPC|EROFS|EACCES|ENOENT|EDQUOT|ETIMEDOUT|ENOTCONN: fail
 *                 with that errno; short=N: read, write or copy at most N bytes; hang:
 *                 block until the rule is cleared, then proceed normally
 *         after=N the first N matching operations pass untouched
 *         times=N then the rule fires N times and passes everything after (default:
 *                 no limit)
 *     clear NAME   remove a rule; operations it holds hung go on
 *     clear        remove every rule
 *     list         "NAME seen=S hits=H waiting=W" for each rule
 *     ping         "ok"
 *
 * Rules are tried in the order they were added; the first that fires decides. SIGTERM,
 * SIGINT or SIGHUP clear every rule, detach the mount and end the process, which aborts
 * the FUSE connection for mount namespaces that still hold a copy of the mount.
 *
 * Threads: FUSE requests run on libfuse's worker threads (the multi-threaded loop, with
 * room for many hung requests), the control socket on one thread and signals on another.
 * The rule table is guarded by one mutex; hung requests wait on one condition variable
 * that every change to the table broadcasts. */
#define FUSE_USE_VERSION 312

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <fuse.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    kMaxRules = 64,
    kMaxName = 64,
    kMaxGlob = 256,
    kMaxLine = 1024,
    /* Every hung request holds a worker thread; sanlock alone retries its lease I/O
     * every few seconds, so leave room for many before the mount stops answering. */
    kMaxThreads = 512,
};

enum Op {
    kOpRead, kOpWrite, kOpOpen, kOpCreate, kOpFlush, kOpFsync, kOpFsyncdir, kOpTruncate,
    kOpFallocate, kOpUnlink, kOpRename, kOpMkdir, kOpRmdir, kOpLink, kOpSymlink,
    kOpReadlink, kOpGetattr, kOpOpendir, kOpReaddir, kOpStatfs, kOpUtimens, kOpChmod,
    kOpChown, kOpMknod, kOpCopyFileRange, kOpLseek, kOpAccess, kOpCount,
};

static const char *const kOpNames[] = {
    "read", "write", "open", "create", "flush", "fsync", "fsyncdir", "truncate",
    "fallocate", "unlink", "rename", "mkdir", "rmdir", "link", "symlink",
    "readlink", "getattr", "opendir", "readdir", "statfs", "utimens", "chmod",
    "chown", "mknod", "copy_file_range", "lseek", "access",
};
_Static_assert(sizeof(kOpNames) / sizeof(kOpNames[0]) == kOpCount, "a name for every Op");

static const struct {
    const char *name;
    int value;
} kErrnos[] = {
    {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EROFS", EROFS}, {"EACCES", EACCES},
    {"ENOENT", ENOENT}, {"EDQUOT", EDQUOT}, {"ETIMEDOUT", ETIMEDOUT},
    {"ENOTCONN", ENOTCONN},
};

enum Action { kActError, kActShort, kActHang };

struct Rule {
    bool active;
    uint64_t serial;          /* tells a hung request that its rule was replaced */
    char name[kMaxName];
    uint32_t ops;             /* bit per enum Op */
    char glob[kMaxGlob];
    enum Action action;
    int error;
    size_t short_bytes;
    uint64_t after;
    uint64_t times;           /* 0: no limit */
    uint64_t seen;            /* matching operations */
    uint64_t hits;            /* operations it acted on */
    uint64_t waiting;         /* requests hung on it now */
};

/* What Inject tells an operation to do. */
struct Verdict {
    int error;                /* > 0: fail with it */
    size_t limit;             /* SIZE_MAX: no short transfer */
};

static pthread_mutex_t rules_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rules_changed = PTHREAD_COND_INITIALIZER;
static struct Rule rules[kMaxRules];
static uint64_t next_serial = 1;

static int base_fd = -1;
static const char *mountpoint;
static const char *control_path;

static void Die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("faultfs: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static bool Matches(const struct Rule *r, enum Op op, const char *path, const char *path2)
{
    if (!(r->ops & (1u << op)))
        return false;
    if (fnmatch(r->glob, path ? path : "", 0) == 0)
        return true;
    return path2 && fnmatch(r->glob, path2, 0) == 0;
}

/* Runs the rules for one operation: may block (hang) until the firing rule is cleared. */
static struct Verdict Inject(enum Op op, const char *path, const char *path2)
{
    struct Verdict v = {0, SIZE_MAX};
    pthread_mutex_lock(&rules_mu);
    for (int i = 0; i < kMaxRules; i++) {
        struct Rule *r = &rules[i];
        if (!r->active || !Matches(r, op, path, path2))
            continue;
        r->seen++;
        if (r->seen <= r->after || (r->times && r->hits >= r->times))
            continue;
        r->hits++;
        if (r->action == kActError) {
            v.error = r->error;
        } else if (r->action == kActShort) {
            v.limit = r->short_bytes;
        } else {
            uint64_t serial = r->serial;
            r->waiting++;
            while (r->active && r->serial == serial)
                pthread_cond_wait(&rules_changed, &rules_mu);
        }
        break;
    }
    pthread_mutex_unlock(&rules_mu);
    return v;
}

/* The path relative to SOURCE, for the *at system calls. */
static const char *Rel(const char *path)
{
    return path[1] ? path + 1 : ".";
}

#define INJECT(op, path, path2)                                                        \
    struct Verdict verdict = Inject(op, path, path2);                                  \
    if (verdict.error)                                                                 \
        return -verdict.error

static int Ret(int rc)
{
    return rc < 0 ? -errno : 0;
}

static size_t Limit(size_t size, struct Verdict v)
{
    return size < v.limit ? size : v.limit;
}

static void *FsInit(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    /* Shared storage: what other hosts write must show through at once. */
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->direct_io = 1;
    cfg->kernel_cache = 0;
    /* An unlinked open file must not turn into a .fuse_hidden file in SOURCE: other
     * hosts (and consistency checks) see SOURCE. Operations on its handle still work
     * (they use the descriptor) and get a null path; with nullpath_ok left off, every
     * other handle operation gets its path, which the rules match on. */
    cfg->hard_remove = 1;
    cfg->nullpath_ok = 0;
    return NULL;
}

static int FsGetattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    INJECT(kOpGetattr, path, NULL);
    if (fi)
        return Ret(fstat((int)fi->fh, st));
    return Ret(fstatat(base_fd, Rel(path), st, AT_SYMLINK_NOFOLLOW));
}

static int FsAccess(const char *path, int mask)
{
    INJECT(kOpAccess, path, NULL);
    return Ret(faccessat(base_fd, Rel(path), mask, AT_EACCESS));
}

static int FsReadlink(const char *path, char *buf, size_t size)
{
    INJECT(kOpReadlink, path, NULL);
    ssize_t n = readlinkat(base_fd, Rel(path), buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

static int FsMknod(const char *path, mode_t mode, dev_t rdev)
{
    INJECT(kOpMknod, path, NULL);
    return Ret(mknodat(base_fd, Rel(path), mode, rdev));
}

static int FsMkdir(const char *path, mode_t mode)
{
    INJECT(kOpMkdir, path, NULL);
    return Ret(mkdirat(base_fd, Rel(path), mode));
}

static int FsUnlink(const char *path)
{
    INJECT(kOpUnlink, path, NULL);
    return Ret(unlinkat(base_fd, Rel(path), 0));
}

static int FsRmdir(const char *path)
{
    INJECT(kOpRmdir, path, NULL);
    return Ret(unlinkat(base_fd, Rel(path), AT_REMOVEDIR));
}

static int FsSymlink(const char *target, const char *path)
{
    INJECT(kOpSymlink, path, NULL);
    return Ret(symlinkat(target, base_fd, Rel(path)));
}

static int FsRename(const char *from, const char *to, unsigned int flags)
{
    INJECT(kOpRename, from, to);
    return Ret(renameat2(base_fd, Rel(from), base_fd, Rel(to), flags));
}

static int FsLink(const char *from, const char *to)
{
    INJECT(kOpLink, from, to);
    return Ret(linkat(base_fd, Rel(from), base_fd, Rel(to), 0));
}

static int FsChmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    INJECT(kOpChmod, path, NULL);
    if (fi)
        return Ret(fchmod((int)fi->fh, mode));
    return Ret(fchmodat(base_fd, Rel(path), mode, 0));
}

static int FsChown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    INJECT(kOpChown, path, NULL);
    if (fi)
        return Ret(fchown((int)fi->fh, uid, gid));
    return Ret(fchownat(base_fd, Rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
}

static int FsTruncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    INJECT(kOpTruncate, path, NULL);
    if (fi)
        return Ret(ftruncate((int)fi->fh, size));
    int fd = openat(base_fd, Rel(path), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = Ret(ftruncate(fd, size));
    close(fd);
    return rc;
}

static int FsUtimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    INJECT(kOpUtimens, path, NULL);
    if (fi)
        return Ret(futimens((int)fi->fh, tv));
    return Ret(utimensat(base_fd, Rel(path), tv, AT_SYMLINK_NOFOLLOW));
}

static int FsOpen(const char *path, struct fuse_file_info *fi)
{
    INJECT(kOpOpen, path, NULL);
    int fd = openat(base_fd, Rel(path), (fi->flags & ~O_DIRECT) | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    fi->fh = (uint64_t)fd;
    return 0;
}

static int FsCreate(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    INJECT(kOpCreate, path, NULL);
    int fd = openat(base_fd, Rel(path), (fi->flags & ~O_DIRECT) | O_CREAT | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    fi->fh = (uint64_t)fd;
    return 0;
}

static int FsRead(const char *path, char *buf, size_t size, off_t off,
                  struct fuse_file_info *fi)
{
    INJECT(kOpRead, path, NULL);
    ssize_t n = pread((int)fi->fh, buf, Limit(size, verdict), off);
    return n < 0 ? -errno : (int)n;
}

static int FsWrite(const char *path, const char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    INJECT(kOpWrite, path, NULL);
    ssize_t n = pwrite((int)fi->fh, buf, Limit(size, verdict), off);
    return n < 0 ? -errno : (int)n;
}

static int FsStatfs(const char *path, struct statvfs *st)
{
    INJECT(kOpStatfs, path, NULL);
    return Ret(fstatvfs(base_fd, st));
}

static int FsFlush(const char *path, struct fuse_file_info *fi)
{
    INJECT(kOpFlush, path, NULL);
    /* close() of a duplicate reports what closing the file would (NFS-style errors). */
    int fd = dup((int)fi->fh);
    if (fd < 0)
        return -errno;
    return Ret(close(fd));
}

static int FsRelease(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int FsFsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    INJECT(kOpFsync, path, NULL);
    return Ret(datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh));
}

static int FsFallocate(const char *path, int mode, off_t off, off_t len,
                       struct fuse_file_info *fi)
{
    INJECT(kOpFallocate, path, NULL);
    return Ret(fallocate((int)fi->fh, mode, off, len));
}

static ssize_t FsCopyFileRange(const char *path_in, struct fuse_file_info *fi_in,
                               off_t off_in, const char *path_out,
                               struct fuse_file_info *fi_out, off_t off_out, size_t size,
                               int flags)
{
    INJECT(kOpCopyFileRange, path_in, path_out);
    loff_t in = off_in, out = off_out;
    ssize_t n = copy_file_range((int)fi_in->fh, &in, (int)fi_out->fh, &out,
                                Limit(size, verdict), (unsigned int)flags);
    return n < 0 ? -errno : n;
}

static off_t FsLseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
    INJECT(kOpLseek, path, NULL);
    off_t r = lseek((int)fi->fh, off, whence);
    return r < 0 ? -errno : r;
}

/* An open directory: readdir resumes at `offset` (a telldir cookie). */
struct Dir {
    DIR *dir;
    off_t offset;
};

static int FsOpendir(const char *path, struct fuse_file_info *fi)
{
    INJECT(kOpOpendir, path, NULL);
    int fd = openat(base_fd, Rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct Dir *d = calloc(1, sizeof(*d));
    if (!d) {
        close(fd);
        return -ENOMEM;
    }
    d->dir = fdopendir(fd);
    if (!d->dir) {
        int err = errno;
        close(fd);
        free(d);
        return -err;
    }
    fi->fh = (uint64_t)(uintptr_t)d;
    return 0;
}

static int FsReaddir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)flags;
    INJECT(kOpReaddir, path, NULL);
    struct Dir *d = (struct Dir *)(uintptr_t)fi->fh;
    if (off != d->offset) {
        seekdir(d->dir, off);
        d->offset = off;
    }
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d->dir);
        if (!e)
            return errno ? -errno : 0;
        struct stat st = {.st_ino = e->d_ino, .st_mode = (mode_t)(DTTOIF(e->d_type))};
        off_t next = telldir(d->dir);
        if (fill(buf, e->d_name, &st, next, 0)) {
            /* The buffer is full: this entry goes first in the next call. */
            seekdir(d->dir, d->offset);
            return 0;
        }
        d->offset = next;
    }
}

static int FsReleasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct Dir *d = (struct Dir *)(uintptr_t)fi->fh;
    closedir(d->dir);
    free(d);
    return 0;
}

static int FsFsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    INJECT(kOpFsyncdir, path, NULL);
    int fd = dirfd(((struct Dir *)(uintptr_t)fi->fh)->dir);
    return Ret(datasync ? fdatasync(fd) : fsync(fd));
}

static const struct fuse_operations kOps = {
    .init = FsInit,
    .getattr = FsGetattr,
    .access = FsAccess,
    .readlink = FsReadlink,
    .mknod = FsMknod,
    .mkdir = FsMkdir,
    .unlink = FsUnlink,
    .rmdir = FsRmdir,
    .symlink = FsSymlink,
    .rename = FsRename,
    .link = FsLink,
    .chmod = FsChmod,
    .chown = FsChown,
    .truncate = FsTruncate,
    .utimens = FsUtimens,
    .open = FsOpen,
    .create = FsCreate,
    .read = FsRead,
    .write = FsWrite,
    .statfs = FsStatfs,
    .flush = FsFlush,
    .release = FsRelease,
    .fsync = FsFsync,
    .fallocate = FsFallocate,
    .copy_file_range = FsCopyFileRange,
    .lseek = FsLseek,
    .opendir = FsOpendir,
    .readdir = FsReaddir,
    .releasedir = FsReleasedir,
    .fsyncdir = FsFsyncdir,
};

/* --- control --- */

static bool ParseUint(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-')
        return false;
    *out = v;
    return true;
}

static bool ParseOps(char *list, uint32_t *ops, char *why, size_t why_size)
{
    *ops = 0;
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name;
         name = strtok_r(NULL, ",", &save)) {
        if (strcmp(name, "all") == 0) {
            *ops |= (1u << kOpCount) - 1;
            continue;
        }
        if (strcmp(name, "io") == 0) {
            *ops |= 1u << kOpRead | 1u << kOpWrite | 1u << kOpCopyFileRange;
            continue;
        }
        int i = 0;
        while (i < kOpCount && strcmp(kOpNames[i], name) != 0)
            i++;
        if (i == kOpCount) {
            snprintf(why, why_size, "unknown operation '%s'", name);
            return false;
        }
        *ops |= 1u << i;
    }
    if (!*ops)
        snprintf(why, why_size, "no operation given");
    return *ops != 0;
}

static bool ParseAction(const char *text, struct Rule *r, char *why, size_t why_size)
{
    if (strcmp(text, "hang") == 0) {
        r->action = kActHang;
        return true;
    }
    if (strncmp(text, "short=", 6) == 0) {
        uint64_t n;
        if (!ParseUint(text + 6, &n)) {
            snprintf(why, why_size, "'%s' is not short=<bytes>", text);
            return false;
        }
        r->action = kActShort;
        r->short_bytes = (size_t)n;
        return true;
    }
    if (strncmp(text, "error=", 6) == 0) {
        for (size_t i = 0; i < sizeof(kErrnos) / sizeof(kErrnos[0]); i++) {
            if (strcmp(kErrnos[i].name, text + 6) == 0) {
                r->action = kActError;
                r->error = kErrnos[i].value;
                return true;
            }
        }
    }
    snprintf(why, why_size, "'%s' is not an action (error=EIO, short=N or hang)", text);
    return false;
}

static struct Rule *FindRule(const char *name)
{
    for (int i = 0; i < kMaxRules; i++) {
        if (rules[i].active && strcmp(rules[i].name, name) == 0)
            return &rules[i];
    }
    return NULL;
}

/* Parses and installs `add` arguments; rules_mu held. */
static bool AddRule(char **argv, int argc, char *why, size_t why_size)
{
    if (argc < 4) {
        snprintf(why, why_size, "usage: add NAME OPS GLOB ACTION [after=N] [times=N]");
        return false;
    }
    struct Rule r = {0};
    if (strlen(argv[0]) >= sizeof(r.name) || strlen(argv[2]) >= sizeof(r.glob)) {
        snprintf(why, why_size, "name or glob too long");
        return false;
    }
    snprintf(r.name, sizeof(r.name), "%s", argv[0]);
    snprintf(r.glob, sizeof(r.glob), "%s", argv[2]);
    if (!ParseOps(argv[1], &r.ops, why, why_size) || !ParseAction(argv[3], &r, why, why_size))
        return false;
    for (int i = 4; i < argc; i++) {
        bool ok = false;
        if (strncmp(argv[i], "after=", 6) == 0)
            ok = ParseUint(argv[i] + 6, &r.after);
        else if (strncmp(argv[i], "times=", 6) == 0)
            ok = ParseUint(argv[i] + 6, &r.times);
        if (!ok) {
            snprintf(why, why_size, "'%s' is not after=N or times=N", argv[i]);
            return false;
        }
    }
    if (FindRule(r.name)) {
        snprintf(why, why_size, "a rule named '%s' exists; clear it first", r.name);
        return false;
    }
    for (int i = 0; i < kMaxRules; i++) {
        if (!rules[i].active) {
            r.active = true;
            r.serial = next_serial++;
            rules[i] = r;
            return true;
        }
    }
    snprintf(why, why_size, "too many rules (%d)", kMaxRules);
    return false;
}

static void ClearRule(struct Rule *r)
{
    r->active = false;
    r->waiting = 0;
}

static void ClearAll(void)
{
    pthread_mutex_lock(&rules_mu);
    for (int i = 0; i < kMaxRules; i++)
        ClearRule(&rules[i]);
    pthread_cond_broadcast(&rules_changed);
    pthread_mutex_unlock(&rules_mu);
}

static void Reply(FILE *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
    fflush(out);
}

static void Command(char *line, FILE *out)
{
    char *argv[16];
    int argc = 0;
    for (char *save = NULL, *word = strtok_r(line, " \t\r\n", &save); word && argc < 16;
         word = strtok_r(NULL, " \t\r\n", &save))
        argv[argc++] = word;
    if (argc == 0) {
        Reply(out, "error: empty command");
        return;
    }
    char why[256] = "";
    bool ok = true;
    pthread_mutex_lock(&rules_mu);
    if (strcmp(argv[0], "add") == 0) {
        ok = AddRule(argv + 1, argc - 1, why, sizeof(why));
    } else if (strcmp(argv[0], "clear") == 0 && argc == 1) {
        for (int i = 0; i < kMaxRules; i++)
            ClearRule(&rules[i]);
    } else if (strcmp(argv[0], "clear") == 0 && argc == 2) {
        struct Rule *r = FindRule(argv[1]);
        if (r)
            ClearRule(r);
        else
            snprintf(why, sizeof(why), "no rule named '%s'", argv[1]);
        ok = r != NULL;
    } else if (strcmp(argv[0], "list") == 0) {
        for (int i = 0; i < kMaxRules; i++) {
            const struct Rule *r = &rules[i];
            if (r->active)
                fprintf(out, "%s seen=%llu hits=%llu waiting=%llu\n", r->name,
                        (unsigned long long)r->seen, (unsigned long long)r->hits,
                        (unsigned long long)r->waiting);
        }
    } else if (strcmp(argv[0], "ping") != 0) {
        snprintf(why, sizeof(why), "unknown command '%s' (add, clear, list, ping)", argv[0]);
        ok = false;
    }
    pthread_cond_broadcast(&rules_changed);
    pthread_mutex_unlock(&rules_mu);
    if (ok)
        Reply(out, "ok");
    else
        Reply(out, "error: %s", why);
}

static void *ControlThread(void *arg)
{
    int listener = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        FILE *io = fdopen(fd, "r+");
        if (!io) {
            close(fd);
            continue;
        }
        char line[kMaxLine];
        while (fgets(line, sizeof(line), io))
            Command(line, io);
        fclose(io);
    }
    return NULL;
}

static int ListenControl(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        Die("control socket path %s is too long (at most %zu bytes)", path,
            sizeof(addr.sun_path) - 1);
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        Die("socket: %s", strerror(errno));
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 8) != 0)
        Die("cannot listen on %s: %s", path, strerror(errno));
    return fd;
}

/* Ends the process on a signal: hung requests go on, the mount is detached, and exiting
 * closes /dev/fuse, which fails any request still coming from other namespaces. */
static void *SignalThread(void *arg)
{
    sigset_t *set = arg;
    int sig;
    sigwait(set, &sig);
    ClearAll();
    if (umount2(mountpoint, MNT_DETACH) != 0 && errno != EINVAL)
        fprintf(stderr, "faultfs: umount %s: %s\n", mountpoint, strerror(errno));
    unlink(control_path);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        Die("usage: faultfs SOURCE MOUNTPOINT CONTROL_SOCKET");
    mountpoint = argv[2];
    control_path = argv[3];
    base_fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (base_fd < 0)
        Die("cannot open %s: %s", argv[1], strerror(errno));

    /* Blocked before any thread starts, so only SignalThread takes them. */
    static sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    char fsname[PATH_MAX + 16];
    snprintf(fsname, sizeof(fsname), "fsname=faultfs:%s,subtype=faultfs", argv[1]);
    char *fuse_argv[] = {argv[0], "-o", fsname, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
    struct fuse *fuse = fuse_new(&args, &kOps, sizeof(kOps), NULL);
    if (!fuse)
        Die("cannot set up FUSE");
    if (fuse_mount(fuse, mountpoint) != 0)
        Die("cannot mount on %s (root and /dev/fuse are needed)", mountpoint);

    int listener = ListenControl(control_path);
    pthread_t control, signal_thread;
    if (pthread_create(&signal_thread, NULL, SignalThread, &signals) != 0 ||
        pthread_create(&control, NULL, ControlThread, (void *)(intptr_t)listener) != 0)
        Die("cannot start threads");
    fprintf(stderr, "faultfs: %s mounted on %s, control %s\n", argv[1], mountpoint,
            control_path);

    struct fuse_loop_config *loop = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(loop, kMaxThreads);
    int rc = fuse_loop_mt(fuse, loop);
    /* Unmounted from outside (fusermount3 -u): nothing is left to serve. */
    ClearAll();
    fuse_unmount(fuse);
    unlink(control_path);
    return rc == 0 ? 0 : 1;
}
