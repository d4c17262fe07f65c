/* Crash at every named step. For each operation and each of its steps, sdm-local runs the
 * operation with SDM_CRASH_AT=<step> and SIGKILLs itself there; then one garbage
 * collection sweep runs, and storage must show: no transaction left, a consistent domain,
 * every other volume intact (guest-visible checksums), and the interrupted operation
 * either complete or without a trace - never a half-made volume that looks valid. The
 * collector itself is also killed mid-sweep and must finish on the next one; a format
 * and an upgrade killed at each of their steps are finished by running them again. */
#include <sys/stat.h>

#include "backend/engine/crashpoint.h"
#include "backend/engine/qemu_img.h"
#include "tests/support/domain_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

struct Scenario {
    std::string label;
    std::string op;                 /* the step group: create, clone, delete, resize */
    std::vector<std::string> args;  /* sdm-local arguments after the domain path */
    std::string target;             /* the volume the operation makes, deletes or resizes */
};

const std::vector<Scenario> &Scenarios()
{
    static const std::vector<Scenario> scenarios = {
        {"create_raw", "create", {"create", "new", "16M"}, "new"},
        /* sdm-local is a new owner: its first create claims a chunk of lease slots. */
        {"create_first_of_owner", "chunk", {"create", "new", "16M"}, "new"},
        {"create_raw_full", "create", {"create", "new", "8M", "--prealloc", "full"}, "new"},
        {"create_qcow2", "create", {"create", "new", "16M", "--format", "qcow2"}, "new"},
        {"create_layer", "create", {"create", "new", "0", "--format", "qcow2", "--backing", "top-q"},
         "new"},
        {"clone_raw", "clone", {"clone", "base-raw", "new"}, "new"},
        {"clone_chain_to_qcow2", "clone", {"clone", "top-q", "new"}, "new"},
        {"delete_image", "delete", {"delete", "base-raw"}, "base-raw"},
        {"delete_layer", "delete", {"delete", "top-q"}, "top-q"},
        {"resize_raw", "resize", {"resize", "base-raw", "32M"}, "base-raw"},
        {"resize_qcow2", "resize", {"resize", "top-q", "32M"}, "top-q"},
    };
    return scenarios;
}

struct Case {
    const Scenario *scenario;
    std::string step;
};

std::vector<Case> AllCases()
{
    std::vector<Case> cases;
    for (const auto &s : Scenarios())
        for (const auto &step : StepsOf(s.op))
            cases.push_back({&s, step});
    return cases;
}

/* Guest-visible SHA-256 of the first `length` bytes. */
std::string GuestPrefixSha256(const VolumeInfo &v, uint64_t length)
{
    TempDir tmp;
    std::string raw = tmp.Sub("flat.raw");
    CommandResult r = Run({"qemu-img", "convert", "-U", "-O", "raw", v.path, raw});
    if (r.exit_code != 0)
        return "qemu-img failed: " + r.out;
    if (truncate(raw.c_str(), static_cast<off_t>(length)) != 0)
        return "truncate failed";
    return FileSha256(raw);
}

uint64_t DataSize(const VolumeInfo &v)
{
    if (v.format == VolumeFormat::kQcow2) {
        auto info = qemu::Info(v.path);
        return info.ok() ? info->virtual_size : 0;
    }
    struct stat st;
    return stat(v.path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

class CrashTest : public DomainTest, public ::testing::WithParamInterface<Case> {
protected:
    void SetUp() override
    {
        DomainTest::SetUp();
        MakeVolume("base-raw", 16 * kMiB, VolumeFormat::kRaw, 2 * kMiB, 11);
        MakeVolume("base-q", 16 * kMiB, VolumeFormat::kQcow2, kMiB, 12);
        auto top = domain_->CreateVolume({"top-q", 0, VolumeFormat::kQcow2,
                                          Preallocation::kSparse, "base-q"});
        ASSERT_TRUE(top.ok()) << top.status().ToString();
        auto list = domain_->ListVolumes();
        ASSERT_TRUE(list.ok());
        for (const auto &v : *list) {
            before_[v.name] = v;
            sums_[v.name] = GuestSha256(v);
        }
    }

    CommandResult RunTool(const std::vector<std::string> &args, const std::string &crash_at)
    {
        std::vector<std::string> argv = {SdmLocalPath(), args[0], root_};
        argv.insert(argv.end(), args.begin() + 1, args.end());
        return sdm::testing::Run(argv, {"SDM_CRASH_AT=" + crash_at});
    }

    void Sweep()
    {
        auto report = domain_->CollectGarbage();
        ASSERT_TRUE(report.ok()) << report.status().ToString();
        EXPECT_EQ(report->errors, 0u) << ::testing::PrintToString(report->lines);
    }

    /* Every volume but the target is as it was. */
    void ExpectBystandersIntact(const std::string &target)
    {
        for (const auto &[name, sum] : sums_) {
            if (name == target)
                continue;
            auto v = domain_->LookupVolume(name);
            ASSERT_TRUE(v.ok()) << name << ": " << v.status().ToString();
            EXPECT_EQ(GuestSha256(*v), sum) << name;
            EXPECT_EQ(v->capacity, before_[name].capacity) << name;
        }
    }

    void ExpectOutcome(const Scenario &s)
    {
        auto now = domain_->LookupVolume(s.target);
        if (s.op == "create" || s.op == "clone" || s.op == "chunk") {
            if (!now.ok()) {
                EXPECT_EQ(now.status().code(), ErrorCode::kNotFound) << now.status().ToString();
                return;
            }
            EXPECT_EQ(now->legality, Legality::kLegal);
            EXPECT_EQ(DataSize(*now), now->capacity);
            if (s.op == "clone") {
                EXPECT_EQ(GuestSha256(*now), sums_[s.args[1]]) << "a committed clone is whole";
            }
        } else if (s.op == "delete") {
            if (!now.ok()) {
                EXPECT_EQ(now.status().code(), ErrorCode::kNotFound);
                return;
            }
            EXPECT_EQ(GuestSha256(*now), sums_[s.target]) << "an undone delete lost nothing";
        } else {
            ASSERT_TRUE(now.ok()) << now.status().ToString();
            uint64_t old_capacity = before_[s.target].capacity;
            EXPECT_TRUE(now->capacity == old_capacity || now->capacity == 32 * kMiB);
            EXPECT_EQ(DataSize(*now), now->capacity) << "data and metadata agree";
            EXPECT_EQ(GuestPrefixSha256(*now, old_capacity), sums_[s.target]);
        }
    }

    std::map<std::string, VolumeInfo> before_;
    std::map<std::string, std::string> sums_;
};

TEST_P(CrashTest, SurvivesKillAtStep)
{
    const Case &c = GetParam();
    CommandResult r = RunTool(c.scenario->args, c.step);
    bool killed = r.signal == SIGKILL;
    EXPECT_TRUE(killed || r.exit_code == 0) << "exit " << r.exit_code << ": " << r.out;
    /* A fresh handle: the crashed process's view is gone, as after a reboot. */
    domain_ = OpenAgain();
    Sweep();
    ExpectClean();
    ExpectBystandersIntact(c.scenario->target);
    ExpectOutcome(*c.scenario);
}

INSTANTIATE_TEST_SUITE_P(Steps, CrashTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<Case> &info) {
                             std::string name = info.param.scenario->label + "__" + info.param.step;
                             for (char &ch : name)
                                 if (!isalnum(static_cast<unsigned char>(ch)))
                                     ch = '_';
                             return name;
                         });

class GcCrashTest : public CrashTest {};

TEST_F(GcCrashTest, CollectorKilledMidSweepFinishesNextTime)
{
    for (const char *step : {"gc.claim", "gc.collect", "gc.remove-marker"}) {
        CommandResult r = RunTool({"clone", "base-raw", std::string("half-") + step}, "clone.copied");
        ASSERT_EQ(r.signal, SIGKILL) << "exit " << r.exit_code << ": " << r.out;
        r = RunTool({"gc"}, step);
        EXPECT_EQ(r.signal, SIGKILL) << "the collector reached " << step << ": " << r.out;
    }
    domain_ = OpenAgain();
    Sweep();
    ExpectClean();
    ExpectBystandersIntact("");
    EXPECT_EQ(domain_->LookupVolume("half-gc.collect").status().code(), ErrorCode::kNotFound);
}

TEST_F(GcCrashTest, EveryStepIsCovered)
{
    std::set<std::string> covered;
    for (const auto &c : AllCases())
        covered.insert(c.step);
    for (const char *op : {"gc", "format", "upgrade"}) {
        for (const auto &step : StepsOf(op))
            covered.insert(step); /* the tests below */
    }
    /* sdm-local has no upload or wipe: tests/libvirt/stack_crash_test.cc crashes the
     * upload's steps through virsh, tests/integration/daemon_test.cc the wipe's through
     * sdmd. */
    for (const char *op : {"upload", "wipe"}) {
        for (const auto &step : StepsOf(op))
            covered.insert(step);
    }
    for (const auto &step : AllSteps())
        EXPECT_TRUE(covered.count(step)) << step << " has no crash test";
}

class FormatCrashTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FormatCrashTest, FormattingAgainFinishesTheDomain)
{
    TempDir tmp;
    std::string root = tmp.Sub("domain");
    ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
    CommandResult r = sdm::testing::Run({SdmLocalPath(), "format", root}, {"SDM_CRASH_AT=" + GetParam()});
    ASSERT_EQ(r.signal, SIGKILL) << r.out;
    bool committed = Exists(root + "/domain.meta");
    r = sdm::testing::Run({SdmLocalPath(), "format", root});
    if (committed) {
        EXPECT_EQ(r.exit_code, 1);
        EXPECT_NE(r.out.find("already a storage domain"), std::string::npos) << r.out;
    } else {
        EXPECT_EQ(r.exit_code, 0) << r.out;
    }
    r = sdm::testing::Run({SdmLocalPath(), "gc", root});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    r = sdm::testing::Run({SdmLocalPath(), "check", root});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_FALSE(Exists(root + "/.format")) << "the claim goes with the first sweep";
    r = sdm::testing::Run({SdmLocalPath(), "create", root, "works", "1M"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Steps, FormatCrashTest, ::testing::ValuesIn(StepsOf("format")),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             std::string name = info.param;
                             for (char &ch : name)
                                 if (!isalnum(static_cast<unsigned char>(ch)))
                                     ch = '_';
                             return name;
                         });

class UpgradeCrashTest : public DomainTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(UpgradeCrashTest, UpgradingAgainFinishesTheUpgrade)
{
    MakeVolume("raw", 8 * kMiB, VolumeFormat::kRaw, kMiB, 5);
    MakeVolume("late", kMiB);
    auto volumes = domain_->ListVolumes();
    ASSERT_TRUE(volumes.ok());
    std::map<std::string, std::string> sums;
    for (const auto &v : *volumes)
        sums[v.name] = GuestSha256(v);
    domain_.reset();
    MakeFormat1(root_, "late", "never");
    CommandResult r = sdm::testing::Run({SdmLocalPath(), "upgrade", root_}, {"SDM_CRASH_AT=" + GetParam()});
    ASSERT_EQ(r.signal, SIGKILL) << r.out;
    r = sdm::testing::Run({SdmLocalPath(), "upgrade", root_});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    domain_ = OpenAgain();
    ASSERT_TRUE(domain_);
    ExpectClean();
    for (const auto &[name, sum] : sums) {
        auto v = domain_->LookupVolume(name);
        ASSERT_TRUE(v.ok()) << name << ": " << v.status().ToString();
        EXPECT_EQ(GuestSha256(*v), sum) << name;
    }
    EXPECT_EQ(domain_->LookupVolume("never").status().code(), ErrorCode::kNotFound);
}

INSTANTIATE_TEST_SUITE_P(Steps, UpgradeCrashTest, ::testing::ValuesIn(StepsOf("upgrade")),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                             std::string name = info.param;
                             for (char &ch : name)
                                 if (!isalnum(static_cast<unsigned char>(ch)))
                                     ch = '_';
                             return name;
                         });

}  // namespace
}  // namespace sdm::testing
