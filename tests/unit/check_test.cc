/* The consistency check: a healthy domain passes, and each kind of damage another host
 * or a person could leave is reported, naming the object. */
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/layout.h"
#include "backend/engine/metadata.h"
#include "tests/support/domain_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

class CheckTest : public DomainTest {
protected:
    /* Runs the check and asserts exactly one problem containing `needle`. */
    void ExpectProblem(const std::string &needle)
    {
        auto report = domain_->Check();
        ASSERT_TRUE(report.ok()) << report.status().ToString();
        ASSERT_EQ(report->problems.size(), 1u) << ::testing::PrintToString(report->problems);
        EXPECT_NE(report->problems[0].find(needle), std::string::npos) << report->problems[0];
    }
};

TEST_F(CheckTest, HealthyDomainPasses)
{
    MakeVolume("a", kMiB);
    MakeVolume("b", kMiB, VolumeFormat::kQcow2);
    ASSERT_TRUE(domain_->CreateVolume({"c", 0, VolumeFormat::kQcow2, Preallocation::kSparse, "b"}).ok());
    auto report = domain_->Check();
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok()) << ::testing::PrintToString(report->problems);
    EXPECT_EQ(report->images, 2u);
    EXPECT_EQ(report->volumes, 3u);
}

TEST_F(CheckTest, StrayFileInImage)
{
    VolumeInfo v = MakeVolume("a", kMiB);
    WriteFile(root_ + "/images/" + v.image + "/leftover", "x");
    ExpectProblem("leftover: stray file");
}

TEST_F(CheckTest, MissingDataFile)
{
    VolumeInfo v = MakeVolume("a", kMiB);
    ASSERT_EQ(unlink(v.path.c_str()), 0);
    ExpectProblem("data file missing");
}

TEST_F(CheckTest, DataFileReplacedBySymlink)
{
    VolumeInfo v = MakeVolume("a", kMiB);
    ASSERT_EQ(unlink(v.path.c_str()), 0);
    ASSERT_EQ(symlink("/etc/passwd", v.path.c_str()), 0);
    ExpectProblem("not a regular file");
}

TEST_F(CheckTest, TruncatedMetadata)
{
    VolumeInfo v = MakeVolume("a", kMiB);
    std::string meta = root_ + "/images/" + v.image + "/" + v.uuid + ".meta";
    std::string text = ReadFile(meta);
    WriteFile(meta, text.substr(0, text.size() - 10));
    auto report = domain_->Check();
    ASSERT_TRUE(report.ok());
    EXPECT_FALSE(report->ok());
    bool named = false;
    for (const auto &p : report->problems)
        named |= p.find(v.uuid + ".meta") != std::string::npos;
    EXPECT_TRUE(named) << ::testing::PrintToString(report->problems);
    EXPECT_EQ(domain_->LookupVolume("a").status().code(), ErrorCode::kNotFound);
}

TEST_F(CheckTest, DanglingIndexEntry)
{
    ASSERT_EQ(symlink(layout::IndexTarget(layout::NewUuid(), layout::NewUuid()).c_str(),
                      (root_ + "/images/@ghost").c_str()), 0);
    ExpectProblem("images/@ghost");
}

TEST_F(CheckTest, CommittedIllegalVolumeWithoutTransaction)
{
    VolumeInfo v = MakeVolume("a", kMiB);
    std::string path = root_ + "/images/" + v.image + "/" + v.uuid + ".meta";
    auto m = meta::DecodeVolume(ReadFile(path), path);
    ASSERT_TRUE(m.ok());
    m->legality = Legality::kIllegal;
    WriteFile(path, meta::Encode(*m));
    ExpectProblem("ILLEGAL");
}

TEST_F(CheckTest, UnexpectedRootEntryAndNonUuidImage)
{
    WriteFile(root_ + "/notes.txt", "x");
    ExpectProblem("notes.txt");
    ASSERT_EQ(unlink((root_ + "/notes.txt").c_str()), 0);
    ASSERT_EQ(mkdir((root_ + "/images/not-a-uuid").c_str(), 0755), 0);
    ExpectProblem("not-a-uuid");
    ASSERT_EQ(rmdir((root_ + "/images/not-a-uuid").c_str()), 0);
    VolumeInfo v = MakeVolume("a", kMiB);
    ASSERT_EQ(unlink((root_ + "/images/@a").c_str()), 0);
    ExpectProblem("is missing or wrong");
    ASSERT_EQ(symlink(layout::IndexTarget(v.image, v.uuid).c_str(),
                      (root_ + "/images/@a").c_str()), 0);
    ASSERT_EQ(symlink(layout::IndexTarget(v.image, v.uuid).c_str(),
                      (root_ + "/images/7").c_str()), 0);
    ExpectProblem("format 1 slot index entry");
}

}  // namespace
}  // namespace sdm::testing
