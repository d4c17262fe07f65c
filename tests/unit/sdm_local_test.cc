/* The sdm-local tool as a script sees it: output, exit codes (0 ok, 1 failed, 2 usage) and
 * the messages for bad input. */
#include <gtest/gtest.h>

#include "tests/support/test_support.h"

namespace sdm::testing {
namespace {

class SdmLocalTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        root_ = tmp_.Sub("domain");
        ASSERT_EQ(sdm::testing::Run({"mkdir", root_}).exit_code, 0);
        CommandResult r = Tool({"format", root_});
        ASSERT_EQ(r.exit_code, 0) << r.out;
    }

    CommandResult Tool(std::vector<std::string> args)
    {
        args.insert(args.begin(), SdmLocalPath());
        return sdm::testing::Run(args);
    }

    TempDir tmp_;
    std::string root_;
};

TEST_F(SdmLocalTest, CreateListShowCloneDelete)
{
    CommandResult r = Tool({"create", root_, "disk1", "16M"});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("name:       disk1"), std::string::npos) << r.out;
    r = Tool({"clone", root_, "disk1", "disk2"});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    r = Tool({"list", root_});
    ASSERT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("disk1"), std::string::npos);
    EXPECT_NE(r.out.find("disk2"), std::string::npos);
    r = Tool({"show", root_, "disk2"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("legality:   LEGAL"), std::string::npos) << r.out;
    r = Tool({"delete", root_, "disk2"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    r = Tool({"check", root_});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_NE(r.out.find("1 volumes, 0 pending transactions, 0 problems"), std::string::npos)
        << r.out;
}

TEST_F(SdmLocalTest, UsageErrorsExitTwo)
{
    struct Case {
        std::vector<std::string> args;
        std::string says;
    } cases[] = {
        {{}, "no command given"},
        {{"explode", root_}, "unknown command"},
        {{"create", root_, "x"}, "wrong number of arguments"},
        {{"create", root_, "x", "10Q"}, "invalid size"},
        {{"create", root_, "x", "99999999999999999999999"}, "invalid size"},
        {{"create", root_, "x", "1G", "--format", "vmdk"}, "unknown format 'vmdk'"},
        {{"create", root_, "x", "1G", "--prealloc", "falloc"}, "unknown preallocation"},
        {{"create", root_, "x", "1G", "--bogus", "1"}, "unknown option --bogus"},
        {{"create", root_, "x", "1G", "--format"}, "needs a value"},
        {{"--host-id", "0", "list", root_}, "--host-id takes a number from 1 to 2000"},
    };
    for (const auto &c : cases) {
        CommandResult r = Tool(c.args);
        EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(c.args) << r.out;
        EXPECT_NE(r.out.find(c.says), std::string::npos)
            << ::testing::PrintToString(c.args) << ": " << r.out;
        EXPECT_NE(r.out.find("Usage: sdm-local"), std::string::npos) << r.out;
    }
    CommandResult help = Tool({"--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_NE(help.out.find("Commands:"), std::string::npos);
}

TEST_F(SdmLocalTest, OperationErrorsExitOneWithCodeAndContext)
{
    CommandResult r = Tool({"create", root_, "a/b", "1M"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("sdm-local: invalid-argument: invalid volume name 'a/b'"),
              std::string::npos) << r.out;
    r = Tool({"delete", root_, "missing"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("not-found"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("volume missing"), std::string::npos) << "context names the volume";
    r = Tool({"create", root_, "zero", "0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("greater than 0"), std::string::npos) << r.out;
    r = Tool({"list", tmp_.Sub("nowhere")});
    EXPECT_EQ(r.exit_code, 1);
    r = Tool({"format", root_});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.out.find("already a storage domain"), std::string::npos) << r.out;
}

TEST_F(SdmLocalTest, StepsListEveryOperationsSteps)
{
    CommandResult r = Tool({"steps", "clone"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("clone.copy\n"), std::string::npos);
    EXPECT_EQ(r.out.find("create."), std::string::npos);
}

}  // namespace
}  // namespace sdm::testing
