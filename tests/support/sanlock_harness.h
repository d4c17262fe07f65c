/* Private sanlock daemons for tests: each one is a simulated host.
 *
 * A daemon runs in its own mount namespace with a private directory bind-mounted on
 * /var/log (sanlock always logs to /var/log/sanlock.log), its own run directory
 * (SANLOCK_RUN_DIR) and no watchdog; it needs root. libsanlock talks to the daemon of the
 * first SANLOCK_RUN_DIR it sees, so a process talks to one daemon: a test that uses
 * SanlockLeaseManager in-process sets SANLOCK_RUN_DIR (UseInThisProcess) before its first
 * sanlock call, and every other host is a child process started with env(). The harness
 * itself never calls libsanlock. Not thread-safe. */
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "tests/support/test_support.h"

namespace sdm::testing {

class SanlockDaemon {
public:
    /* Starts `sanlock daemon -D -w 0 -U root -G root -e <host_name> -g <grace>` and waits
     * until it accepts connections; throws std::runtime_error with its output if it does
     * not within 10 s. `grace` is how long the daemon gives a lease holder between SIGTERM
     * and SIGKILL when the host loses its lockspace. */
    explicit SanlockDaemon(std::string host_name, int grace_seconds = 2);
    /* Stop(). */
    ~SanlockDaemon();
    SanlockDaemon(const SanlockDaemon &) = delete;
    SanlockDaemon &operator=(const SanlockDaemon &) = delete;

    /* SIGTERM, which the daemon obeys only when it has no lockspace; SIGKILL after 2 s. */
    void Stop();
    /* SIGKILL, as a host that dies: its host lease stays on storage, unrenewed. */
    void Kill();
    /* Stops it if it runs, and starts it again on the same run directory. */
    void Restart();

    bool running() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }
    const std::string &host_name() const { return host_name_; }
    std::string run_dir() const { return dir_.Sub("run"); }
    /* "SANLOCK_RUN_DIR=<run_dir>", the environment entry a child process needs. */
    std::string env() const;
    /* Points this process's libsanlock at this daemon; call before any sanlock call. */
    void UseInThisProcess() const;
    /* The last `bytes` of what the daemon printed (its log, with -D), for failure messages. */
    std::string OutputTail(size_t bytes = 4000) const;

private:
    void Start();

    TempDir dir_;
    std::string host_name_;
    int grace_seconds_;
    pid_t pid_ = -1;
};

/* Frees `host_id`'s host lease in a lockspace at once, as `sanlock direct release_id`
 * does: what an administrator does for a host known to be dead, so that its leases can
 * be taken without waiting for them to expire. Returns the command's output if it fails,
 * "" on success. Needs no daemon. */
std::string ReleaseHostId(const std::string &lockspace, uint64_t host_id,
                          const std::string &ids_path);

}  // namespace sdm::testing
