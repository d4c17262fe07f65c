/* The sdm CLI as a script sees it, against a real sdmd: each command's output and exit
 * status (0 ok, 1 failed, 2 usage, 3 sdmd not reachable), help for the tool and every
 * command, and `jobs --watch` in its plain (not a terminal) form. */
#include <sys/stat.h>
#include <unistd.h>

#include "sdm/domain.h"
#include "tests/support/daemon_harness.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

const char *const kCommands[] = {
    "status", "format", "attach", "detach", "domains", "create", "clone", "delete", "resize",
    "list", "show", "jobs", "cancel", "gc", "check", "hosts", "lease-xml",
};

bool Has(const std::string &text, const std::string &part)
{
    return text.find(part) != std::string::npos;
}

class CliTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        root_ = tmp_.Sub("domain");
        ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
        auto info = Domain::Format(root_, {});
        ASSERT_TRUE(info.ok()) << info.status().ToString();
        uuid_ = info->uuid;
    }

    void TearDown() override
    {
        if (daemon_.running()) {
            EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
        }
    }

    void StartDaemon(const std::vector<std::string> &env = {})
    {
        ASSERT_TRUE(daemon_.Start("domains=" + root_, env));
    }

    CommandResult Sdm(std::vector<std::string> args)
    {
        args.insert(args.begin(), {SdmPath(), "--socket", daemon_.socket()});
        return sdm::testing::Run(args);
    }

    TempDir tmp_;
    std::string root_;
    std::string uuid_;
    DaemonHarness daemon_{tmp_.path()};
};

TEST_F(CliTest, CommandsOutputAndExitCodes)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    CommandResult r = Sdm({"status"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "host id:  1")) << r.out;
    EXPECT_TRUE(Has(r.out, "domains:  1")) << r.out;

    r = Sdm({"domains"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, uuid_ + " 1 ")) << r.out;

    r = Sdm({"create", root_, "disk1", "16M"});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "name:       disk1")) << r.out;
    EXPECT_TRUE(Has(r.out, "capacity:   16777216 (16.0 MiB)")) << r.out;

    r = Sdm({"clone", uuid_, "disk1", "disk2", "--format", "qcow2"});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "clone disk2: 100% (16.0 MiB of 16.0 MiB)")) << r.out;
    EXPECT_TRUE(Has(r.out, "format:     qcow2")) << r.out;

    r = Sdm({"resize", root_, "disk1", "32M"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "capacity:   33554432 (32.0 MiB)")) << r.out;

    r = Sdm({"list", root_ + "/"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "NAME")) << r.out;
    EXPECT_TRUE(Has(r.out, "disk1 ") && Has(r.out, "disk2 ")) << r.out;

    r = Sdm({"show", root_, "disk2"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "legality:   LEGAL")) << r.out;

    r = Sdm({"delete", root_, "disk2"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "deleted volume disk2")) << r.out;

    r = Sdm({"check", root_});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "check: 1 images, 1 volumes, 0 pending transactions, 0 problems"))
        << r.out;

    r = Sdm({"gc", root_, "--dry-run"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "gc: 0 transactions seen, 0 collected")) << r.out;

    r = Sdm({"hosts", root_});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "HOST ID") && Has(r.out, "LIVE")) << r.out;

    r = Sdm({"jobs"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "ID ") && Has(r.out, "clone   done")) << r.out;

    r = Sdm({"lease-xml", root_, "disk1"});
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_TRUE(Has(r.out, "sdm: unsupported: ")) << r.out;

    r = Sdm({"detach", root_});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    r = Sdm({"list", uuid_});
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_TRUE(Has(r.out, "sdm: not-found: no attached domain")) << r.out;
    r = Sdm({"attach", root_});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "attached storage domain " + uuid_)) << r.out;
}

TEST_F(CliTest, FormatThenAttach)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    std::string other = tmp_.Sub("other");
    ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
    CommandResult r = Sdm({"format", other, "--io-timeout", "3"});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_TRUE(Has(r.out, "formatted storage domain ")) << r.out;
    r = Sdm({"format", other});
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_TRUE(Has(r.out, "sdm: already-exists: ")) << r.out;
    r = Sdm({"attach", other});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    r = Sdm({"domains"});
    EXPECT_TRUE(Has(r.out, other)) << r.out;
}

TEST_F(CliTest, OperationErrorsExitOne)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    struct Case {
        std::vector<std::string> args;
        std::string says;
    } cases[] = {
        {{"create", root_, "a/b", "1M"}, "sdm: invalid-argument: invalid volume name 'a/b'"},
        {{"create", root_, "zero", "0"}, "sdm: invalid-argument: capacity must be greater"},
        {{"show", root_, "absent"}, "sdm: not-found: "},
        {{"delete", root_, "absent"}, "sdm: not-found: "},
        {{"list", tmp_.Sub("not-attached")}, "sdm: not-found: no attached domain"},
        {{"cancel", "job-999"}, "sdm: not-found: no job"},
        {{"attach", tmp_.Sub("nowhere")}, "sdm: not-found: "},
    };
    for (const auto &c : cases) {
        CommandResult r = Sdm(c.args);
        EXPECT_EQ(r.exit_code, 1) << ::testing::PrintToString(c.args) << r.out;
        EXPECT_TRUE(Has(r.out, c.says)) << ::testing::PrintToString(c.args) << ": " << r.out;
    }
}

TEST_F(CliTest, HelpForTheToolAndEveryCommand)
{
    CommandResult r = sdm::testing::Run({SdmPath(), "--help"});
    EXPECT_EQ(r.exit_code, 0) << r.out;
    for (const char *command : kCommands) {
        EXPECT_TRUE(Has(r.out, std::string("  ") + command + " ")) << command << r.out;
        CommandResult help = sdm::testing::Run({SdmPath(), command, "--help"});
        EXPECT_EQ(help.exit_code, 0) << command << help.out;
        EXPECT_TRUE(Has(help.out, std::string("Usage: sdm [--socket PATH] ") + command))
            << help.out;
        CommandResult via_help = sdm::testing::Run({SdmPath(), "help", command});
        EXPECT_EQ(via_help.out, help.out);
    }
    EXPECT_TRUE(Has(r.out, "3 sdmd not reachable")) << r.out;
}

/* Usage errors are found before sdmd is contacted: exit 2, and no sdmd runs here. */
TEST_F(CliTest, UsageErrorsExitTwo)
{
    struct Case {
        std::vector<std::string> args;
        std::string says;
    } cases[] = {
        {{}, "no command given"},
        {{"explode"}, "unknown command 'explode'"},
        {{"--colour", "status"}, "unknown option --colour"},
        {{"--socket"}, "--socket needs the path"},
        {{"create", root_, "x"}, "'create' takes 3 arguments, not 2"},
        {{"status", "extra"}, "'status' takes 0 arguments, not 1"},
        {{"create", root_, "x", "10Q"}, "invalid size '10Q'"},
        {{"resize", root_, "x", "-1"}, "invalid size '-1'"},
        {{"create", root_, "x", "1G", "--format", "vmdk"}, "unknown format 'vmdk'"},
        {{"create", root_, "x", "1G", "--prealloc", "falloc"}, "unknown preallocation"},
        {{"clone", root_, "a", "b", "--prealloc", "full"}, "unknown option --prealloc"},
        {{"create", root_, "x", "1G", "--format"}, "option --format needs a value"},
        {{"jobs", "--until-idle"}, "--until-idle goes with --watch"},
        {{"format", root_, "--sector-size", "lots"}, "--sector-size takes 512 or 4096"},
        {{"help", "explode"}, "unknown command 'explode'"},
    };
    for (const auto &c : cases) {
        std::vector<std::string> args = {SdmPath()};
        args.insert(args.end(), c.args.begin(), c.args.end());
        CommandResult r = sdm::testing::Run(args);
        EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(c.args) << r.out;
        EXPECT_TRUE(Has(r.out, "sdm: " + c.says)) << ::testing::PrintToString(c.args) << r.out;
        EXPECT_TRUE(Has(r.out, "Usage: sdm")) << r.out;
    }
}

TEST_F(CliTest, SdmdNotRunningExitsThreeNamingTheSocket)
{
    std::string socket = tmp_.Sub("absent.sock");
    for (const std::vector<std::string> &command :
         {std::vector<std::string>{"status"}, {"list", root_}, {"jobs", "--watch"}}) {
        std::vector<std::string> args = {SdmPath(), "--socket", socket};
        args.insert(args.end(), command.begin(), command.end());
        CommandResult r = sdm::testing::Run(args);
        EXPECT_EQ(r.exit_code, 3) << r.out;
        EXPECT_TRUE(Has(r.out, "sdm: cannot reach sdmd at " + socket + ": ")) << r.out;
        EXPECT_TRUE(Has(r.out, "is sdmd running?")) << r.out;
    }
}

/* `jobs --watch` into a pipe: plain lines, one per event, each with the job id. The clone
 * it follows waits in qemu-img until the watcher has printed its first listing, so the
 * watcher sees the whole rest of the job. */
TEST_F(CliTest, JobsWatchPrintsPlainLinesWhenNotATerminal)
{
    std::string gate = tmp_.Sub("go");
    std::string wrapper = tmp_.Sub("gated-qemu-img");
    WriteFile(wrapper, "#!/bin/sh\n"
                       "if [ \"$1\" = convert ]; then\n"
                       "  while [ ! -e " + gate + " ]; do sleep 0.05; done\n"
                       "fi\n"
                       "exec qemu-img \"$@\"\n");
    ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(StartDaemon({"SDM_QEMU_IMG=" + wrapper}));
    CommandResult r = Sdm({"create", root_, "src", "8M"});
    ASSERT_EQ(r.exit_code, 0) << r.out;

    std::string clone_out = tmp_.Sub("clone.out");
    pid_t clone = Spawn({SdmPath(), "--socket", daemon_.socket(), "clone", root_, "src", "dst",
                         "--format", "qcow2"},
                        clone_out);
    ASSERT_TRUE(SpinUntil([&] { return Has(Sdm({"jobs"}).out, "clone.copy"); }))
        << daemon_.Log();

    std::string watch_out = tmp_.Sub("watch.out");
    pid_t watch = Spawn({SdmPath(), "--socket", daemon_.socket(), "jobs", "--watch",
                         "--until-idle"},
                        watch_out);
    EXPECT_TRUE(SpinUntil([&] { return Has(ReadFile(watch_out), "clone 'dst': running"); }))
        << ReadFile(watch_out);
    WriteFile(gate, "");
    EXPECT_EQ(WaitExit(watch), 0) << ReadFile(watch_out);
    EXPECT_EQ(WaitExit(clone), 0) << ReadFile(clone_out);

    std::string lines = ReadFile(watch_out);
    EXPECT_TRUE(Has(lines, "clone 'dst': step clone.commit")) << lines;
    EXPECT_TRUE(Has(lines, "clone 'dst': 100% (8.0 MiB of 8.0 MiB)")) << lines;
    EXPECT_TRUE(Has(lines, "clone 'dst': done\n")) << lines;
    EXPECT_FALSE(Has(lines, "\033")) << "no terminal control codes in a pipe";
    g_auto(GStrv) split = g_strsplit(lines.c_str(), "\n", -1);
    for (char **line = split; *line; line++) {
        if (**line) {
            EXPECT_TRUE(g_str_has_prefix(*line, "job-")) << *line;
        }
    }
    EXPECT_TRUE(Has(ReadFile(clone_out), "format:     qcow2")) << ReadFile(clone_out);

    r = Sdm({"jobs", "--watch", "--until-idle"});
    EXPECT_EQ(r.exit_code, 0) << "nothing runs: it ends at once\n" << r.out;
}

}  // namespace
}  // namespace sdm::testing
