/* A lost lockspace, with real sanlock daemons and real sdmd processes (one of each per
 * simulated host, tests/support/sim_cluster.h). An attached sdmd always holds leases in
 * the domain's lockspace (the domain lease shared, its owner lease), so when the lockspace
 * goes - an administrator removes it, or this host's renewals fail for 8 x io_timeout -
 * sanlock ends sdmd: sdmd reports the lockspace failing or lost until then, refuses new
 * operations, and exits at once, without cleaning up, when sanlock ends it. Its leases stay
 * on storage as they were. Needs root (the sanlock daemons do); skipped otherwise.
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
/* sdmd's exit status after sanlock fenced it (backend/daemon/main.cc). */
constexpr int kExitFenced = 3;

class LockspaceTest : public ::testing::Test {
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

class LockspaceLossTest : public LockspaceTest {
protected:
    /* Waits until host 1 reports `state` for the domain. */
    bool WaitState(const std::string &state)
    {
        return SpinUntil([&] { return cluster_->LockspaceState(host(1)) == state; });
    }
};

/* The storage under the lockspace fails (its ids area cut short, so renewals fail): sdmd
 * reports the lockspace failing and refuses operations, and when sanlock ends it with
 * SIGTERM it exits at once, leaving its owner lease on storage as it was instead of
 * releasing it. */
TEST_F(LockspaceLossTest, FencedHolderExitsWithoutTouchingStorage)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1, ""));
    ASSERT_TRUE(cluster_->FormatAndAttach());
    JobOutcome made = Create(host(1), "made");
    ASSERT_EQ(made.state, "done") << made.error_message;

    ASSERT_EQ(truncate(cluster_->ids_path().c_str(), 0), 0);
    ASSERT_TRUE(WaitState("failing")) << host(1).Diagnostics();
    JobOutcome refused = Create(host(1), "refused");
    EXPECT_EQ(refused.error_code, "io-error") << refused.error_message;
    EXPECT_NE(refused.error_message.find("has not been renewed"), std::string::npos)
        << refused.error_message;
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

    /* Released, the owner lease would carry timestamp 0; held by a host that was
     * stopped, it keeps host 1 as its owner. */
    CommandResult leader = sdm::testing::Run(
        {"sanlock", "direct", "read_leader", "-r",
         lockspace() + ":o1:" + cluster_->root() + "/" + layout::kOwners + ":" +
             std::to_string(cluster_->alignment())});
    ASSERT_EQ(leader.exit_code, 0) << leader.out;
    EXPECT_NE(leader.out.find("owner_id 1\n"), std::string::npos) << leader.out;
    EXPECT_EQ(leader.out.find("timestamp 0\n"), std::string::npos) << leader.out;
}

}  // namespace
}  // namespace sdm::testing
