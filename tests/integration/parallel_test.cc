/* Hosts in parallel (issue 13): real sanlock daemons and real sdmd processes, one of each
 * per simulated host (tests/support/sim_cluster.h), sharing one domain.
 *
 *   - a clone held in its copy blocks no other host's create, delete, resize, snapshot or
 *     clone of other images (only what conflicts for real: the clone's source and name);
 *   - a host that dies in the middle of a clone blocks only what it held: others create,
 *     delete and list at once, its garbage waits for its host id to be freed;
 *   - two hosts racing for one new name: exactly one wins, nothing leaks;
 *   - an sdmd that restarts on a living host sweeps its previous incarnation's garbage
 *     at once, and finishes the lease chunk it was writing; a dead host's garbage waits
 *     until its host id is released.
 *
 * Timings here are never asserted (tests/bench.sh measures); a "meanwhile" is checked by
 * order: the other host's work ends while the clone is still provably held. Needs root
 * (the sanlock daemons); skipped otherwise. Single-threaded but for the racing creates. */
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/sim_cluster.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class ParallelTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
        stall_ = tmp_.Sub("stall");
    }

    /* `count` hosts, host 1 holding its first clone at clone.copy until Release(). */
    void Start(int count, const std::string &stall_at = "clone.copy")
    {
        cluster_ = std::make_unique<SimCluster>(count);
        ASSERT_TRUE(cluster_->StartSdmds(
            {"", {}, {"SDM_STALL_AT=" + stall_at, "SDM_STALL_FILE=" + stall_}}));
        ASSERT_TRUE(cluster_->FormatAndAttach());
    }

    SimHost &host(int id) { return cluster_->host(static_cast<uint32_t>(id)); }
    const std::string &uuid() const { return cluster_->uuid(); }

    GVariant *CreateArgs(const std::string &name, uint64_t capacity,
                         const std::string &format = "raw", const std::string &backing = "")
    {
        GVariantBuilder options;
        g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&options, "{sv}", "format", g_variant_new_string(format.c_str()));
        if (!backing.empty())
            g_variant_builder_add(&options, "{sv}", "backing",
                                  g_variant_new_string(backing.c_str()));
        return g_variant_new("(sst@a{sv})", uuid().c_str(), name.c_str(), capacity,
                             g_variant_builder_end(&options));
    }
    GVariant *NameArgs(const std::string &name)
    {
        return g_variant_new("(ss)", uuid().c_str(), name.c_str());
    }
    GVariant *CloneArgs(const std::string &source, const std::string &name)
    {
        return g_variant_new("(sss@a{sv})", uuid().c_str(), source.c_str(), name.c_str(),
                             NoOptions());
    }
    JobOutcome Run(SimHost &h, const char *method, GVariant *args)
    {
        return h.Wait(h.Submit(method, args));
    }

    /* Host 1's clone of `source` into `name`, held at the stalled step. */
    JobOutcome StallClone(const std::string &source, const std::string &name)
    {
        JobOutcome clone = host(1).Submit("CloneVolume", CloneArgs(source, name));
        EXPECT_TRUE(clone.submitted);
        EXPECT_TRUE(SpinUntil([&] { return Exists(stall_); })) << host(1).Diagnostics();
        return clone;
    }
    void Release() { unlink(stall_.c_str()); }
    bool Stalled() { return Exists(stall_); }

    void ExpectConsistent(SimHost &h)
    {
        EXPECT_EQ(cluster_->CheckProblems(h), std::vector<std::string>{}) << h.Diagnostics();
    }

    TempDir tmp_;
    std::string stall_;
    std::unique_ptr<SimCluster> cluster_;
};

TEST_F(ParallelTest, ACloneInItsCopyBlocksNoOtherImage)
{
    ASSERT_NO_FATAL_FAILURE(Start(2));
    ASSERT_EQ(host(2).Job("CreateVolume", CreateArgs("source", 64 * kMiB)).state, "done");
    ASSERT_EQ(host(2).Job("CreateVolume", CreateArgs("old", 8 * kMiB)).state, "done");
    ASSERT_EQ(host(2).Job("CreateVolume", CreateArgs("base", 8 * kMiB, "qcow2")).state, "done");
    JobOutcome clone = StallClone("source", "copy");

    /* Host 2 changes other images while host 1 copies. */
    struct Op {
        const char *what;
        const char *method;
        GVariant *args;
    } ops[] = {
        {"create", "CreateVolume", CreateArgs("fresh", 8 * kMiB)},
        {"resize", "ResizeVolume",
         g_variant_new("(sst)", uuid().c_str(), "fresh", static_cast<guint64>(16 * kMiB))},
        {"snapshot", "CreateVolume", CreateArgs("snap", 0, "qcow2", "base")},
        {"delete", "DeleteVolume", NameArgs("old")},
        {"clone of the same source", "CloneVolume", CloneArgs("source", "copy2")},
    };
    for (const Op &op : ops) {
        JobOutcome done = Run(host(2), op.method, op.args);
        EXPECT_EQ(done.state, "done") << op.what << ": " << done.error_code << " "
                                      << done.error_message;
    }
    /* Genuine conflicts are refused at once: the name host 1 is making, and a change of
     * the source host 1 reads. */
    JobOutcome same_name = Run(host(2), "CreateVolume", CreateArgs("copy", 8 * kMiB));
    EXPECT_EQ(same_name.error_code, "already-exists") << same_name.error_message;
    JobOutcome source_gone = Run(host(2), "DeleteVolume", NameArgs("source"));
    EXPECT_EQ(source_gone.error_code, "busy") << source_gone.error_message;
    EXPECT_NE(source_gone.error_message.find("host 1"), std::string::npos)
        << source_gone.error_message;
    ASSERT_TRUE(Stalled()) << "the clone was released before host 2 finished";
    EXPECT_EQ(host(1).Step(clone.id), "clone.copy");

    Release();
    JobOutcome cloned = host(1).Wait(clone);
    EXPECT_EQ(cloned.state, "done") << cloned.error_message;
    EXPECT_EQ(cluster_->VolumeNames(host(1)),
              (std::vector<std::string>{"base", "copy", "copy2", "fresh", "snap", "source"}));
    ExpectConsistent(host(1));
    SweepReport swept = cluster_->Sweep(host(2));
    EXPECT_TRUE(swept.ok) << swept.error;
    EXPECT_EQ(swept.collected, 0u);
}

TEST_F(ParallelTest, AHostThatDiesMidCloneBlocksOnlyWhatItHeld)
{
    ASSERT_NO_FATAL_FAILURE(Start(2));
    ASSERT_EQ(host(2).Job("CreateVolume", CreateArgs("source", 16 * kMiB)).state, "done");
    ASSERT_EQ(host(2).Job("CreateVolume", CreateArgs("other", 8 * kMiB)).state, "done");
    StallClone("source", "copy");
    host(1).Die(); /* sdmd and its sanlock daemon: its leases stay on storage */
    Release();

    /* Host 2 goes on at once with everything host 1 did not hold. */
    EXPECT_EQ(Run(host(2), "CreateVolume", CreateArgs("after", 8 * kMiB)).state, "done");
    EXPECT_EQ(Run(host(2), "DeleteVolume", NameArgs("other")).state, "done");
    EXPECT_EQ(Run(host(2), "CloneVolume", CloneArgs("after", "after-copy")).state, "done");
    EXPECT_EQ(cluster_->VolumeNames(host(2)),
              (std::vector<std::string>{"after", "after-copy", "source"}));
    /* What it held waits: its transaction's name, and its garbage (sanlock itself lets a
     * dead host's shared hold of the source go: the source is no longer read). */
    JobOutcome named = Run(host(2), "CreateVolume", CreateArgs("copy", 8 * kMiB));
    EXPECT_EQ(named.error_code, "already-exists") << named.error_message;
    SweepReport kept = cluster_->Sweep(host(2));
    EXPECT_EQ(kept.collected, 0u) << "collected while host 1's owner lease stands";
    EXPECT_GE(kept.live, 1u);

    /* An administrator frees host 1's id: its garbage goes, and with it the name. */
    ASSERT_EQ(ReleaseHostId(cluster_->lockspace(), 1, cluster_->ids_path()), "");
    SweepReport swept = cluster_->Sweep(host(2));
    EXPECT_EQ(swept.collected, 1u) << host(2).Diagnostics();
    EXPECT_EQ(Run(host(2), "CreateVolume", CreateArgs("copy", 8 * kMiB)).state, "done");
    ExpectConsistent(host(2));
}

TEST_F(ParallelTest, TwoHostsRacingForANameOneWinsAndNothingLeaks)
{
    ASSERT_NO_FATAL_FAILURE(Start(2, "none"));
    constexpr int kRounds = 20;
    int won[3] = {0, 0, 0};
    for (int round = 0; round < kRounds; round++) {
        std::string name = "race-" + std::to_string(round);
        JobOutcome one = host(1).Submit("CreateVolume", CreateArgs(name, 4 * kMiB));
        JobOutcome two = host(2).Submit("CreateVolume", CreateArgs(name, 4 * kMiB));
        one = host(1).Wait(one);
        two = host(2).Wait(two);
        ASSERT_NE(one.state == "done", two.state == "done")
            << name << ": host 1 " << one.state << " " << one.error_message << "; host 2 "
            << two.state << " " << two.error_message;
        const JobOutcome &lost = one.state == "done" ? two : one;
        EXPECT_EQ(lost.error_code, "already-exists") << lost.error_message;
        won[one.state == "done" ? 1 : 2]++;
    }
    printf("name races won: host 1 %d, host 2 %d\n", won[1], won[2]);
    std::map<std::string, ListedVolume> volumes;
    std::string error;
    ASSERT_TRUE(cluster_->List(host(1), &volumes, &error)) << error;
    EXPECT_EQ(volumes.size(), static_cast<size_t>(kRounds));
    EXPECT_EQ(SimCluster::SharedSlots(volumes), std::vector<std::string>{});
    ExpectConsistent(host(2));
    SweepReport swept = cluster_->Sweep(host(1));
    EXPECT_EQ(swept.collected, 0u) << "a loser left garbage";
    for (int round = 0; round < kRounds; round++)
        EXPECT_EQ(Run(host(round % 2 + 1), "DeleteVolume",
                      NameArgs("race-" + std::to_string(round))).state,
                  "done");
    EXPECT_EQ(Run(host(1), "CreateVolume", CreateArgs("race-0", 4 * kMiB)).state, "done");
}

TEST_F(ParallelTest, ARestartedSdmdSweepsItsPredecessorsGarbageAtOnce)
{
    ASSERT_NO_FATAL_FAILURE(Start(2, "create.durable"));
    JobOutcome create = host(1).Submit("CreateVolume", CreateArgs("half", 8 * kMiB));
    ASSERT_TRUE(create.submitted);
    ASSERT_TRUE(SpinUntil([&] { return Exists(stall_); })) << host(1).Diagnostics();
    const std::string tx = cluster_->root() + "/tx";
    ASSERT_EQ(ListNames(tx).size(), 1u);
    /* sdmd dies; its host lives: sanlock releases what that process held. */
    ASSERT_TRUE(cluster_->Kill(1, false));
    ASSERT_TRUE(cluster_->Revive(1, false));
    Release();
    /* The sweep the new sdmd starts at attach takes the dead transaction, unasked. */
    EXPECT_TRUE(SpinUntil([&] { return ListNames(tx).empty(); }, std::chrono::seconds(60)))
        << host(1).Diagnostics();
    SweepReport swept = cluster_->Sweep(host(1));
    EXPECT_TRUE(swept.ok) << swept.error;
    EXPECT_EQ(swept.collected, 0u) << host(1).Diagnostics();
    EXPECT_EQ(Run(host(2), "CreateVolume", CreateArgs("half", 8 * kMiB)).state, "done");
    ExpectConsistent(host(1));
}

TEST_F(ParallelTest, ADeadHostsCreateWaitsForItsHostIdThenIsSwept)
{
    ASSERT_NO_FATAL_FAILURE(Start(2, "create.durable"));
    JobOutcome create = host(1).Submit("CreateVolume", CreateArgs("half", 8 * kMiB));
    ASSERT_TRUE(create.submitted);
    ASSERT_TRUE(SpinUntil([&] { return Exists(stall_); })) << host(1).Diagnostics();
    host(1).Die();
    Release();
    SweepReport kept = cluster_->Sweep(host(2));
    EXPECT_EQ(kept.collected, 0u) << "collected while host 1's owner lease stands";
    JobOutcome named = Run(host(2), "CreateVolume", CreateArgs("half", 8 * kMiB));
    EXPECT_EQ(named.error_code, "already-exists") << named.error_message;
    ASSERT_EQ(ReleaseHostId(cluster_->lockspace(), 1, cluster_->ids_path()), "");
    SweepReport swept = cluster_->Sweep(host(2));
    EXPECT_EQ(swept.collected, 1u) << host(2).Diagnostics();
    EXPECT_EQ(Run(host(2), "CreateVolume", CreateArgs("half", 8 * kMiB)).state, "done");
    ExpectConsistent(host(2));
}

TEST_F(ParallelTest, AChunkWhoseLeasesWereNotWrittenIsFinishedByTheNextSdmd)
{
    /* Host 1's sdmd claims its first chunk as soon as it attaches, and dies between the
     * claim and the chunk's leases. */
    cluster_ = std::make_unique<SimCluster>(2);
    ASSERT_TRUE(cluster_->StartSdmds({"", {}, {"SDM_CRASH_AT=chunk.leases"}}));
    (void)cluster_->FormatAndAttach(2); /* host 1 may die before it reports joined */
    ASSERT_TRUE(SpinUntil([&] { return !host(1).Answers(); })) << host(1).Diagnostics();
    int claimed = -1; /* host 1's chunk */
    for (const auto &entry : ListNames(cluster_->root() + "/chunks")) {
        char target[16];
        ssize_t n = readlink((cluster_->root() + "/chunks/" + entry).c_str(), target,
                             sizeof(target));
        if (n > 0 && std::string(target, n) == "1")
            claimed = std::stoi(entry);
    }
    ASSERT_GE(claimed, 0) << "host 1 claimed no chunk";
    ASSERT_TRUE(cluster_->Kill(1, false));
    ASSERT_TRUE(cluster_->Revive(1, false));
    JobOutcome made = host(1).Job("CreateVolume", CreateArgs("v", 8 * kMiB));
    ASSERT_EQ(made.state, "done");
    EXPECT_EQ((made.slot - 1) / 64, static_cast<uint64_t>(claimed))
        << "a slot of the chunk host 1 claimed";
    /* A delete takes the volume's lease: it exists on storage. */
    JobOutcome deleted = Run(host(2), "DeleteVolume", NameArgs("v"));
    EXPECT_EQ(deleted.state, "done") << deleted.error_code << " " << deleted.error_message;
}

}  // namespace
}  // namespace sdm::testing
