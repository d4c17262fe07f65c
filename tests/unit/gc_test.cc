/* The garbage collector: it collects abandoned transactions only (a live owner's owner
 * lease stops it), settles each the way storage shows, removes the marker last, leaves what
 * it does not understand alone, and is safe with several collectors at once. */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>

#include "backend/engine/layout.h"
#include "backend/engine/local_lease.h"
#include "backend/engine/metadata.h"
#include "tests/support/domain_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
/* An owner slot no attachment of these tests takes (each takes the first free one). */
constexpr uint32_t kDeadOwner = 7;

class GcTest : public DomainTest {
protected:
    /* Plants tx/<txid>-<slot>-<owner>-<incarnation>/ with a marker (its text, or `text`
     * instead) and some garbage, as a dead owner leaves it. `slot` defaults to the
     * marker's. */
    std::string PlantTransaction(const meta::Marker &m, std::optional<std::string> text = {},
                                 std::optional<uint64_t> slot = {},
                                 layout::Owner owner = {kDeadOwner, "00000000deadbeef"})
    {
        std::string dir = root_ + "/tx/" +
                          layout::TxDirName({m.txid, slot.value_or(m.slot), owner});
        EXPECT_EQ(mkdir(dir.c_str(), 0755), 0);
        WriteFile(dir + "/marker", text.value_or(meta::Encode(m)));
        EXPECT_EQ(mkdir((dir + "/garbage").c_str(), 0755), 0);
        WriteFile(dir + "/garbage/data", std::string(4096, 'x'));
        return dir;
    }

    /* The name claim an abandoned create of `m` made before it died. */
    void PlantClaim(const meta::Marker &m)
    {
        ASSERT_EQ(symlink(layout::IndexTarget(m.image, m.volume).c_str(),
                          (root_ + "/images/" + layout::NameEntry(m.name)).c_str()),
                  0);
    }

    meta::Marker CreateMarker(uint64_t slot, const std::string &name)
    {
        meta::Marker m;
        m.txid = layout::NewUuid();
        m.op = meta::TxOp::kClone; /* a marker file, unlike a new image's create */
        m.host_id = 1;
        m.slot = slot;
        m.image = m.txid;
        m.volume = layout::NewUuid();
        m.name = name;
        m.new_image = true;
        return m;
    }
};

TEST_F(GcTest, CleanDomainHasNothingToDo)
{
    MakeVolume("a", kMiB);
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->markers_seen, 0u);
    EXPECT_EQ(report->collected, 0u);
}

TEST_F(GcTest, CollectsAbandonedCreateAndFreesItsName)
{
    std::string dir = PlantTransaction(CreateMarker(5, "half"));
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->collected, 1u);
    EXPECT_EQ(report->rolled_forward, 0u);
    EXPECT_FALSE(Exists(dir));
    ExpectClean();
}

TEST_F(GcTest, ClaimsOfAnAbandonedTransactionHoldUntilCollected)
{
    meta::Marker m = CreateMarker(5, "half");
    PlantTransaction(m);
    PlantClaim(m);
    auto r = domain_->CreateVolume({"half", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, ""});
    EXPECT_EQ(r.status().code(), ErrorCode::kAlreadyExists) << "its name is still claimed";
    EXPECT_NE(r.status().message().find("unfinished operation"), std::string::npos)
        << r.status().ToString();
    auto other = domain_->CreateVolume({"other", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, ""});
    ASSERT_TRUE(other.ok());
    EXPECT_NE(other->slot, 5u) << "its slot is still in use";
    ASSERT_TRUE(domain_->CollectGarbage().ok());
    EXPECT_FALSE(Exists(root_ + "/images/@half")) << "the collector released the claim";
    EXPECT_TRUE(domain_->CreateVolume({"half", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, ""}).ok());
    ExpectClean();
}

TEST_F(GcTest, OrphanedClaimIsRemovedByTheNextCreateOfItsName)
{
    /* A power cut before a create's first barrier may keep its claim and lose its
     * transaction directory: nothing names the claim, and it must not hold the name. */
    meta::Marker m = CreateMarker(5, "orphan");
    PlantClaim(m);
    auto report = domain_->Check();
    ASSERT_TRUE(report.ok());
    ASSERT_EQ(report->problems.size(), 1u);
    EXPECT_NE(report->problems[0].find("power cut"), std::string::npos) << report->problems[0];
    auto made = domain_->CreateVolume({"orphan", kMiB, VolumeFormat::kRaw,
                                       Preallocation::kSparse, ""});
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    EXPECT_EQ(domain_->LookupVolume("orphan")->uuid, made->uuid);
    ExpectClean();
}

TEST_F(GcTest, CommittedCreateWithoutMarkerIsCompletedFromItsImage)
{
    /* A create of a new image writes no marker file: killed after its commit and before
     * its index, it leaves tx/<image>-<slot>/ and an unindexed image. */
    VolumeInfo v = MakeVolume("committed", kMiB);
    ASSERT_EQ(unlink((root_ + "/committed").c_str()), 0); /* the root link, made after */
    std::string dir = root_ + "/tx/" +
                      layout::TxDirName({v.image, v.slot, {kDeadOwner, "00000000deadbeef"}});
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    EXPECT_EQ(domain_->CreateVolume({"committed", kMiB, VolumeFormat::kRaw,
                                     Preallocation::kSparse, ""}).status().code(),
              ErrorCode::kAlreadyExists) << "its name is claimed";
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->rolled_forward, 1u) << ::testing::PrintToString(report->lines);
    EXPECT_FALSE(Exists(dir));
    auto found = domain_->LookupVolume("committed");
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_EQ(found->uuid, v.uuid);
    EXPECT_TRUE(Exists(root_ + "/committed")) << "the root link made again";
    ExpectClean();
}

TEST_F(GcTest, UncommittedCreateWithoutMarkerIsRolledBackFromItsContents)
{
    /* Killed after its claim and before its commit: the image inside the transaction
     * names the claim the collector must release. */
    meta::VolumeMeta v;
    v.uuid = layout::NewUuid();
    v.image = layout::NewUuid();
    v.name = "uncommitted";
    v.capacity = kMiB;
    v.slot = 9;
    std::string dir = root_ + "/tx/" +
                      layout::TxDirName({v.image, v.slot, {kDeadOwner, "00000000deadbeef"}});
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    ASSERT_EQ(mkdir((dir + "/" + v.image).c_str(), 0755), 0);
    WriteFile(dir + "/" + v.image + "/" + v.uuid + ".meta", meta::Encode(v));
    WriteFile(dir + "/" + v.image + "/" + v.uuid, "");
    ASSERT_EQ(symlink(layout::IndexTarget(v.image, v.uuid).c_str(),
                      (root_ + "/images/@uncommitted").c_str()), 0);
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->collected, 1u) << ::testing::PrintToString(report->lines);
    EXPECT_EQ(report->rolled_forward, 0u);
    EXPECT_FALSE(Exists(dir));
    EXPECT_FALSE(Exists(root_ + "/images/@uncommitted"));
    ExpectClean();
}

TEST_F(GcTest, LiveOwnerIsLeftAloneUntilItsOwnerLeaseIsFree)
{
    std::string dir = PlantTransaction(CreateMarker(9, "live"));
    {
        LocalLeaseManager owner(root_, kMiB);
        auto lease = owner.Acquire(LeaseArea::kOwners, kDeadOwner, LeaseMode::kExclusive,
                                   std::chrono::milliseconds(0));
        ASSERT_TRUE(lease.ok());
        auto report = domain_->CollectGarbage();
        ASSERT_TRUE(report.ok());
        EXPECT_EQ(report->skipped_live, 1u);
        EXPECT_EQ(report->collected, 0u);
        EXPECT_TRUE(Exists(dir + "/garbage/data"));
    }
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->collected, 1u);
    EXPECT_FALSE(Exists(dir));
}

TEST_F(GcTest, OwnerKilledHoldingTheLeaseIsCollectedAfterDeath)
{
    std::string dir = PlantTransaction(CreateMarker(3, "killed"));
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    pid_t child = fork();
    if (child == 0) {
        LocalLeaseManager owner(root_, kMiB);
        auto lease = owner.Acquire(LeaseArea::kOwners, kDeadOwner, LeaseMode::kExclusive,
                                   std::chrono::milliseconds(0));
        char c = lease.ok() ? 'y' : 'n';
        (void)!write(ready[1], &c, 1);
        pause();
        _exit(0);
    }
    char c = 0;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    ASSERT_EQ(c, 'y');
    EXPECT_EQ(domain_->CollectGarbage()->skipped_live, 1u);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    EXPECT_EQ(domain_->CollectGarbage()->collected, 1u);
    EXPECT_FALSE(Exists(dir));
    close(ready[0]);
    close(ready[1]);
}

TEST_F(GcTest, OwnIncarnationsBeforeThisOneAreCollectedAtOnce)
{
    /* This attachment holds its owner lease: a transaction of the same owner slot in
     * another incarnation was left by a process that is gone (an sdmd restart). */
    /* The fixture's attachment is the domain's first: it took the first owner slot. */
    std::string dir = PlantTransaction(CreateMarker(11, "previous"), {}, {},
                                       {layout::kFirstOwner, "0123456789abcdef"});
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->collected, 1u) << ::testing::PrintToString(report->lines);
    EXPECT_FALSE(Exists(dir));
}

TEST_F(GcTest, TornMarkerMeansNothingOutsideTheDirectory)
{
    meta::Marker m = CreateMarker(4, "torn");
    std::string text = meta::Encode(m);
    std::string dir = PlantTransaction(m, text.substr(0, text.size() / 3));
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->collected, 1u);
    EXPECT_FALSE(Exists(dir));
    ExpectClean();
}

TEST_F(GcTest, DryRunChangesNothing)
{
    std::string dir = PlantTransaction(CreateMarker(6, "dry"));
    GcOptions options;
    options.dry_run = true;
    auto report = domain_->CollectGarbage(options);
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->collected, 1u);
    EXPECT_TRUE(Exists(dir + "/marker"));
    EXPECT_NE(report->lines[0].find("would collect"), std::string::npos);
}

TEST_F(GcTest, LeavesAloneWhatItDoesNotUnderstand)
{
    VolumeInfo v = MakeVolume("precious", 2 * kMiB, VolumeFormat::kRaw, kMiB);
    std::string sum = FileSha256(v.path);
    ASSERT_EQ(mkdir((root_ + "/tx/not-a-transaction").c_str(), 0755), 0);
    /* A marker whose slot disagrees with its directory, naming a real volume. */
    meta::Marker hostile = CreateMarker(v.slot, "precious");
    hostile.op = meta::TxOp::kDelete;
    hostile.txid = layout::NewUuid();
    hostile.image = v.image;
    hostile.volume = v.uuid;
    std::string dir = PlantTransaction(hostile, {}, v.slot + 100);
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->collected, 0u);
    EXPECT_EQ(report->errors, 1u);
    EXPECT_TRUE(Exists(root_ + "/tx/not-a-transaction"));
    EXPECT_TRUE(Exists(dir + "/marker"));
    EXPECT_EQ(FileSha256(v.path), sum);
    EXPECT_TRUE(domain_->LookupVolume("precious").ok());
}

TEST_F(GcTest, HostileCreateMarkerCannotIndexAForeignVolume)
{
    VolumeInfo v = MakeVolume("real", kMiB);
    meta::Marker m = CreateMarker(v.slot, "alias");
    m.txid = v.image;
    m.image = v.image;  /* "committed": the image exists, but the volume is not the marker's */
    std::string dir = PlantTransaction(m);
    auto report = domain_->CollectGarbage();
    ASSERT_TRUE(report.ok());
    EXPECT_EQ(report->errors, 1u);
    EXPECT_FALSE(Exists(root_ + "/images/@alias"));
    EXPECT_TRUE(domain_->LookupVolume("real").ok());
}

TEST_F(GcTest, SeveralCollectorsAtOnceCollectEachTransactionOnce)
{
    std::vector<std::string> dirs;
    for (uint64_t slot = 10; slot < 60; slot++)
        dirs.push_back(PlantTransaction(CreateMarker(slot, "v" + std::to_string(slot))));
    std::vector<pid_t> children;
    for (int i = 0; i < 4; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            auto domain = Domain::Open(root_);
            auto report = domain.ok() ? (*domain)->CollectGarbage() : Result<GcReport>(domain.status());
            _exit(report.ok() && report->errors == 0 ? 0 : 1);
        }
        children.push_back(pid);
    }
    for (pid_t pid : children) {
        int status = 0;
        waitpid(pid, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    for (const auto &dir : dirs)
        EXPECT_FALSE(Exists(dir));
    ExpectClean();
}

}  // namespace
}  // namespace sdm::testing
