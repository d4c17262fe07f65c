/* I/O faults at every filesystem step of every volume operation, through the whole daemon:
 * sdmd (local leases) serves a domain that it sees through faultfs (tests/support/faultfs),
 * and each operation is first run clean while faultfs counts its filesystem calls of each
 * kind (write, fsync, rename, symlink, mkdir, ...); then, for every k, the k-th call of
 * that kind fails (EIO, ENOSPC) or is cut short, once. After each case the caller must
 * hold a clear error (a code, and a message naming what failed) or a complete result; the
 * rule is cleared, one garbage-collection sweep runs, the consistency check passes with no
 * transaction left, every volume committed before is byte-for-byte intact, and the
 * operation's target is either whole or absent (a deleted volume intact or gone, a resized
 * one at its old or new size with its data). docs/reliability.md publishes the counts
 * this prints. Needs root (FUSE); skipped otherwise. Single-threaded; the daemon, the
 * mount and the domain are shared by every test of the suite, which leaves them as it
 * found them. */
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/daemon_harness.h"
#include "tests/support/faultfs_harness.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
/* Lets every matching call through: a rule that only counts. */
constexpr uint64_t kNever = 1ull << 40;

/* The filesystem calls counted and failed. Reads and opens are left out: they change
 * nothing on storage, and a failed one is an ordinary error return. */
const std::vector<std::string> &CountedOps()
{
    static const std::vector<std::string> ops = {
        "create", "mkdir",    "write",     "fsync",    "fsyncdir",        "rename", "symlink",
        "link",   "truncate", "fallocate", "unlink",   "rmdir",           "chmod",
        "copy_file_range"};
    return ops;
}

struct Fault {
    std::string label;              /* in test names */
    std::string action;             /* the faultfs action */
    std::vector<std::string> ops;   /* the calls it applies to */
};

void PrintTo(const Fault &fault, std::ostream *out) { *out << fault.label; }

const std::vector<Fault> &Faults()
{
    static const std::vector<Fault> faults = {
        {"eio", "error=EIO", CountedOps()},
        {"enospc", "error=ENOSPC",
         {"create", "mkdir", "write", "rename", "symlink", "link", "truncate", "fallocate",
          "copy_file_range"}},
        {"short", "short=1", {"write", "copy_file_range"}},
    };
    return faults;
}

struct Scenario {
    std::string label;
    std::string op;       /* create, clone, delete, resize */
    std::string victim;   /* "raw", "qcow2": a volume made before each case; "" for none */
};

void PrintTo(const Scenario &scenario, std::ostream *out) { *out << scenario.label; }

const std::vector<Scenario> &Scenarios()
{
    static const std::vector<Scenario> scenarios = {
        {"create_raw_sparse", "create", ""},
        {"create_raw_full", "create", ""},
        {"create_qcow2", "create", ""},
        {"clone_raw", "clone", ""},
        {"clone_to_qcow2", "clone", ""},
        {"delete", "delete", "raw"},
        {"resize_raw", "resize", "raw"},
        {"resize_qcow2", "resize", "qcow2"},
    };
    return scenarios;
}

/* What the runs of one (scenario, fault) pair came to. */
struct Tally {
    uint64_t cases = 0;
    uint64_t injected = 0;       /* the fault fired */
    uint64_t failed = 0;         /* the caller got an error */
    uint64_t succeeded = 0;      /* the operation absorbed the fault */
    uint64_t failed_but_done = 0;/* an error, yet the GC completed the operation */
};

/* SHA-256 of every file of a directory tree, by path below it; symlinks by their text. */
void TreeSums(const std::string &dir, const std::string &rel,
              std::map<std::string, std::string> *sums)
{
    g_autoptr(GDir) d = g_dir_open(dir.c_str(), 0, nullptr);
    while (const char *name = d ? g_dir_read_name(d) : nullptr) {
        std::string path = dir + "/" + name;
        std::string key = rel + name;
        struct stat st;
        if (lstat(path.c_str(), &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            TreeSums(path, key + "/", sums);
        } else if (S_ISLNK(st.st_mode)) {
            g_autofree char *target = g_file_read_link(path.c_str(), nullptr);
            (*sums)[key] = std::string("-> ") + (target ? target : "?");
        } else {
            (*sums)[key] = FileSha256(path);
        }
    }
}

/* The daemon, the mount and the domain every test shares. */
struct Stack {
    TempDir tmp;
    std::string shared;       /* storage, as faultfs's source */
    std::string view;         /* the same through faultfs */
    std::string uuid;
    std::unique_ptr<FaultFs> fs;
    std::unique_ptr<DaemonHarness> daemon;
    GDBusConnection *conn = nullptr;
    /* Per scenario: calls of each kind in a clean run. */
    std::map<std::string, std::map<std::string, uint64_t>> counts;
    std::map<std::string, Tally> tallies;

    ~Stack()
    {
        if (conn) {
            g_dbus_connection_close_sync(conn, nullptr, nullptr);
            g_object_unref(conn);
        }
        if (daemon && daemon->running()) {
            EXPECT_EQ(daemon->Stop(), 0) << daemon->Log();
        }
        daemon.reset();
        fs.reset();
    }
};

Stack *stack = nullptr;

class IoFaultTest : public ::testing::TestWithParam<std::tuple<Scenario, Fault>> {
public:
    static void SetUpTestSuite()
    {
        if (geteuid() != 0)
            return;
        stack = new Stack;
        stack->shared = stack->tmp.Sub("shared");
        stack->view = stack->tmp.Sub("view");
        ASSERT_EQ(mkdir(stack->shared.c_str(), 0755), 0);
        ASSERT_EQ(mkdir(stack->view.c_str(), 0755), 0);
        ASSERT_EQ(mkdir((stack->shared + "/domain").c_str(), 0755), 0);
        try {
            stack->fs = std::make_unique<FaultFs>(stack->shared, stack->view);
        } catch (const std::exception &e) {
            FAIL() << e.what();
        }
        std::string daemon_dir = stack->tmp.Sub("sdmd");
        ASSERT_EQ(mkdir(daemon_dir.c_str(), 0755), 0);
        stack->daemon = std::make_unique<DaemonHarness>(daemon_dir);
        ASSERT_TRUE(stack->daemon->Start());
        g_autoptr(GError) error = nullptr;
        stack->conn = stack->daemon->Connect(&error);
        ASSERT_NE(stack->conn, nullptr) << error->message;
        std::string root = stack->view + "/domain";
        g_autoptr(GVariant) reply = Call(
            stack->conn, "FormatDomain", g_variant_new("(s@a{sv})", root.c_str(), Opts({})),
            &error);
        ASSERT_NE(reply, nullptr) << error->message;
        g_autoptr(GVariant) domain = g_variant_get_child_value(reply, 0);
        stack->uuid = Str(domain, "uuid");
        g_autoptr(GVariant) attached =
            Call(stack->conn, "AttachDomain", g_variant_new("(s)", root.c_str()), &error);
        ASSERT_NE(attached, nullptr) << error->message;
    }

    static void TearDownTestSuite()
    {
        if (!stack)
            return;
        std::ostringstream out;
        Tally total;
        for (const auto &[label, t] : stack->tallies) {
            out << "iofault " << label << ": cases=" << t.cases << " injected=" << t.injected
                << " failed=" << t.failed << " absorbed=" << t.succeeded
                << " failed_but_committed=" << t.failed_but_done << "\n";
            total.cases += t.cases;
            total.injected += t.injected;
            total.failed += t.failed;
            total.succeeded += t.succeeded;
            total.failed_but_done += t.failed_but_done;
        }
        out << "iofault total: cases=" << total.cases << " injected=" << total.injected
            << " failed=" << total.failed << " absorbed=" << total.succeeded
            << " failed_but_committed=" << total.failed_but_done << "\n";
        printf("%s", out.str().c_str());
        delete stack;
        stack = nullptr;
    }

protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "FUSE mounts need root";
        ASSERT_NE(stack, nullptr);
        ASSERT_NE(stack->conn, nullptr) << "the suite's sdmd did not start";
        ASSERT_NO_FATAL_FAILURE(EnsureBystanders());
    }

    const char *d() const { return stack->uuid.c_str(); }

    /* The first out-argument of a call that must succeed (null after a failure). */
    GVariant *Out(const char *method, GVariant *args)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply = Call(stack->conn, method, args, &error);
        EXPECT_NE(reply, nullptr) << method << ": " << (error ? error->message : "") << "\n"
                                  << stack->daemon->Log();
        return reply ? g_variant_get_child_value(reply, 0) : nullptr;
    }

    /* Submits a job and waits for it: its final dictionary. */
    GVariant *RunJob(const char *method, GVariant *args)
    {
        g_autoptr(GVariant) id = Out(method, args);
        if (!id)
            return nullptr;
        return Out("WaitJob", g_variant_new("(su)", g_variant_get_string(id, nullptr), 120000u));
    }

    void JobOk(const char *method, GVariant *args)
    {
        g_autoptr(GVariant) job = RunJob(method, args);
        ASSERT_EQ(Str(job, "state"), "done") << method << ": " << Str(job, "error_message");
    }

    /* The volume's dictionary, or null if there is no such volume. */
    GVariant *Lookup(const std::string &name)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply =
            Call(stack->conn, "LookupVolume", g_variant_new("(ss)", d(), name.c_str()), &error);
        if (!reply) {
            EXPECT_EQ(ErrorName(error), "org.libvirt.Sdm1.Error.NotFound") << error->message;
            return nullptr;
        }
        return g_variant_get_child_value(reply, 0);
    }

    /* A volume's data file as storage holds it (not through faultfs). */
    std::string SharedPath(GVariant *volume)
    {
        std::string path = Str(volume, "path");
        EXPECT_EQ(path.rfind(stack->view, 0), 0u) << path;
        return stack->shared + path.substr(stack->view.size());
    }

    /* Volumes committed before any case: a raw one with data, an empty qcow2 one. */
    void EnsureBystanders()
    {
        if (!bystanders_.empty())
            return;
        g_autoptr(GVariant) raw = Lookup("base-raw");
        if (!raw) {
            ASSERT_NO_FATAL_FAILURE(JobOk(
                "CreateVolume", g_variant_new("(sst@a{sv})", d(), "base-raw", 4 * kMiB, Opts({}))));
            g_autoptr(GVariant) made = Lookup("base-raw");
            ASSERT_NE(made, nullptr);
            WritePattern(SharedPath(made), 0, kMiB, 7);
            ASSERT_NO_FATAL_FAILURE(JobOk(
                "CreateVolume",
                g_variant_new("(sst@a{sv})", d(), "base-q", 4 * kMiB,
                              Opts({{"format", g_variant_new_string("qcow2")}}))));
        }
        g_autoptr(GVariant) base_raw = Lookup("base-raw");
        ASSERT_NE(base_raw, nullptr);
        base_raw_sum_ = FileSha256(SharedPath(base_raw));
        for (const char *name : {"base-raw", "base-q"}) {
            g_autoptr(GVariant) v = Lookup(name);
            ASSERT_NE(v, nullptr);
            std::string image = Str(v, "image");
            bystanders_[name] = image;
        }
        bystander_sums_ = Sums();
    }

    /* Every file of the bystanders' images and their index entries. */
    std::map<std::string, std::string> Sums()
    {
        std::map<std::string, std::string> sums;
        std::string images = stack->shared + "/domain/images";
        for (const auto &[name, image] : bystanders_) {
            TreeSums(images + "/" + image, image + "/", &sums);
            g_autofree char *target = g_file_read_link((images + "/@" + name).c_str(), nullptr);
            sums["@" + name] = target ? target : "<no index entry>";
        }
        return sums;
    }

    /* The victim of a delete or resize, with a known content when raw. */
    void MakeVictim(const std::string &format)
    {
        ASSERT_NO_FATAL_FAILURE(JobOk(
            "CreateVolume", g_variant_new("(sst@a{sv})", d(), "victim", 2 * kMiB,
                                          Opts({{"format", g_variant_new_string(
                                                               format.c_str())}}))));
        g_autoptr(GVariant) v = Lookup("victim");
        ASSERT_NE(v, nullptr);
        victim_data_ = SharedPath(v);
        if (format == "raw")
            WritePattern(victim_data_, 0, kMiB, 9);
        victim_sum_ = FileSha256(victim_data_);
        victim_content_ = ReadFile(victim_data_);
    }

    /* Submits the scenario's operation and waits for it. */
    GVariant *RunScenario(const Scenario &s)
    {
        if (s.label == "create_raw_sparse")
            return RunJob("CreateVolume",
                          g_variant_new("(sst@a{sv})", d(), "new", 4 * kMiB, Opts({})));
        if (s.label == "create_raw_full")
            return RunJob("CreateVolume",
                          g_variant_new("(sst@a{sv})", d(), "new", 2 * kMiB,
                                        Opts({{"prealloc", g_variant_new_string("full")}})));
        if (s.label == "create_qcow2")
            return RunJob("CreateVolume",
                          g_variant_new("(sst@a{sv})", d(), "new", 4 * kMiB,
                                        Opts({{"format", g_variant_new_string("qcow2")}})));
        if (s.label == "clone_raw")
            return RunJob("CloneVolume",
                          g_variant_new("(sss@a{sv})", d(), "base-raw", "new", Opts({})));
        if (s.label == "clone_to_qcow2")
            return RunJob("CloneVolume",
                          g_variant_new("(sss@a{sv})", d(), "base-raw", "new",
                                        Opts({{"format", g_variant_new_string("qcow2")}})));
        if (s.op == "delete")
            return RunJob("DeleteVolume", g_variant_new("(ss)", d(), "victim"));
        return RunJob("ResizeVolume", g_variant_new("(sst)", d(), "victim", 4 * kMiB));
    }

    /* Calls of each counted kind that a clean run of `s` makes on the domain. */
    std::map<std::string, uint64_t> CountCalls(const Scenario &s)
    {
        auto cached = stack->counts.find(s.label);
        if (cached != stack->counts.end())
            return cached->second;
        if (!s.victim.empty()) {
            EXPECT_NO_FATAL_FAILURE(MakeVictim(s.victim));
        }
        for (const auto &op : CountedOps())
            EXPECT_EQ(stack->fs->Add("count-" + op, op, "/domain/*", "error=EIO", kNever), "");
        g_autoptr(GVariant) job = RunScenario(s);
        auto rules = stack->fs->Rules();
        EXPECT_EQ(stack->fs->ClearAll(), "");
        EXPECT_EQ(Str(job, "state"), "done") << "clean run: " << Str(job, "error_message");
        std::map<std::string, uint64_t> counts;
        for (const auto &op : CountedOps())
            counts[op] = rules["count-" + op].seen;
        EXPECT_NO_FATAL_FAILURE(Reset());
        stack->counts[s.label] = counts;
        return counts;
    }

    /* Back to the bystanders alone. */
    void Reset()
    {
        for (const char *name : {"new", "victim"}) {
            g_autoptr(GVariant) v = Lookup(name);
            if (v) {
                ASSERT_NO_FATAL_FAILURE(
                    JobOk("DeleteVolume", g_variant_new("(ss)", d(), name)));
            }
        }
    }

    /* A failed call's error has a code, says what failed (a file of the domain, the call
     * or the tool that failed) and why (the injected error). */
    void ExpectClearError(GVariant *job, const Fault &fault)
    {
        std::string code = Str(job, "error_code");
        std::string message = Str(job, "error_message");
        if (fault.label == "enospc") {
            EXPECT_EQ(code, "no-space") << message;
            EXPECT_TRUE(message.find(strerror(ENOSPC)) != std::string::npos ||
                        message.find("free space") != std::string::npos)
                << message;
        } else {
            EXPECT_EQ(code, "io-error") << message;
            EXPECT_NE(message.find(strerror(EIO)), std::string::npos) << message;
        }
        bool names_what = false;
        for (const char *what : {"images/", "tx/", "@", "qemu-img", "write", "fsync", "rename",
                                 "truncate", "fallocate", "copy_file_range", "link", "mkdir",
                                 "unlink", "remove", "chmod", "create"})
            names_what = names_what || message.find(what) != std::string::npos;
        EXPECT_TRUE(names_what) << "the message does not say what failed: " << message;
    }

    /* One GC sweep, then a consistent domain with nothing pending. */
    void SweepAndCheck()
    {
        g_autoptr(GVariant) gc = Out("CollectGarbage", g_variant_new("(sb)", d(), FALSE));
        ASSERT_NE(gc, nullptr);
        EXPECT_EQ(U32(gc, "errors"), 0u) << ::testing::PrintToString(Strv(gc, "lines"));
        g_autoptr(GVariant) check = Out("CheckDomain", g_variant_new("(s)", d()));
        ASSERT_NE(check, nullptr);
        EXPECT_EQ(Strv(check, "problems"), std::vector<std::string>{});
        EXPECT_EQ(U32(check, "pending"), 0u);
    }

    /* The target is whole or absent; whether the operation took effect. */
    bool ExpectOutcome(const Scenario &s)
    {
        if (s.op == "create" || s.op == "clone") {
            g_autoptr(GVariant) v = Lookup("new");
            if (!v)
                return false;
            EXPECT_EQ(Str(v, "legality"), "LEGAL");
            if (s.label == "clone_raw") {
                EXPECT_EQ(FileSha256(SharedPath(v)), base_raw_sum_) << "a committed clone is whole";
            }
            if (Str(v, "format") == "qcow2") {
                CommandResult r = sdm::testing::Run({"qemu-img", "check", "-U", SharedPath(v)});
                EXPECT_EQ(r.exit_code, 0) << r.out;
            }
            return true;
        }
        g_autoptr(GVariant) v = Lookup("victim");
        if (s.op == "delete") {
            if (v) {
                EXPECT_EQ(FileSha256(victim_data_), victim_sum_) << "an undone delete lost data";
            }
            return !v;
        }
        if (!v) {
            ADD_FAILURE() << "a resize lost its volume";
            return false;
        }
        uint64_t capacity = U64(v, "capacity");
        EXPECT_TRUE(capacity == 2 * kMiB || capacity == 4 * kMiB) << capacity;
        if (Str(v, "format") == "raw") {
            struct stat st;
            EXPECT_EQ(stat(victim_data_.c_str(), &st), 0);
            EXPECT_EQ(static_cast<uint64_t>(st.st_size), capacity) << "data and metadata agree";
            EXPECT_TRUE(ReadFile(victim_data_).substr(0, 2 * kMiB) == victim_content_)
                << "the resize damaged the data";
        } else {
            CommandResult r = sdm::testing::Run({"qemu-img", "check", "-U", victim_data_});
            EXPECT_EQ(r.exit_code, 0) << r.out;
            r = sdm::testing::Run({"qemu-img", "info", "-U", "--output=json", victim_data_});
            EXPECT_NE(r.out.find("\"virtual-size\": " + std::to_string(capacity)),
                      std::string::npos)
                << "data and metadata agree: " << r.out;
        }
        return capacity == 4 * kMiB;
    }

    /* The k-th (from 0) `op` call of scenario `s` meets `fault`. */
    void RunCase(const Scenario &s, const Fault &fault, const std::string &op, uint64_t k,
                 Tally *tally)
    {
        SCOPED_TRACE(s.label + ": " + fault.label + " at " + op + " #" + std::to_string(k + 1));
        if (!s.victim.empty()) {
            ASSERT_NO_FATAL_FAILURE(MakeVictim(s.victim));
        }
        ASSERT_EQ(stack->fs->Add("fault", op, "/domain/*", fault.action, k, 1), "");
        g_autoptr(GVariant) job = RunScenario(s);
        uint64_t hits = stack->fs->Rules()["fault"].hits;
        ASSERT_EQ(stack->fs->ClearAll(), "");
        ASSERT_NE(job, nullptr);
        tally->cases++;
        tally->injected += hits;
        /* The clean run counted this call; a run that changes course before it is a
         * finding too (a nondeterministic operation). */
        EXPECT_EQ(hits, 1u) << "the fault point was not reached";
        std::string state = Str(job, "state");
        bool failed = state == "failed";
        EXPECT_TRUE(failed || state == "done") << state;
        if (failed) {
            tally->failed++;
            ExpectClearError(job, fault);
        } else {
            tally->succeeded++;
        }
        ASSERT_NO_FATAL_FAILURE(SweepAndCheck());
        EXPECT_EQ(Sums(), bystander_sums_) << "a committed volume changed";
        bool took_effect = ExpectOutcome(s);
        if (failed && took_effect) {
            tally->failed_but_done++;
            /* Not a failure of the suite, but a caller may take it for one: listed. */
            printf("iofault %s: %s at %s #%llu: failed, yet took effect: %s\n",
                   s.label.c_str(), fault.label.c_str(), op.c_str(),
                   static_cast<unsigned long long>(k + 1), Str(job, "error_message").c_str());
        }
        if (!failed) {
            EXPECT_TRUE(took_effect) << "the operation said it succeeded, but did nothing";
        }
        ASSERT_NO_FATAL_FAILURE(Reset());
    }

    std::map<std::string, std::string> bystanders_;  /* name -> image */
    std::map<std::string, std::string> bystander_sums_;
    std::string base_raw_sum_;
    std::string victim_data_;
    std::string victim_sum_;
    std::string victim_content_;
};

TEST_P(IoFaultTest, EveryCallOfTheOperationFails)
{
    const auto &[scenario, fault] = GetParam();
    auto counts = CountCalls(scenario);
    ASSERT_FALSE(HasFailure()) << "the clean run failed";
    Tally &tally = stack->tallies[scenario.label + "/" + fault.label];
    for (const auto &op : fault.ops) {
        for (uint64_t k = 0; k < counts[op]; k++) {
            RunCase(scenario, fault, op, k, &tally);
            if (HasFatalFailure())
                return;
        }
    }
    std::string seen;
    for (const auto &op : fault.ops)
        seen += op + "=" + std::to_string(counts[op]) + " ";
    RecordProperty("calls", seen);
    RecordProperty("cases", std::to_string(tally.cases));
    EXPECT_GT(tally.cases, 0u) << "no call to fail: " << seen;
}

INSTANTIATE_TEST_SUITE_P(
    Points, IoFaultTest, ::testing::Combine(::testing::ValuesIn(Scenarios()),
                                            ::testing::ValuesIn(Faults())),
    [](const ::testing::TestParamInfo<std::tuple<Scenario, Fault>> &info) {
        return std::get<0>(info.param).label + "__" + std::get<1>(info.param).label;
    });

}  // namespace
}  // namespace sdm::testing
