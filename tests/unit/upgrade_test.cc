/* The upgrade of a format 1 domain in place: what format 1 left on storage (a slot index,
 * transactions named after their volume lease, no chunks or owner leases) becomes format
 * 2 with every volume intact, every pending transaction settled, and the domain usable;
 * the upgrade is refused while the domain is in use, and a second run changes nothing. A
 * format 1 domain is not opened for use. Interrupted upgrades: tests/crash. */
#include <sys/stat.h>
#include <unistd.h>

#include <map>

#include "backend/engine/layout.h"
#include "backend/engine/local_lease.h"
#include "tests/support/domain_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class UpgradeTest : public DomainTest {
protected:
    void SetUp() override
    {
        DomainTest::SetUp();
        MakeVolume("raw", 4 * kMiB, VolumeFormat::kRaw, kMiB, 3);
        MakeVolume("base", 4 * kMiB, VolumeFormat::kQcow2, kMiB, 4);
        auto layer = domain_->CreateVolume({"layer", 0, VolumeFormat::kQcow2,
                                            Preallocation::kSparse, "base"});
        ASSERT_TRUE(layer.ok()) << layer.status().ToString();
        MakeVolume("late", kMiB);
        auto volumes = domain_->ListVolumes();
        ASSERT_TRUE(volumes.ok());
        for (const auto &v : *volumes)
            sums_[v.name] = GuestSha256(v);
        domain_.reset();
        MakeFormat1(root_, "late", "never");
    }

    std::map<std::string, std::string> sums_;
};

TEST_F(UpgradeTest, Format1IsNotOpenedForUseAndTheErrorNamesTheUpgrade)
{
    auto opened = Domain::Open(root_);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.status().code(), ErrorCode::kUnsupported);
    EXPECT_NE(opened.status().message().find("sdm upgrade " + root_), std::string::npos)
        << opened.status().ToString();
}

TEST_F(UpgradeTest, UpgradesInPlaceKeepingEveryVolumeAndSettlingWhatWasPending)
{
    auto report = Domain::Upgrade(root_);
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    EXPECT_EQ(report->from_version, 1u);
    EXPECT_EQ(report->to_version, 2u);
    EXPECT_EQ(report->adopted, 2u);
    EXPECT_EQ(report->slot_links_removed, 3u);
    EXPECT_EQ(report->gc.collected, 2u) << ::testing::PrintToString(report->gc.lines);
    EXPECT_EQ(report->gc.rolled_forward, 1u);
    EXPECT_EQ(report->gc.errors, 0u);

    domain_ = OpenAgain();
    ASSERT_TRUE(domain_);
    EXPECT_EQ(domain_->info().version, 2u);
    for (const auto &[name, sum] : sums_) {
        auto v = domain_->LookupVolume(name);
        ASSERT_TRUE(v.ok()) << name << ": " << v.status().ToString();
        EXPECT_EQ(GuestSha256(*v), sum) << name;
    }
    EXPECT_EQ(domain_->LookupVolume("never").status().code(), ErrorCode::kNotFound);
    ExpectClean();
    for (const auto &entry : Entries("images"))
        EXPECT_NE(layout::ClassifyImagesEntry(entry), layout::EntryKind::kLegacySlot) << entry;
    /* A new volume never takes a slot a format 1 volume holds. */
    auto fresh = domain_->CreateVolume({"fresh", kMiB, VolumeFormat::kRaw,
                                        Preallocation::kSparse, ""});
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    auto volumes = domain_->ListVolumes();
    ASSERT_TRUE(volumes.ok());
    for (const auto &v : *volumes)
        EXPECT_TRUE(v.name == "fresh" || v.slot != fresh->slot) << v.name;
    ExpectClean();
}

TEST_F(UpgradeTest, ASecondUpgradeChangesNothing)
{
    ASSERT_TRUE(Domain::Upgrade(root_).ok());
    std::string meta = ReadFile(root_ + "/domain.meta");
    auto again = Domain::Upgrade(root_);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again->from_version, 2u);
    EXPECT_EQ(again->adopted, 0u);
    EXPECT_EQ(again->gc.collected, 0u);
    EXPECT_EQ(ReadFile(root_ + "/domain.meta"), meta);
}

TEST_F(UpgradeTest, RefusedWhileTheDomainLeaseIsHeld)
{
    /* A format 1 host in the middle of an operation holds the domain lease. */
    LocalLeaseManager format1_host(root_, kMiB);
    auto held = format1_host.Acquire(LeaseArea::kLeases, layout::kDomainLeaseSlot,
                                     LeaseMode::kExclusive, std::chrono::milliseconds(0));
    ASSERT_TRUE(held.ok());
    DomainOptions impatient;
    impatient.lock_timeout = std::chrono::milliseconds(100);
    auto refused = Domain::Upgrade(root_, impatient);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), ErrorCode::kBusy);
    EXPECT_NE(refused.status().message().find("on every host"), std::string::npos)
        << refused.status().ToString();
    EXPECT_EQ(ReadFile(root_ + "/domain.meta").find("version=2"), std::string::npos);
}

}  // namespace
}  // namespace sdm::testing
