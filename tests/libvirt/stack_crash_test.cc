/* Whole-stack crashes: virsh -> libvirtd (our loader and shim) -> sdmd -> storage, with a
 * process killed at a named step (backend/engine/crashpoint.h) while virsh waits.
 *
 * One sanlock daemon, one private libvirtd and one storage-domain pool serve the whole run;
 * sdmd (sanlock leases) starts again for every case. An sdmd case starts sdmd with
 * SDM_CRASH_AT=<step> and runs the operation with virsh: sdmd SIGKILLs itself there. A
 * libvirtd case starts sdmd with SDM_STALL_AT=<step>, SIGKILLs libvirtd while sdmd is held
 * at the step, lets sdmd go on and starts libvirtd again. Then, with a normal sdmd and one
 * sweep: virsh failed and said why (an sdmd kill names sdmd's socket); the consistency check
 * passes; every committed volume is as it was (its data file's SHA-256, so what its guest
 * reads too); the interrupted volume is complete and usable or absent (a create whose name
 * is free again), or - an upload only - ILLEGAL: in the pool but refused by vol-info,
 * reported by check and deleted with virsh; and `virsh vol-list` comes to show exactly
 * sdmd's volumes, without a refresh (the shim's pool watcher) and with one. A libvirtd kill leaves the operation
 * complete (sdmd's jobs outlive their caller), but for an upload whose end libvirtd never
 * confirmed.
 *
 * Suites: SdmdKill has every step of every operation, LibvirtdKill one step in the middle of
 * each operation, LibvirtdKillSlow the other steps (meson suite 'slow'). The run prints the
 * outcomes it saw. Needs root. Not thread-safe: one case at a time. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "backend/engine/crashpoint.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/libvirt_harness.h"
#include "tests/support/sanlock_harness.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kSize = 4 << 20;
constexpr char kPool[] = "sd";
/* How long a libvirtd case waits for sdmd to reach its step (a debug build under load). */
constexpr auto kReachLimit = std::chrono::seconds(90);
/* How long libvirt's volume list may lag behind sdmd's: the shim's watcher interval (2 s)
 * many times over. */
constexpr auto kConvergeLimit = std::chrono::seconds(20);
/* The shim's pool watcher interval (SDM_WATCH_INTERVAL_US), with a margin. */
constexpr auto kWatchInterval = std::chrono::milliseconds(2500);

enum class Victim { kSdmd, kLibvirtd };

/* An operation as virsh runs it; `steps` names its group of crash points. */
struct Operation {
    std::string label;
    std::string steps;
    std::string middle; /* the step a libvirtd kill takes in the default suite */
};

const std::vector<Operation> &Operations()
{
    static const std::vector<Operation> operations = {
        {"create", "create", "create.data"},
        {"snapshot", "create", "create.place-data"},
        {"clone", "clone", "clone.copy"},
        {"delete", "delete", "delete.commit"},
        {"resize", "resize", "resize.grow"},
        {"upload", "upload", "upload.partial"},
    };
    return operations;
}

struct Case {
    const Operation *operation;
    std::string step;
    Victim victim;
};

/* kSdmd: every step. kLibvirtd: the middle steps, or (`slow`) all the others. */
std::vector<Case> Cases(Victim victim, bool slow = false)
{
    std::vector<Case> cases;
    for (const auto &op : Operations()) {
        for (const auto &step : StepsOf(op.steps)) {
            if (victim == Victim::kLibvirtd && (step == op.middle) == slow)
                continue;
            cases.push_back({&op, step, victim});
        }
    }
    return cases;
}

std::string CaseName(const ::testing::TestParamInfo<Case> &info)
{
    std::string name = info.param.operation->label + "__" + info.param.step;
    for (char &ch : name)
        if (!isalnum(static_cast<unsigned char>(ch)))
            ch = '_';
    return name;
}

/* A volume as sdmd lists it. */
struct Listed {
    std::string legality, path, format;
    uint64_t capacity = 0;
};

/* A committed volume as it was last known good. */
struct Known {
    std::string guest_sha; /* what a VM reads */
    std::string file_sha;  /* its data file's bytes: unchanged means untouched */
    uint64_t capacity = 0;
};

/* SHA-256 of what a guest reads from the first `length` bytes of a volume (all if 0). */
std::string GuestSha256(const Listed &v, uint64_t length = 0)
{
    if (v.format == "raw" && length == 0)
        return FileSha256(v.path);
    TempDir tmp;
    std::string flat = tmp.Sub("flat.raw");
    CommandResult r = Run({"qemu-img", "convert", "-U", "-f", v.format, "-O", "raw", v.path, flat});
    if (r.exit_code != 0)
        return "qemu-img convert failed: " + r.out;
    if (length && truncate(flat.c_str(), static_cast<off_t>(length)) != 0)
        return "truncate failed";
    return FileSha256(flat);
}

const std::string &ZerosSha256()
{
    static const std::string sha = [] {
        TempDir tmp;
        WriteFile(tmp.Sub("zeros"), "");
        if (truncate(tmp.Sub("zeros").c_str(), kSize) != 0)
            return std::string("truncate failed");
        return FileSha256(tmp.Sub("zeros"));
    }();
    return sha;
}

std::string Trim(const std::string &text)
{
    size_t end = text.find_last_not_of(" \n");
    return end == std::string::npos ? "" : text.substr(0, end + 1);
}

/* What every case shares: the daemons, the pool, and the volumes known to be committed. */
struct Stack {
    TempDir tmp;
    std::string domain = tmp.Sub("domain");
    std::unique_ptr<SanlockDaemon> sanlock;
    std::unique_ptr<DaemonHarness> sdmd;
    std::unique_ptr<LibvirtHarness> libvirt;
    pid_t vm = -1;        /* the stand-in for a VM (StartStandInVm), and its shell */
    pid_t vm_shell = -1;
    bool ready = false;
    bool sdmd_armed = false;
    std::map<std::string, Known> committed;
    int serial = 0;
    /* "<victim> <operation>" -> outcome -> cases */
    std::map<std::string, std::map<std::string, int>> outcomes;
};

/* Made by the first suite that runs, kept for the others, ended with the run. */
std::unique_ptr<Stack> stack;

/* A stand-in for a VM running on the host: it holds a lease in the domain's lockspace (on
 * a lease file of its own, where a VM's <lease> could point). sdmd's clean stop leaves
 * the lockspace unless such a lease is held, so with it the next sdmd finds the lockspace
 * joined at once, as on a host with VMs, instead of joining again (2 x io_timeout + 1 s)
 * for every case. */
void StartStandInVm(Stack &s)
{
    const char *helper = std::getenv("SDM_SANLOCK_HOST_HELPER");
    ASSERT_NE(helper, nullptr) << "SDM_SANLOCK_HOST_HELPER is not set";
    g_autoptr(GError) error = nullptr;
    g_autoptr(GDBusConnection) connection = s.sdmd->Connect(&error);
    ASSERT_NE(connection, nullptr) << error->message;
    g_autoptr(GVariant) reply =
        Call(connection, "GetDomain", g_variant_new("(s)", s.domain.c_str()), &error);
    ASSERT_NE(reply, nullptr) << error->message;
    g_autoptr(GVariant) domain = g_variant_get_child_value(reply, 0);
    /* A lease of a file of its own with a name no sdmd of this test takes: the owner lease
     * of host id 2000 (at 2000 MiB, the file sparse). Volume lease names are the domain's,
     * whatever file holds them: one of those would be the volume's lease itself. */
    const std::string leases = s.tmp.Sub("vm-leases");
    WriteFile(leases, "");
    ASSERT_EQ(truncate(leases.c_str(), 2001LL << 20), 0);
    const std::string output = s.tmp.Sub("vm.out");
    const std::string pid_file = s.tmp.Sub("vm.pid");
    s.vm_shell = Spawn({"/bin/sh", "-c",
                        "{ echo join 120000; echo initowner 2000; echo acquire 2000 ex 0 owners; "
                        "sleep 100000; } | " + std::string(helper) + " " +
                            Str(domain, "lockspace") + " " + s.domain + "/ids " + leases + " " +
                            leases + " 1 5 & echo $! > " + pid_file + "; wait"},
                       output, {s.sanlock->env()});
    ASSERT_GT(s.vm_shell, 0);
    bool held = SpinUntil([&] {
        std::string text = ReadFile(output);
        return text.find("error") != std::string::npos ||
               std::count(text.begin(), text.end(), '\n') >= 3;
    }, std::chrono::seconds(150));
    std::string replies = ReadFile(output);
    ASSERT_TRUE(held && replies.find("error") == std::string::npos) << replies;
    s.vm = std::atoi(ReadFile(pid_file).c_str());
    ASSERT_GT(s.vm, 0);
}

/* The stand-in VM ends (SIGKILL, as a VM's process does): its lease goes with it. */
void StopStandInVm(Stack &s)
{
    if (s.vm > 0)
        kill(s.vm, SIGKILL);
    if (s.vm_shell > 0) {
        kill(s.vm_shell, SIGKILL);
        WaitExit(s.vm_shell);
    }
    s.vm = s.vm_shell = -1;
}

class StackCrashTest : public ::testing::TestWithParam<Case> {
public:
    static void SetUpTestSuite();

protected:
    void SetUp() override;
    void TearDown() override;

    /* Makes the volumes the case works on; returns its operation as virsh arguments. */
    std::vector<std::string> Prepare(const Operation &op);
    void RunKillingSdmd(const std::string &step);
    void RunKillingLibvirtd(const std::string &step);
    void Recover();
    void ExpectOutcome(const Operation &op);
    void ExpectCommittedIntact();
    void ExpectPoolConverges();
    void ExpectPoolShowsCommittedVolumes();

    std::string target_;                /* the volume made, deleted, resized or written */
    std::string source_;                /* a clone's or a snapshot's */
    std::vector<std::string> command_;  /* the operation, as virsh arguments */
    std::string payload_sha_;           /* an upload's data */
    bool reached_ = false;
    bool listed_while_down_ = false;    /* virsh listed the target while sdmd was down */
    std::string outcome_;
    std::string crashed_log_;           /* the log of the sdmd the case killed */
};

::testing::AssertionResult StartSdmd(const std::vector<std::string> &env = {})
{
    stack->sdmd_armed = !env.empty();
    return stack->sdmd->Start("lease_backend=sanlock\nhost_id=1\nsanlock_run_dir=" +
                                  stack->sanlock->run_dir() + "\ndomains=" + stack->domain,
                              env);
}

/* A stop that must be clean (exit 0: no leak, no sanitizer report), and a start. */
void RestartSdmd(const std::vector<std::string> &env = {})
{
    if (stack->sdmd->running()) {
        EXPECT_EQ(stack->sdmd->Stop(), 0) << stack->sdmd->Log();
    }
    ASSERT_TRUE(StartSdmd(env));
}

/* The first value of a call to sdmd (a new reference), or null and a test failure. */
GVariant *Manager(const char *method, GVariant *args)
{
    g_autoptr(GError) error = nullptr;
    g_autoptr(GDBusConnection) connection = stack->sdmd->Connect(&error);
    if (!connection) {
        ADD_FAILURE() << "cannot connect to sdmd: " << error->message;
        g_variant_unref(g_variant_ref_sink(args));
        return nullptr;
    }
    g_autoptr(GVariant) reply = Call(connection, method, args, &error);
    if (!reply) {
        ADD_FAILURE() << method << ": " << error->message;
        return nullptr;
    }
    return g_variant_get_child_value(reply, 0);
}

std::map<std::string, Listed> ListVolumes()
{
    std::map<std::string, Listed> volumes;
    g_autoptr(GVariant) list = Manager("ListVolumes", g_variant_new("(s)", stack->domain.c_str()));
    for (size_t i = 0; list && i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) v = g_variant_get_child_value(list, i);
        volumes[Str(v, "name")] = {Str(v, "legality"), Str(v, "path"), Str(v, "format"),
                                   U64(v, "capacity")};
    }
    return volumes;
}

/* One sweep of the collector: its error lines. */
std::vector<std::string> CollectGarbage()
{
    g_autoptr(GVariant) report = Manager(
        "CollectGarbage", g_variant_new("(sb)", stack->domain.c_str(), FALSE));
    if (!report)
        return {"no report"};
    if (U32(report, "errors") == 0)
        return {};
    g_autoptr(GVariant) lines = g_variant_lookup_value(report, "lines", G_VARIANT_TYPE("as"));
    std::vector<std::string> errors = {std::to_string(U32(report, "errors")) + " errors"};
    for (size_t i = 0; lines && i < g_variant_n_children(lines); i++) {
        g_autoptr(GVariant) line = g_variant_get_child_value(lines, i);
        errors.emplace_back(g_variant_get_string(line, nullptr));
    }
    return errors;
}

/* sdmd's consistency check: its problems, and one more if a transaction is pending. */
std::vector<std::string> CheckProblems()
{
    g_autoptr(GVariant) report =
        Manager("CheckDomain", g_variant_new("(s)", stack->domain.c_str()));
    if (!report)
        return {"no report"};
    std::vector<std::string> problems;
    g_autoptr(GVariant) list = g_variant_lookup_value(report, "problems", G_VARIANT_TYPE("as"));
    for (size_t i = 0; list && i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) problem = g_variant_get_child_value(list, i);
        problems.emplace_back(g_variant_get_string(problem, nullptr));
    }
    if (uint32_t pending = U32(report, "pending"); pending != 0)
        problems.push_back(std::to_string(pending) + " transactions pending");
    return problems;
}

CommandResult Sdm(const std::vector<std::string> &args)
{
    std::vector<std::string> argv = {SdmPath(), "--socket", stack->sdmd->socket()};
    argv.insert(argv.end(), args.begin(), args.end());
    return Run(argv);
}

std::set<std::string> PoolVolumes()
{
    std::set<std::string> names;
    std::string text = stack->libvirt->VirshOk({"vol-list", kPool});
    for (size_t start = 0; start < text.size();) {
        size_t end = std::min(text.find('\n', start), text.size());
        size_t name = text.find_first_not_of(' ', start);
        if (name < end)
            names.insert(text.substr(name, text.find(' ', name) - name));
        start = end + 1;
    }
    return names;
}

std::string VirshPath(const std::string &volume)
{
    return Trim(stack->libvirt->VirshOk({"vol-path", volume, "--pool", kPool}));
}

/* Records a volume as committed, with what it holds now. */
void Commit(const std::string &name)
{
    auto volumes = ListVolumes();
    auto it = volumes.find(name);
    ASSERT_NE(it, volumes.end()) << name;
    stack->committed[name] = {GuestSha256(it->second), FileSha256(it->second.path),
                              it->second.capacity};
}

void StackCrashTest::SetUpTestSuite()
{
    if (stack)
        return;
    stack = std::make_unique<Stack>();
    Stack &s = *stack;
    ASSERT_EQ(mkdir(s.tmp.Sub("sdmd").c_str(), 0700), 0);
    ASSERT_EQ(mkdir(s.tmp.Sub("libvirt").c_str(), 0700), 0);
    s.sanlock = std::make_unique<SanlockDaemon>("stack-crash");
    s.sdmd = std::make_unique<DaemonHarness>(s.tmp.Sub("sdmd"));
    ASSERT_TRUE(s.sdmd->Start("lease_backend=sanlock\nhost_id=1\nsanlock_run_dir=" +
                              s.sanlock->run_dir()));
    s.libvirt = std::make_unique<LibvirtHarness>(s.tmp.Sub("libvirt"));
    ASSERT_TRUE(s.libvirt->Start());
    /* io_timeout 5, not 1: the suite runs beside others, and sdmd refuses operations when
     * its host lease goes 3 x io_timeout + 2 s without a renewal (renewals every
     * 2 x io_timeout), so a renewal may be 7 s late rather than 3. The one join takes
     * about 2 x io_timeout longer for it. */
    WriteFile(s.tmp.Sub("pool.xml"),
              DomainPoolXml(kPool, s.domain, s.sdmd->socket(), " io_timeout='5'"));
    s.libvirt->VirshOk({"pool-define", s.tmp.Sub("pool.xml")});
    s.libvirt->VirshOk({"pool-build", kPool});
    s.libvirt->VirshOk({"pool-start", kPool});
    /* A kill, not a stop: the sdmd that joined the lockspace would leave it on a stop, and
     * the next one would wait seconds to join again. Later ones find it joined, and the
     * stand-in VM keeps it joined through their stops. */
    s.sdmd->Kill();
    ASSERT_TRUE(StartSdmd());
    ASSERT_NO_FATAL_FAILURE(StartStandInVm(s));

    /* The committed volumes every case must leave alone: raw and qcow2 with data, and a
     * snapshot layer on the qcow2 one (the snapshot cases put their layers there too). */
    s.libvirt->VirshOk({"vol-create-as", kPool, "keep-raw", "4M"});
    std::string raw = VirshPath("keep-raw");
    WritePattern(raw, 0, kSize / 4, 1);
    WritePattern(raw, kSize / 2, kSize / 4, 2);
    s.libvirt->VirshOk({"vol-create-as", kPool, "keep-q", "4M", "--format", "qcow2"});
    std::string flat = s.tmp.Sub("keep-q.raw"), image = s.tmp.Sub("keep-q.qcow2");
    WriteFile(flat, "");
    ASSERT_EQ(truncate(flat.c_str(), kSize), 0);
    WritePattern(flat, kSize / 4, kSize / 4, 3);
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", flat, image})
                  .exit_code,
              0);
    s.libvirt->VirshOk({"vol-upload", "--pool", kPool, "keep-q", image});
    s.libvirt->VirshOk({"vol-create-as", kPool, "keep-layer", "0", "--format", "qcow2",
                        "--backing-vol", "keep-q", "--backing-vol-format", "qcow2"});
    for (const char *name : {"keep-raw", "keep-q", "keep-layer"})
        ASSERT_NO_FATAL_FAILURE(Commit(name));
    ASSERT_EQ(s.committed["keep-q"].guest_sha, FileSha256(flat)) << "the upload wrote keep-q";
    ASSERT_EQ(s.committed["keep-layer"].guest_sha, s.committed["keep-q"].guest_sha);
    s.ready = true;
}

void StackCrashTest::SetUp()
{
    ASSERT_TRUE(stack && stack->ready) << "the shared set-up failed";
    if (stack->sdmd_armed || !stack->sdmd->running()) {
        ASSERT_NO_FATAL_FAILURE(RestartSdmd());
    }
    if (stack->libvirt->uri().empty()) {
        ASSERT_TRUE(stack->libvirt->Start());
    }
}

void StackCrashTest::TearDown()
{
    if (HasFailure()) {
        std::cerr << "--- libvirtd log ---\n" << stack->libvirt->Log()
                  << "--- log of the sdmd the case killed ---\n" << crashed_log_
                  << "--- sdmd log ---\n" << stack->sdmd->Log();
    }
}

std::vector<std::string> StackCrashTest::Prepare(const Operation &op)
{
    const std::string n = std::to_string(++stack->serial);
    target_ = op.label + "-" + n;
    if (op.label == "create")
        return {"vol-create-as", kPool, target_, "4M"};
    if (op.label == "snapshot") {
        source_ = "keep-q";
        return {"vol-create-as", kPool, target_, "0", "--format", "qcow2", "--backing-vol",
                source_, "--backing-vol-format", "qcow2"};
    }
    if (op.label == "clone") {
        source_ = "keep-raw";
        return {"vol-clone", source_, target_, "--pool", kPool};
    }
    /* delete, resize and upload work on a volume of their own, with data. */
    stack->libvirt->VirshOk({"vol-create-as", kPool, target_, "4M"});
    WritePattern(ListVolumes()[target_].path, kSize / 4, kSize / 2, 10 + stack->serial);
    Commit(target_);
    if (op.label == "delete")
        return {"vol-delete", target_, "--pool", kPool};
    if (op.label == "resize")
        return {"vol-resize", target_, "8M", "--pool", kPool};
    std::string payload = stack->tmp.Sub("payload");
    WriteFile(payload, "");
    EXPECT_EQ(truncate(payload.c_str(), kSize), 0);
    WritePattern(payload, 0, kSize, 100 + stack->serial);
    payload_sha_ = FileSha256(payload);
    if (GetParam().victim == Victim::kSdmd) {
        /* As for any volume older than a few seconds, the shim's pool watcher has seen the
         * domain with this volume: a refresh that fails now is not made good by it. */
        std::this_thread::sleep_for(kWatchInterval);
    }
    return {"vol-upload", "--pool", kPool, target_, payload};
}

size_t Occurrences(const std::string &text, const std::string &what)
{
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
        n++;
    return n;
}

void StackCrashTest::RunKillingSdmd(const std::string &step)
{
    Stack &s = *stack;
    const std::string refresh_failed = "pool '" + std::string(kPool) + "': listing volumes failed";
    const size_t refreshes_failed = Occurrences(s.libvirt->Log(), refresh_failed);
    ASSERT_NO_FATAL_FAILURE(RestartSdmd({"SDM_CRASH_AT=" + step}));
    CommandResult r = s.libvirt->Virsh(command_);
    crashed_log_ = s.sdmd->Log();
    int status = s.sdmd->Stop();
    reached_ = status == 128 + SIGKILL;
    if (!reached_) {
        /* A step this operation does not take: it ran to its end. */
        EXPECT_EQ(status, 0) << crashed_log_;
        EXPECT_EQ(r.exit_code, 0) << r.out;
        return;
    }
    EXPECT_NE(r.exit_code, 0) << "virsh did not notice sdmd's death: " << r.out;
    /* While sdmd is away, what libvirt lists may lag, but must not show a half-made volume:
     * checked against the outcome once sdmd is back. */
    listed_while_down_ = PoolVolumes().count(target_) > 0;
    /* libvirt refreshes the pool when an upload's stream closes, on a thread of its own. A
     * real sdmd is away for a while after a crash, and that refresh fails: wait for it
     * before sdmd comes back, so that the case sees what a user would. */
    auto deadline = std::chrono::steady_clock::now() + kConvergeLimit;
    while (GetParam().operation->label == "upload" &&
           Occurrences(s.libvirt->Log(), refresh_failed) == refreshes_failed &&
           std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_NE(r.out.find("sdmd at " + s.sdmd->socket()), std::string::npos)
        << "the error names sdmd and its socket: " << r.out;
    EXPECT_NE(r.out.find("pool '" + std::string(kPool) + "'"), std::string::npos)
        << "the error names the pool: " << r.out;
    /* libvirt's clean-up after a failed clone (deleteVol) must not put its own error in
     * place of the clone's. */
    if (GetParam().operation->label == "clone") {
        EXPECT_NE(r.out.find("cloning the volume failed"), std::string::npos)
            << "the error is the clone's: " << r.out;
    }
}

void StackCrashTest::RunKillingLibvirtd(const std::string &step)
{
    Stack &s = *stack;
    const std::string stall = s.tmp.Sub("stall");
    ASSERT_NO_FATAL_FAILURE(RestartSdmd({"SDM_STALL_AT=" + step, "SDM_STALL_FILE=" + stall}));
    std::vector<std::string> argv = {"virsh", "-q", "-c", s.libvirt->uri()};
    argv.insert(argv.end(), command_.begin(), command_.end());
    const std::string output = s.tmp.Sub("virsh.out");
    pid_t virsh = Spawn(argv, output);
    int exit_code = -1;
    auto deadline = std::chrono::steady_clock::now() + kReachLimit;
    while (!Exists(stall) && exit_code < 0 && std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (waitpid(virsh, &status, WNOHANG) == virsh)
            exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        else
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    reached_ = Exists(stall);
    if (!reached_) {
        if (exit_code < 0) {
            kill(virsh, SIGKILL);
            WaitExit(virsh);
            FAIL() << "virsh neither ended nor reached " << step << ": " << ReadFile(output);
        }
        EXPECT_EQ(exit_code, 0) << "a step this operation does not take: " << ReadFile(output);
        return;
    }
    s.libvirt->Kill();
    exit_code = WaitExit(virsh);
    std::string said = ReadFile(output);
    EXPECT_NE(exit_code, 0) << "virsh did not notice libvirtd's death: " << said;
    EXPECT_TRUE(said.find("End of file while reading data") != std::string::npos ||
                said.find("due to end of file") != std::string::npos)
        << "the error says the connection to libvirtd was lost: " << said;
    ASSERT_EQ(unlink(stall.c_str()), 0);
    CommandResult idle = Sdm({"jobs", "--watch", "--until-idle"});
    EXPECT_EQ(idle.exit_code, 0) << idle.out;
    ASSERT_TRUE(s.libvirt->Start());
}

/* A normal sdmd, one sweep, and the check. An upload may leave its volume ILLEGAL, which
 * check reports as the one problem; deleting it with virsh is the way out, and must work. */
void StackCrashTest::Recover()
{
    if (!stack->sdmd->running()) {
        ASSERT_TRUE(StartSdmd());
    }
    std::vector<std::string> errors = CollectGarbage();
    EXPECT_TRUE(errors.empty()) << ::testing::PrintToString(errors);
    std::vector<std::string> problems = CheckProblems();
    auto volumes = ListVolumes();
    auto it = volumes.find(target_);
    if (it != volumes.end() && it->second.legality != "LEGAL") {
        outcome_ = "ILLEGAL";
        ASSERT_EQ(problems.size(), 1u) << ::testing::PrintToString(problems);
        EXPECT_NE(problems[0].find("'" + target_ + "'): committed but ILLEGAL"),
                  std::string::npos)
            << problems[0];
        stack->libvirt->VirshOk({"pool-refresh", kPool});
        CommandResult info = stack->libvirt->Virsh({"vol-info", target_, "--pool", kPool});
        EXPECT_NE(info.out.find("is ILLEGAL"), std::string::npos)
            << "vol-info refuses it: " << info.out;
        stack->libvirt->VirshOk({"vol-delete", target_, "--pool", kPool});
        stack->committed.erase(target_);
        problems = CheckProblems();
    }
    EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
}

void StackCrashTest::ExpectOutcome(const Operation &op)
{
    Stack &s = *stack;
    const bool libvirtd_killed = GetParam().victim == Victim::kLibvirtd;
    auto volumes = ListVolumes();
    auto it = volumes.find(target_);
    const bool present = it != volumes.end();
    if (outcome_.empty())
        outcome_ = present ? "complete" : "absent";
    if (op.label == "create" || op.label == "snapshot" || op.label == "clone") {
        EXPECT_FALSE(listed_while_down_ && !present)
            << "virsh listed " << target_ << " while sdmd was down, but it was never made";
        if (!present) {
            EXPECT_FALSE(libvirtd_killed) << "sdmd's job should have ended";
            /* Without a trace: the name is free, and the same command now makes the volume. */
            s.libvirt->VirshOk(command_);
            volumes = ListVolumes();
            it = volumes.find(target_);
            ASSERT_NE(it, volumes.end());
        }
        ASSERT_EQ(it->second.legality, "LEGAL");
        EXPECT_EQ(it->second.capacity, kSize);
        std::string sha = GuestSha256(it->second);
        EXPECT_EQ(sha, op.label == "create" ? ZerosSha256() : s.committed[source_].guest_sha)
            << "whole: a new volume reads zeros, a clone or a layer as its source";
        s.committed[target_] = {sha, FileSha256(it->second.path), it->second.capacity};
        return;
    }
    if (outcome_ == "ILLEGAL") {
        EXPECT_FALSE(present) << "an upload's ILLEGAL volume was deleted by Recover";
        return;
    }
    const Known before = s.committed.at(target_);
    if (op.label == "delete") {
        outcome_ = present ? "kept whole" : "deleted";
        if (!present) {
            s.committed.erase(target_);
            return;
        }
        EXPECT_FALSE(libvirtd_killed) << "sdmd's job should have ended";
        return; /* as it was: checked with every committed volume */
    }
    ASSERT_TRUE(present);
    EXPECT_EQ(it->second.legality, "LEGAL");
    if (op.label == "resize") {
        const uint64_t capacity = it->second.capacity;
        EXPECT_TRUE(capacity == kSize || capacity == 2 * kSize) << capacity;
        if (libvirtd_killed) {
            EXPECT_EQ(capacity, 2 * kSize) << "sdmd's job should have ended";
        }
        struct stat st;
        ASSERT_EQ(stat(it->second.path.c_str(), &st), 0);
        EXPECT_EQ(static_cast<uint64_t>(st.st_size), capacity) << "data and metadata agree";
        EXPECT_EQ(GuestSha256(it->second, kSize), before.guest_sha) << "nothing lost";
        outcome_ = capacity == kSize ? "old size" : "new size";
        s.committed[target_] = {GuestSha256(it->second), FileSha256(it->second.path), capacity};
        return;
    }
    /* An upload that left its volume LEGAL: with the old data or the new, whole. */
    std::string sha = GuestSha256(it->second);
    EXPECT_TRUE(sha == before.guest_sha || sha == payload_sha_) << "whole: the old data or the new";
    outcome_ = sha == payload_sha_ ? "new data" : "old data";
    s.committed[target_] = {sha, sha, it->second.capacity};
}

void StackCrashTest::ExpectCommittedIntact()
{
    auto volumes = ListVolumes();
    for (const auto &[name, known] : stack->committed) {
        auto it = volumes.find(name);
        ASSERT_NE(it, volumes.end()) << name << " is gone";
        EXPECT_EQ(it->second.legality, "LEGAL") << name;
        EXPECT_EQ(it->second.capacity, known.capacity) << name;
        EXPECT_EQ(FileSha256(it->second.path), known.file_sha) << name << " changed";
    }
}

/* sdmd's volumes, or its LEGAL ones only. */
std::set<std::string> SdmdVolumes(bool legal_only)
{
    std::set<std::string> names;
    for (const auto &[name, v] : ListVolumes())
        if (!legal_only || v.legality == "LEGAL")
            names.insert(name);
    return names;
}

/* Without a refresh, libvirt's list comes to show sdmd's volumes: the shim's watcher
 * relists the pool when the domain changes. (While sdmd was down it may also have shown an
 * interrupted clone: libvirt's clean-up of a failed clone asks sdmd to delete it.) */
void StackCrashTest::ExpectPoolConverges()
{
    const std::set<std::string> all = SdmdVolumes(false);
    std::set<std::string> shown;
    auto deadline = std::chrono::steady_clock::now() + kConvergeLimit;
    while ((shown = PoolVolumes()) != all && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(shown, all) << "virsh vol-list, without a refresh, does not come to show "
                             "sdmd's volumes";
}

void StackCrashTest::ExpectPoolShowsCommittedVolumes()
{
    std::set<std::string> committed;
    for (const auto &entry : stack->committed)
        committed.insert(entry.first);
    EXPECT_EQ(SdmdVolumes(true), committed) << "sdmd lists exactly the committed volumes, LEGAL";
    stack->libvirt->VirshOk({"pool-refresh", kPool});
    EXPECT_EQ(PoolVolumes(), SdmdVolumes(false)) << "virsh shows exactly sdmd's volumes";
}

TEST_P(StackCrashTest, KilledAtStep)
{
    const Case &c = GetParam();
    command_ = Prepare(*c.operation);
    ASSERT_FALSE(HasFailure());
    if (c.victim == Victim::kSdmd)
        ASSERT_NO_FATAL_FAILURE(RunKillingSdmd(c.step));
    else
        ASSERT_NO_FATAL_FAILURE(RunKillingLibvirtd(c.step));
    ASSERT_NO_FATAL_FAILURE(Recover());
    ASSERT_NO_FATAL_FAILURE(ExpectPoolConverges());
    ASSERT_NO_FATAL_FAILURE(ExpectOutcome(*c.operation));
    ASSERT_NO_FATAL_FAILURE(ExpectCommittedIntact());
    ASSERT_NO_FATAL_FAILURE(ExpectPoolShowsCommittedVolumes());
    std::string key = (c.victim == Victim::kSdmd ? "sdmd killed, " : "libvirtd killed, ") +
                      c.operation->label;
    if (!reached_)
        outcome_ = "step not reached";
    else if (listed_while_down_)
        outcome_ += " (listed while sdmd was down)";
    stack->outcomes[key][outcome_]++;
    /* The case's volume goes, through virsh: a complete one is usable to its end. */
    if (stack->committed.erase(target_))
        stack->libvirt->VirshOk({"vol-delete", target_, "--pool", kPool});
}

INSTANTIATE_TEST_SUITE_P(SdmdKill, StackCrashTest, ::testing::ValuesIn(Cases(Victim::kSdmd)),
                         CaseName);
INSTANTIATE_TEST_SUITE_P(LibvirtdKill, StackCrashTest,
                         ::testing::ValuesIn(Cases(Victim::kLibvirtd)), CaseName);
INSTANTIATE_TEST_SUITE_P(LibvirtdKillSlow, StackCrashTest,
                         ::testing::ValuesIn(Cases(Victim::kLibvirtd, true)), CaseName);

/* sdmd killed at each step of the format that `virsh pool-build` asks for: a second
 * pool-build (sdmd back) finishes or redoes it, and the pool starts and works. */
class PoolBuildCrashTest : public ::testing::TestWithParam<std::string> {
public:
    static void SetUpTestSuite() { StackCrashTest::SetUpTestSuite(); }
};

TEST_P(PoolBuildCrashTest, BuildingAgainFinishesTheDomain)
{
    ASSERT_TRUE(stack && stack->ready) << "the shared set-up failed";
    std::string pool = "build-" + std::to_string(++stack->serial);
    std::string dir = stack->tmp.Sub(pool);
    WriteFile(stack->tmp.Sub(pool + ".xml"),
              DomainPoolXml(pool, dir, stack->sdmd->socket(), " io_timeout='5'"));
    stack->libvirt->VirshOk({"pool-define", stack->tmp.Sub(pool + ".xml")});
    ASSERT_NO_FATAL_FAILURE(RestartSdmd({"SDM_CRASH_AT=" + GetParam()}));
    CommandResult crashed = stack->libvirt->Virsh({"pool-build", pool});
    EXPECT_NE(crashed.exit_code, 0) << "sdmd did not crash at " << GetParam();
    EXPECT_EQ(stack->sdmd->Stop(), 128 + SIGKILL) << "sdmd did not crash at " << GetParam();
    ASSERT_TRUE(StartSdmd());
    stack->libvirt->VirshOk({"pool-build", pool});
    stack->libvirt->VirshOk({"pool-start", pool});
    stack->libvirt->VirshOk({"vol-create-as", pool, "works", "1M"});
    stack->libvirt->VirshOk({"vol-delete", "works", "--pool", pool});
    stack->libvirt->VirshOk({"pool-destroy", pool});
    stack->libvirt->VirshOk({"pool-undefine", pool});
}

/* A sample by default (a format interrupted before its commit, and after); every step
 * in the slow suite (each case joins a new lockspace: half a minute). */
const std::vector<std::string> kFormatSample = {"format.areas", "format.done"};

std::vector<std::string> FormatSteps(bool sample)
{
    std::vector<std::string> steps;
    for (const auto &step : StepsOf("format")) {
        bool in_sample =
            std::find(kFormatSample.begin(), kFormatSample.end(), step) != kFormatSample.end();
        if (in_sample == sample)
            steps.push_back(step);
    }
    return steps;
}

std::string StepName(const ::testing::TestParamInfo<std::string> &info)
{
    std::string name = info.param;
    for (char &ch : name)
        if (!isalnum(static_cast<unsigned char>(ch)))
            ch = '_';
    return name;
}

INSTANTIATE_TEST_SUITE_P(PoolBuild, PoolBuildCrashTest, ::testing::ValuesIn(FormatSteps(true)),
                         StepName);
INSTANTIATE_TEST_SUITE_P(PoolBuildSlow, PoolBuildCrashTest,
                         ::testing::ValuesIn(FormatSteps(false)), StepName);
TEST(StackCrashCoverage, EveryStepOfTheTestedOperationsIsACase)
{
    std::set<std::string> covered;
    for (const auto &c : Cases(Victim::kSdmd))
        covered.insert(c.step);
    for (const auto &step : StepsOf("format"))
        covered.insert(step); /* PoolBuildCrashTest */
    for (const auto &step : AllSteps()) {
        if (step.rfind("gc.", 0) == 0)
            continue; /* the collector's own crashes: tests/crash */
        if (step.rfind("upgrade.", 0) == 0 || step.rfind("chunk.", 0) == 0)
            continue; /* not reached through libvirt (sdm upgrade; sdmd's attach): tests/crash */
        if (step.rfind("wipe.", 0) == 0)
            continue; /* sdmd killed in a wipe: tests/integration/daemon_test.cc */
        EXPECT_TRUE(covered.count(step)) << step << " has no whole-stack crash case";
    }
    for (const auto &op : Operations()) {
        std::vector<std::string> steps = StepsOf(op.steps);
        EXPECT_NE(std::find(steps.begin(), steps.end(), op.middle), steps.end()) << op.middle;
    }
}

/* Prints what the run saw and stops the shared daemons; sdmd's stop must be clean. */
class StackEnvironment : public ::testing::Environment {
public:
    void TearDown() override
    {
        if (!stack)
            return;
        std::cout << "--- outcomes (cases) ---\n";
        for (const auto &[key, counts] : stack->outcomes) {
            std::cout << key << ":";
            for (const auto &[outcome, n] : counts)
                std::cout << " " << outcome << " " << n << ";";
            std::cout << "\n";
        }
        stack->libvirt.reset();
        StopStandInVm(*stack);
        if (stack->sdmd->running()) {
            EXPECT_EQ(stack->sdmd->Stop(), 0) << stack->sdmd->Log();
        }
        stack.reset();
    }
};

[[maybe_unused]] ::testing::Environment *const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new StackEnvironment);

}  // namespace
}  // namespace sdm::testing
