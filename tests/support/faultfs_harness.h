/* A faultfs process for tests: a passthrough FUSE mount of a directory that fails, cuts
 * short or hangs chosen operations (tests/support/faultfs/faultfs.c, docs/faultfs.md).
 *
 * The mount is made in this process's mount namespace, or in another process's (say a
 * sanlock daemon's, which has its own), and may cover its own source directory so that
 * processes already using the path go through it. A process that made a private mount
 * namespace before the mount (SanlockDaemon does) does not see it: mount first, then
 * start such processes. Needs root and /dev/fuse. Not thread-safe, except that Command,
 * Add, Clear and Rules may be called while another thread is blocked in a hung
 * operation on the mount. */
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "tests/support/test_support.h"

namespace sdm::testing {

/* The faultfs binary ($SDM_FAULTFS). */
std::string FaultFsPath();

class FaultFs {
public:
    /* Mounts a mirror of `source` on `mountpoint` (both existing directories; they may be
     * the same), in the mount namespace of `ns_pid` (0: this process's), and waits until
     * its control socket answers; throws std::runtime_error with faultfs's output if it
     * does not within 10 s. */
    FaultFs(std::string source, std::string mountpoint, pid_t ns_pid = 0);
    /* Unmount(). */
    ~FaultFs();
    FaultFs(const FaultFs &) = delete;
    FaultFs &operator=(const FaultFs &) = delete;

    /* One control line (see faultfs.c); the reply, its last line "ok" or "error: ...". */
    std::string Command(const std::string &line);
    /* `add name ops glob action [after=N] [times=N]`: "" on success, else the reply. */
    std::string Add(const std::string &name, const std::string &ops, const std::string &glob,
                    const std::string &action, uint64_t after = 0, uint64_t times = 0);
    /* Removes one rule (requests it holds hung go on): "" on success, else the reply. */
    std::string Clear(const std::string &name);
    /* Removes every rule. */
    std::string ClearAll();

    struct RuleState {
        uint64_t seen = 0;    /* operations that matched */
        uint64_t hits = 0;    /* operations it acted on */
        uint64_t waiting = 0; /* operations it holds hung now */
    };
    /* The rules in force, by name. */
    std::map<std::string, RuleState> Rules();
    /* Polls until rule `name` holds at least `count` operations hung; false after 60 s. */
    bool WaitHung(const std::string &name, uint64_t count = 1);

    /* Clears every rule, detaches the mount and ends faultfs (SIGTERM; SIGKILL and a lazy
     * unmount from here if it does not end within 5 s). Namespaces that still hold a copy
     * of the mount get ENOTCONN from then on. */
    void Unmount();

    bool mounted() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }
    const std::string &mountpoint() const { return mountpoint_; }
    /* What faultfs printed, for failure messages. */
    std::string Output() const;

private:
    TempDir dir_;
    std::string source_;
    std::string mountpoint_;
    std::string control_;
    pid_t pid_ = -1;
};

}  // namespace sdm::testing
