/* python-libvirt against our pool and, side by side, a stock dir pool: each case runs
 * python_test.py (create, clone with a thread polling info() during the copy, lookups by key
 * and path, a refused clone onto an existing name, delete) with Debian's /usr/bin/python3,
 * which python3-libvirt is installed for, and then checks what the script reports against
 * storage and, for our pool, against sdmd. One gtest case per pool, so .ci/run counts them. */
#include <cstdlib>

#include "tests/libvirt/python_test_fixture.h"

namespace sdm::testing {
namespace {

constexpr const char *kPython = "/usr/bin/python3";

/* The value of "key": "value" in the script's one-line JSON summary ("" if absent). The
 * values are paths, keys, digests and messages without quotes or backslashes. */
std::string JsonString(const std::string &json, const std::string &key)
{
    std::string needle = "\"" + key + "\": \"";
    size_t start = json.find(needle);
    if (start == std::string::npos)
        return "";
    start += needle.size();
    return json.substr(start, json.find('"', start) - start);
}

class PythonLibvirtTest : public ClientPoolsTest,
                          public ::testing::WithParamInterface<const char *> {
protected:
    /* sdmd holds the first clone at its copy step until the script's poller has read the
     * clone's info() there and removes the file (tests/libvirt/python_test.py). */
    void SetUp() override
    {
        sdmd_env_ = {"SDM_STALL_AT=clone.copy", "SDM_STALL_FILE=" + StallFile()};
        ClientPoolsTest::SetUp();
    }
    std::string StallFile() const { return tmp_.Sub("clone-held"); }

    /* Runs the script against pool `pool`: its JSON summary, or a test failure. */
    std::string RunScript(const std::string &pool)
    {
        const char *script = getenv("SDM_PYTHON_TEST");
        EXPECT_NE(script, nullptr) << "$SDM_PYTHON_TEST is not set; run with `meson test`";
        if (!script)
            return "";
        std::vector<std::string> argv = {kPython, script, libvirt_->uri(), pool};
        if (pool == "sd")
            argv.push_back(StallFile());
        CommandResult r = testing::Run(argv);
        EXPECT_EQ(r.exit_code, 0) << r.out;
        size_t last = r.out.rfind("\n{");
        return r.out.substr(last == std::string::npos ? 0 : last + 1);
    }
};

TEST_P(PythonLibvirtTest, CreateCloneWhilePollingLookupDelete)
{
    const std::string pool = GetParam();
    std::string summary = RunScript(pool);
    ASSERT_FALSE(HasFailure());

    std::string source = JsonString(summary, "source_path");
    std::string clone = JsonString(summary, "clone_path");
    EXPECT_EQ(FileSha256(source), JsonString(summary, "source_sha256"))
        << "the data the script wrote is on storage";
    EXPECT_FALSE(Exists(clone)) << "the deleted clone's file is gone: " << clone;
    EXPECT_NE(JsonString(summary, "refusal").find("already in use"), std::string::npos)
        << summary;
    const std::string root = pool == "sd" ? domain_ : stock_;
    EXPECT_EQ(source.rfind(root + "/", 0), 0u) << source << " lies in the pool";

    if (pool == "sd") {
        EXPECT_EQ(SdmdVolumeNames(), (std::set<std::string>{"py-src"}))
            << "sdmd committed the create and the delete, and rolled the refused clone back";
        EXPECT_EQ(SdmdVolumePath("py-src"), source);
        ASSERT_NO_FATAL_FAILURE(ExpectDomainConsistent());
    } else {
        EXPECT_EQ(clone, stock_ + "/py-clone") << "the stock pool keeps stock paths";
    }
}

INSTANTIATE_TEST_SUITE_P(Pools, PythonLibvirtTest, ::testing::Values("sd", "stock"),
                         [](const auto &info) { return std::string(info.param); });

}  // namespace
}  // namespace sdm::testing
