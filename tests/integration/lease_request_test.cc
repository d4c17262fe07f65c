/* The domain lease handed over on request, and a lost lockspace, with real sanlock daemons
 * and real sdmd processes (one of each per simulated host, tests/support/sim_cluster.h).
 *
 * Hosts keep the domain lease for a linger of 60 s (the configuration's maximum) after
 * their last operation, twice the 30 s another host's operation waits for it: without
 * sanlock's request mechanism the second host's operation fails busy. With it, the
 * holder gives the lease back when asked: at once when idle, after its operation when
 * busy. Printed figures (how long the asker waited) are measurements, not assertions.
 * A host whose lockspace vanishes or stops being renewed refuses metadata operations,
 * says so in its domain status and log, and exits at once, without cleaning up, when
 * sanlock ends it. Needs root (the sanlock daemons do); skipped otherwise.
 * Single-threaded like the harnesses it uses. */
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend/engine/layout.h"
#include "tests/support/sim_cluster.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr char kLongLinger[] = "domain_lease_linger_ms=60000\n";
/* sdmd's exit status after sanlock fenced it (backend/daemon/main.cc). */
constexpr int kExitFenced = 3;

double SecondsSince(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

class LeaseRequestTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
    }

    /* Starts hosts 1..count, `config` lines for every sdmd and `host1_env` for host 1's. */
    void StartHosts(int count, const std::string &config,
                    const std::vector<std::string> &host1_env = {})
    {
        cluster_ = std::make_unique<SimCluster>(count);
        ASSERT_TRUE(cluster_->StartSdmds({config, {}, host1_env}));
    }

    SimHost &host(int id) { return cluster_->host(static_cast<uint32_t>(id)); }
    const std::string &uuid() const { return cluster_->uuid(); }
    const std::string &lockspace() const { return cluster_->lockspace(); }

    GVariant *CreateArgs(const std::string &name)
    {
        return g_variant_new("(sst@a{sv})", uuid().c_str(), name.c_str(), 4 * kMiB, NoOptions());
    }

    /* Runs a create on `h`: how it ended. */
    JobOutcome Create(SimHost &h, const std::string &name)
    {
        return h.Wait(h.Submit("CreateVolume", CreateArgs(name)));
    }

    TempDir tmp_;
    std::unique_ptr<SimCluster> cluster_;
};

/* Host 1 lingers on the domain lease, idle; host 2's create asks for it and gets it long
 * before either the linger or its own 30 s lock timeout ends. */
TEST_F(LeaseRequestTest, IdleHolderGivesTheDomainLeaseBackAtOnce)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(2, kLongLinger));
    ASSERT_TRUE(cluster_->FormatAndAttach());

    JobOutcome first = Create(host(1), "first");
    ASSERT_EQ(first.state, "done") << first.error_message;

    auto start = std::chrono::steady_clock::now();
    JobOutcome second = Create(host(2), "second");
    double waited = SecondsSince(start);
    EXPECT_EQ(second.state, "done")
        << second.error_message << "\n" << host(1).Diagnostics();
    printf("host 2's create while host 1 lingered idle on the domain lease: %.2f s\n", waited);
    RecordProperty("idle_request_served_s", std::to_string(waited));

    /* And back: host 2 lingers now, host 1 asks. */
    start = std::chrono::steady_clock::now();
    JobOutcome third = Create(host(1), "third");
    waited = SecondsSince(start);
    EXPECT_EQ(third.state, "done")
        << third.error_message << "\n" << host(2).Diagnostics();
    printf("host 1's create while host 2 lingered idle: %.2f s\n", waited);
}

/* Host 1 is in the middle of a clone when host 2 asks: the lease comes back as soon as
 * the clone ends, not a linger later, and the clone itself is not disturbed. */
TEST_F(LeaseRequestTest, BusyHolderGivesItBackWhenItsOperationEnds)
{
    std::string gate = tmp_.Sub("copy-may-finish");
    std::string slow = tmp_.Sub("slow-qemu-img");
    WriteFile(slow, "#!/bin/sh\n"
                    "if [ \"$1\" = convert ]; then\n"
                    "  while [ ! -e " + gate + " ]; do sleep 0.1; done\n"
                    "fi\n"
                    "exec qemu-img \"$@\"\n");
    ASSERT_EQ(chmod(slow.c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(StartHosts(2, kLongLinger, {"SDM_QEMU_IMG=" + slow}));
    ASSERT_TRUE(cluster_->FormatAndAttach());
    JobOutcome source = Create(host(1), "source");
    ASSERT_EQ(source.state, "done") << source.error_message;
    JobOutcome clone;
    ASSERT_TRUE(cluster_->CloneUntilCopying(host(1), "source", "copy", &clone));

    JobOutcome create = host(2).Submit("CreateVolume", CreateArgs("asker"));
    ASSERT_TRUE(create.submitted);
    /* The request reaches host 1 within about 4 x io_timeout + 3 s; let the clone run
     * past that, so that host 1 learns of it while busy. */
    std::this_thread::sleep_for(std::chrono::seconds(8));
    EXPECT_EQ(host(2).Step(create.id), "create.begin")
        << "host 2 got the domain lease while host 1's clone held it";
    auto released = std::chrono::steady_clock::now();
    WriteFile(gate, "");

    JobOutcome cloned = host(1).Wait(clone);
    EXPECT_EQ(cloned.state, "done") << cloned.error_message;
    JobOutcome created = host(2).Wait(create);
    double waited = SecondsSince(released);
    EXPECT_EQ(created.state, "done")
        << created.error_message << "\n" << host(1).Diagnostics();
    printf("host 2's create ended %.2f s after host 1's clone was let finish\n", waited);
    RecordProperty("busy_request_served_s", std::to_string(waited));
}

class LockspaceLossTest : public LeaseRequestTest {
protected:
    /* Waits until host 1 reports `state` for the domain. */
    bool WaitState(const std::string &state)
    {
        return SpinUntil([&] { return cluster_->LockspaceState(host(1)) == state; });
    }
};

/* The lockspace vanishes under an idle sdmd (an administrator removes it; sanlock does
 * the same after failed renewals): sdmd notices, says so, refuses operations, and a stop
 * then exits at once. */
TEST_F(LockspaceLossTest, VanishedLockspaceStopsOperations)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1, "domain_lease_linger_ms=0\n"));
    ASSERT_TRUE(cluster_->FormatAndAttach());
    JobOutcome before = Create(host(1), "before");
    ASSERT_EQ(before.state, "done") << before.error_message;

    std::string removed = tmp_.Sub("rem_lockspace.out");
    pid_t rem = Spawn({"sanlock", "client", "rem_lockspace", "-s",
                       lockspace() + ":1:" + cluster_->ids_path() + ":0"},
                      removed, {host(1).sanlock().env()});
    ASSERT_EQ(WaitExit(rem), 0) << ReadFile(removed);
    ASSERT_TRUE(WaitState("lost")) << host(1).Diagnostics();

    JobOutcome after = Create(host(1), "after");
    EXPECT_EQ(after.state, "failed");
    EXPECT_EQ(after.error_code, "io-error") << after.error_message;
    EXPECT_NE(after.error_message.find("lost lockspace " + lockspace()), std::string::npos)
        << after.error_message;
    EXPECT_NE(after.error_message.find("sdm attach"), std::string::npos)
        << after.error_message;
    /* sdmd logs the loss from a once-a-second timer: GetDomain may show it first. */
    std::string log;
    EXPECT_TRUE(SpinUntil([&] {
        log = host(1).daemon().Log();
        return log.find("error: domain " + uuid() + ": this host lost lockspace") !=
               std::string::npos;
    })) << log;

    EXPECT_EQ(host(1).daemon().Stop(), kExitFenced) << host(1).daemon().Log();
}

/* The storage under the lockspace fails (its ids area cut short, so renewals fail) while
 * sdmd lingers on the domain lease: sdmd reports the lockspace failing, and when sanlock
 * ends it with SIGTERM it exits at once, leaving the domain lease on storage as it was
 * instead of releasing it. */
TEST_F(LockspaceLossTest, FencedHolderExitsWithoutTouchingStorage)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1, kLongLinger));
    ASSERT_TRUE(cluster_->FormatAndAttach());
    JobOutcome made = Create(host(1), "made");
    ASSERT_EQ(made.state, "done") << made.error_message;

    ASSERT_EQ(truncate(cluster_->ids_path().c_str(), 0), 0);
    ASSERT_TRUE(WaitState("failing")) << host(1).Diagnostics();
    ASSERT_TRUE(SpinUntil([&] {
        return host(1).daemon().Log().find("stopping at once") != std::string::npos;
    })) << "sanlock did not end sdmd, or sdmd did not take it for fencing\n"
        << host(1).Diagnostics();
    EXPECT_EQ(host(1).daemon().Stop(), kExitFenced) << host(1).daemon().Log();
    std::string log = host(1).daemon().Log();
    EXPECT_NE(log.find("error: domain " + uuid() + ": this host's lease in lockspace"),
              std::string::npos)
        << log;
    EXPECT_EQ(log.find("stopping: "), std::string::npos)
        << "sdmd went through a normal stop\n" << log;

    /* Released, the domain lease would carry timestamp 0; held by a host that was
     * stopped, it keeps host 1 as its owner. */
    CommandResult leader = sdm::testing::Run(
        {"sanlock", "direct", "read_leader", "-r",
         lockspace() + ":SDM:" + cluster_->root() + "/" + layout::kLeases + ":0"});
    ASSERT_EQ(leader.exit_code, 0) << leader.out;
    EXPECT_NE(leader.out.find("owner_id 1\n"), std::string::npos) << leader.out;
    EXPECT_EQ(leader.out.find("timestamp 0\n"), std::string::npos) << leader.out;
}

}  // namespace
}  // namespace sdm::testing
