/* Simulated hosts sharing one storage domain, for the integration suites that need several
 * hosts (hosts, parallel, lockspace-loss, fencing) and the load and soak suites.
 *
 * A SimHost is one host: a private sanlock daemon (tests/support/sanlock_harness.h) and an
 * sdmd on sanlock leases (tests/support/daemon_harness.h) with the lock-order checker on.
 * Either may be killed and started again, as a crash or a host death would; the host then
 * attaches the domain again. A SimCluster formats a domain from one host (io_timeout 1, so
 * a join takes ~3 s) and attaches it on every host, and reads what the domain looks like:
 * the volume listing, the consistency check, a garbage collection sweep.
 *
 * Thread-safety: RunJob and the SimHost calls that only talk D-Bus on their own
 * connection (NewConnection) may run on any thread; everything else (starting, killing,
 * the cluster's checks) belongs to the test's main thread. */
#pragma once

#include <gio/gio.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/daemon_harness.h"
#include "tests/support/sanlock_harness.h"

namespace sdm::testing {

/* What became of one job: submitted or refused, then its final state (or the state it was
 * still in when waiting gave up, which is a hang). */
struct JobOutcome {
    bool submitted = false;
    std::string id;
    std::string state;         /* "done", "failed", "aborted"; anything else: not finished */
    std::string error_code;    /* "busy", "already-exists", ...; the D-Bus error if refused */
    std::string error_message;
    uint64_t slot = 0;         /* of the volume made, once done */
    std::string path;

    bool finished() const { return state == "done" || state == "failed" || state == "aborted"; }
};

/* Submits `method` (a job-starting call) on `connection` and waits up to `wait_ms` for the
 * job. Thread-safe. */
JobOutcome RunJob(GDBusConnection *connection, const char *method, GVariant *args,
                  uint32_t wait_ms);
/* Submits without waiting; the outcome has only `submitted`, `id` or the refusal. */
JobOutcome SubmitJob(GDBusConnection *connection, const char *method, GVariant *args);
/* Waits for a submitted job (an outcome from SubmitJob). */
JobOutcome WaitForJob(GDBusConnection *connection, JobOutcome submitted, uint32_t wait_ms);

GVariant *NoOptions();

class SimHost {
public:
    explicit SimHost(uint32_t id);
    ~SimHost();
    SimHost(const SimHost &) = delete;
    SimHost &operator=(const SimHost &) = delete;

    /* Starts (or starts again) sdmd, with `env` entries ("NAME=value") added to its
     * environment and `config` lines to its [sdmd] group (where they win over the host's
     * own: "lease_backend=local\n" gives a host on local leases), and opens the host's main
     * connection. */
    ::testing::AssertionResult StartSdmd(const std::vector<std::string> &env = {},
                                         const std::string &config = "");
    /* Whether sdmd answers a call. */
    bool Answers();
    /* SIGKILL of sdmd: its leases go back when sanlock sees it die. */
    void KillSdmd();
    /* SIGKILL of sdmd and of the sanlock daemon: the host's leases stay on storage. */
    void Die();
    /* After Die: a fresh sanlock daemon on the same run directory. */
    void RestartSanlock();
    /* AttachDomain: returns before the lockspace is joined. With `uuid`, the domain found
     * there must be that one. */
    ::testing::AssertionResult Attach(const std::string &root, const std::string &uuid = "");
    /* Waits until the domain's lockspace is joined on this host. */
    ::testing::AssertionResult WaitJoined(const std::string &uuid);

    /* The first out-argument of a call on the main connection; null with `error` set
     * ("Name: message") if it failed. */
    GVariant *Out(const char *method, GVariant *args, std::string *error);
    /* Out for a call that must succeed: a test failure naming the host, the call and the
     * error otherwise, and null. */
    GVariant *OutOk(const char *method, GVariant *args);
    /* SubmitJob on the main connection; a refusal is a test failure. */
    JobOutcome Submit(const char *method, GVariant *args);
    /* WaitForJob on the main connection, for up to two minutes. */
    JobOutcome Wait(JobOutcome submitted);
    /* Submit and Wait for a job that must end done (a test failure otherwise). */
    JobOutcome Job(const char *method, GVariant *args);
    /* The step a job of this sdmd is at (GetJob; "" after a failed call, a test failure). */
    std::string Step(const std::string &job_id);
    /* A connection of its own, for a client thread; null if refused. */
    GDBusConnection *NewConnection() const;
    GDBusConnection *connection() const { return conn_; }

    uint32_t id() const { return id_; }
    bool up() const { return conn_ != nullptr; }
    /* sdmd's log and the tail of its sanlock daemon's, for failure messages. */
    std::string Diagnostics() const;
    /* For a test that ends or inspects either process its own way. */
    DaemonHarness &daemon() { return daemon_; }
    SanlockDaemon &sanlock() { return sanlock_; }

private:
    void CloseConnection();

    uint32_t id_;
    SanlockDaemon sanlock_;
    TempDir dir_;
    DaemonHarness daemon_{dir_.path()};
    GDBusConnection *conn_ = nullptr;
};

/* A volume as ListVolumes shows it. */
struct ListedVolume {
    std::string name;
    std::string path;
    std::string legality;
    uint64_t slot = 0;
    uint64_t capacity = 0;
};

struct SweepReport {
    bool ok = false; /* the call succeeded */
    std::string error;
    uint32_t seen = 0, collected = 0, live = 0, errors = 0;
};

/* How StartSdmds starts the hosts' sdmd (`config` and `env` as for SimHost::StartSdmd). */
struct SdmdSetup {
    std::string config;
    std::vector<std::string> env;       /* every host's */
    std::vector<std::string> host1_env; /* host 1's only, added to `env` */
};

class SimCluster {
public:
    /* Hosts 1..count (their sanlock daemons started; throws std::runtime_error if one does
     * not start), for a domain at `root`, an existing empty directory, or by default at a
     * directory of the cluster's own. Start() brings them up. */
    explicit SimCluster(int count, std::string root = "");

    /* StartSdmds() and FormatAndAttach(): the domain attached and joined everywhere. */
    ::testing::AssertionResult Start();
    /* Starts every host's sdmd. */
    ::testing::AssertionResult StartSdmds(const SdmdSetup &setup = {});
    /* Host `formatter` formats the domain; every host attaches it, at `views`[id] where a
     * host sees the domain elsewhere than root (through faultfs, say), and joins. */
    ::testing::AssertionResult FormatAndAttach(uint32_t formatter = 1,
                                               const std::map<uint32_t, std::string> &views = {});

    SimHost &host(uint32_t id) { return *hosts_.at(id - 1); }
    int size() const { return static_cast<int>(hosts_.size()); }
    const std::string &uuid() const { return uuid_; }
    const std::string &root() const { return root_; }
    const std::string &lockspace() const { return lockspace_; }
    uint64_t alignment() const { return alignment_; }
    std::string ids_path() const;

    /* SIGKILL of host `id`'s sdmd, as a crash; with `host_death` of its sanlock daemon
     * too, and then its host id is freed at once (`sanlock direct release_id`, what an
     * administrator does for a host known dead) so that its leases can be taken. */
    ::testing::AssertionResult Kill(uint32_t id, bool host_death);
    /* Brings a killed host back (its sanlock daemon too after a host death), attached;
     * `env` as for StartSdmd. */
    ::testing::AssertionResult Revive(uint32_t id, bool host_death,
                                      const std::vector<std::string> &env = {});

    /* ListVolumes on `h` by name; false with `error` set if the call failed. */
    bool List(SimHost &h, std::map<std::string, ListedVolume> *volumes, std::string *error);
    /* The names ListVolumes gives on `h`, sorted; a failed call is a test failure. */
    std::vector<std::string> VolumeNames(SimHost &h);
    /* `h`'s standing in the domain's lockspace (GetDomain's lockspace_state: "joined",
     * "failing", "lost", ...); "" after a failed call, a test failure. */
    std::string LockspaceState(SimHost &h);
    /* CheckDomain on `h`: each problem, and "N transactions pending" if any; empty when
     * the domain is consistent and has no pending transaction. A report without a problems
     * list is a problem too. */
    std::vector<std::string> CheckProblems(SimHost &h);
    SweepReport Sweep(SimHost &h);
    /* Submits on `h` a qcow2 clone of `source` named `name` and waits until it is in its
     * copy step (where a test's stalled qemu-img can hold it); `clone` is the job. */
    ::testing::AssertionResult CloneUntilCopying(SimHost &h, const std::string &source,
                                                 const std::string &name, JobOutcome *clone);
    /* Names of listed volumes that share a lease slot with another listed volume. */
    static std::vector<std::string> SharedSlots(const std::map<std::string, ListedVolume> &v);

    /* Every live host's diagnostics. */
    std::string Diagnostics() const;

private:
    TempDir tmp_;
    std::string root_;
    std::string uuid_;
    std::string lockspace_;
    uint64_t alignment_ = 0;
    std::vector<std::unique_ptr<SimHost>> hosts_;
};

/* The seed for a randomized test: `env_name` if set (to replay a failure), else a fresh one. */
uint64_t SeedFromEnv(const char *env_name);
/* A whole number of seconds from `env_name`, or `fallback`. */
int SecondsFromEnv(const char *env_name, int fallback);

}  // namespace sdm::testing
