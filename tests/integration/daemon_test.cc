/* sdmd as its clients see it: a real daemon process driven over its D-Bus socket. Every
 * method's happy path; every method's bad arguments, each answered with the right named
 * error and never a crash; jobs and their signals, cancellation, WaitJob's timeout, the GC
 * timer; who may connect; stopping on SIGTERM; and configuration errors. */
#include <fcntl.h>
#include <gio/gunixfdlist.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <set>
#include <tuple>

#include "backend/engine/crashpoint.h"
#include "backend/engine/layout.h"
#include "backend/engine/metadata.h"
#include "sdm/domain.h"
#include "tests/support/daemon_harness.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr char kErrorPrefix[] = "org.libvirt.Sdm1.Error.";

/* The signals of one connection, in the order they arrived. */
struct Signals {
    std::vector<std::pair<std::string, std::string>> changed;  /* job id, state */
    struct Progress {
        std::string id, step;
        uint64_t done, total;
    };
    std::vector<Progress> progress;

    std::vector<std::string> StatesOf(const std::string &id) const
    {
        std::vector<std::string> states;
        for (const auto &[job, state] : changed) {
            if (job == id)
                states.push_back(state);
        }
        return states;
    }
};

void OnSignal(GDBusConnection *, const char *, const char *, const char *, const char *signal,
              GVariant *parameters, gpointer data)
{
    auto *signals = static_cast<Signals *>(data);
    if (g_str_equal(signal, "JobChanged")) {
        g_autoptr(GVariant) job = g_variant_get_child_value(parameters, 0);
        signals->changed.emplace_back(Str(job, "id"), Str(job, "state"));
    } else {
        const char *id, *step;
        guint64 done, total;
        g_variant_get(parameters, "(&s&stt)", &id, &step, &done, &total);
        signals->progress.push_back({id, step, done, total});
    }
}

class DaemonTest : public ::testing::Test {
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
        Disconnect();
        if (daemon_.running()) {
            EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
        }
    }

    /* Closes the test's connection, if there is one. */
    void Disconnect()
    {
        if (!conn_)
            return;
        if (subscription_)
            g_dbus_connection_signal_unsubscribe(conn_, subscription_);
        subscription_ = 0;
        g_dbus_connection_close_sync(conn_, nullptr, nullptr);
        g_clear_object(&conn_);
    }

    /* Starts sdmd with the test domain attached, and connects. */
    void StartDaemon(const std::string &config = "", const std::vector<std::string> &env = {})
    {
        ASSERT_TRUE(daemon_.Start("domains=" + root_ + "\n" + config, env));
        g_autoptr(GError) error = nullptr;
        conn_ = daemon_.Connect(&error);
        ASSERT_NE(conn_, nullptr) << error->message;
    }

    /* Starts sdmd with a qemu-img whose `convert` blocks until it is killed: a clone to
     * qcow2 then stays in clone.copy until it is cancelled. */
    void StartDaemonWithStuckCopies()
    {
        std::string wrapper = tmp_.Sub("stuck-qemu-img");
        WriteFile(wrapper, "#!/bin/sh\n"
                           "if [ \"$1\" = convert ]; then exec sleep 300; fi\n"
                           "exec qemu-img \"$@\"\n");
        ASSERT_EQ(chmod(wrapper.c_str(), 0755), 0);
        ASSERT_NO_FATAL_FAILURE(StartDaemon("", {"SDM_QEMU_IMG=" + wrapper}));
    }

    /* Collects the job signals `connection` receives into `signals`; with `ask`, first
     * asks sdmd to send them (SubscribeJobs). */
    static guint Listen(GDBusConnection *connection, Signals *signals, bool ask)
    {
        if (ask) {
            g_autoptr(GError) error = nullptr;
            g_autoptr(GVariant) reply = Call(connection, "SubscribeJobs", nullptr, &error);
            EXPECT_NE(reply, nullptr) << (error ? error->message : "");
        }
        return g_dbus_connection_signal_subscribe(
            connection, nullptr, "org.libvirt.Sdm1.Manager", nullptr, "/org/libvirt/Sdm1",
            nullptr, G_DBUS_SIGNAL_FLAGS_NONE, OnSignal, signals, nullptr);
    }

    void Subscribe() { subscription_ = Listen(conn_, &signals_, true); }

    /* The reply of a call that must succeed (null after a test failure). */
    GVariant *CallOk(const char *method, GVariant *args)
    {
        g_autoptr(GError) error = nullptr;
        GVariant *reply = Call(conn_, method, args, &error);
        EXPECT_NE(reply, nullptr) << method << ": " << (error ? error->message : "");
        return reply;
    }

    /* The first out-argument of a call that must succeed. */
    GVariant *Out(const char *method, GVariant *args)
    {
        g_autoptr(GVariant) reply = CallOk(method, args);
        return reply ? g_variant_get_child_value(reply, 0) : nullptr;
    }

    /* The error name of a call that must fail, with its message kept for inspection. */
    std::string CallError(const char *method, GVariant *args)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply = Call(conn_, method, args, &error);
        last_message_ = error ? error->message : "";
        return reply ? "<succeeded>" : ErrorName(error);
    }

    /* Submits with `method` and waits for the job; the job's final dictionary. */
    GVariant *RunJob(const char *method, GVariant *args)
    {
        g_autoptr(GVariant) reply = CallOk(method, args);
        if (!reply)
            return nullptr;
        const char *id;
        g_variant_get(reply, "(&s)", &id);
        return Out("WaitJob", g_variant_new("(su)", id, 60000u));
    }

    GVariant *Create(const std::string &name, uint64_t capacity, GVariant *options = nullptr)
    {
        g_autoptr(GVariant) job = RunJob(
            "CreateVolume", g_variant_new("(sst@a{sv})", uuid_.c_str(), name.c_str(), capacity,
                                          options ? options : Opts({})));
        EXPECT_EQ(Str(job, "state"), "done") << Str(job, "error_message");
        return g_variant_lookup_value(job, "result", G_VARIANT_TYPE_VARDICT);
    }

    std::vector<std::string> TxEntries() const
    {
        std::vector<std::string> entries;
        g_autoptr(GDir) dir = g_dir_open((root_ + "/tx").c_str(), 0, nullptr);
        while (const char *name = dir ? g_dir_read_name(dir) : nullptr)
            entries.emplace_back(name);
        return entries;
    }

    /* Starts a clone to qcow2 (stuck, see StartDaemonWithStuckCopies) and returns its job
     * id once the copy runs. */
    std::string StartStuckClone(const std::string &name)
    {
        g_autoptr(GVariant) source = Create("source", 8 * kMiB);
        Subscribe();
        g_autoptr(GVariant) reply = CallOk(
            "CloneVolume", g_variant_new("(sss@a{sv})", uuid_.c_str(), "source", name.c_str(),
                                         Opts({{"format", g_variant_new_string("qcow2")}})));
        if (!reply)
            return "";
        const char *id;
        g_variant_get(reply, "(&s)", &id);
        std::string job = id;
        EXPECT_TRUE(SpinUntil([&] {
            for (const auto &p : signals_.progress) {
                if (p.id == job && p.step == "clone.copy")
                    return true;
            }
            return false;
        })) << daemon_.Log();
        return job;
    }

    TempDir tmp_;
    std::string root_;
    std::string uuid_;
    DaemonHarness daemon_{tmp_.path()};
    GDBusConnection *conn_ = nullptr;
    guint subscription_ = 0;
    Signals signals_;
    std::string last_message_;
};

TEST_F(DaemonTest, StatusAndDomains)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon("host_id=7"));
    g_autoptr(GVariant) status = Out("GetStatus", nullptr);
    EXPECT_FALSE(Str(status, "version").empty());
    EXPECT_EQ(U32(status, "host_id"), 7u);
    EXPECT_EQ(U32(status, "domains"), 1u);
    EXPECT_EQ(U32(status, "jobs"), 0u);
    EXPECT_NE(U64(status, "uptime"), ~0ull);

    g_autoptr(GVariant) list = Out("ListDomains", nullptr);
    ASSERT_EQ(g_variant_n_children(list), 1u);
    g_autoptr(GVariant) first = g_variant_get_child_value(list, 0);
    EXPECT_EQ(Str(first, "uuid"), uuid_);
    EXPECT_EQ(Str(first, "path"), root_);
    EXPECT_EQ(U32(first, "host_id"), 7u);
    EXPECT_EQ(U64(first, "alignment"), kMiB);
    for (const std::string &name : {uuid_, root_, root_ + "/", root_ + "/./"}) {
        g_autoptr(GVariant) by = Out("GetDomain", g_variant_new("(s)", name.c_str()));
        EXPECT_EQ(Str(by, "uuid"), uuid_) << name;
    }
}

TEST_F(DaemonTest, FormatAttachDetach)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    std::string other = tmp_.Sub("other");
    ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
    g_autoptr(GVariant) formatted = Out(
        "FormatDomain", g_variant_new("(s@a{sv})", other.c_str(),
                                      Opts({{"io_timeout", g_variant_new_uint32(5)},
                                            {"alignment", g_variant_new_uint64(2 * kMiB)}})));
    std::string uuid = Str(formatted, "uuid");
    EXPECT_TRUE(layout::IsUuid(uuid)) << uuid;
    EXPECT_EQ(U32(formatted, "io_timeout"), 5u);
    EXPECT_EQ(U64(formatted, "alignment"), 2 * kMiB);

    g_autoptr(GVariant) attached = Out("AttachDomain", g_variant_new("(s)", other.c_str()));
    EXPECT_EQ(Str(attached, "uuid"), uuid);
    g_autoptr(GVariant) again = Out("AttachDomain", g_variant_new("(s)", other.c_str()));
    EXPECT_EQ(Str(again, "uuid"), uuid) << "attaching an attached domain is not an error";
    g_autoptr(GVariant) list = Out("ListDomains", nullptr);
    EXPECT_EQ(g_variant_n_children(list), 2u);

    g_autoptr(GVariant) detached = CallOk("DetachDomain", g_variant_new("(s)", other.c_str()));
    EXPECT_EQ(CallError("GetDomain", g_variant_new("(s)", uuid.c_str())),
              std::string(kErrorPrefix) + "NotFound");
    EXPECT_NE(last_message_.find("attach it first"), std::string::npos) << last_message_;
}

/* A path names the domain found there now: one removed behind sdmd's back (by another
 * host) and formatted anew at the same path is another domain, and attaching the path
 * attaches that one; the old one stays attached under its uuid only. */
TEST_F(DaemonTest, PathFormattedAnewIsAnotherDomain)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    /* Removed by hand: sdmd's attachment would refuse a removal through the engine. */
    ASSERT_EQ(sdm::testing::Run({"rm", "-rf", root_}).exit_code, 0);
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    auto fresh = Domain::Format(root_, {});
    ASSERT_TRUE(fresh.ok()) << fresh.status().ToString();
    ASSERT_NE(fresh->uuid, uuid_);

    g_autoptr(GVariant) attached = Out("AttachDomain", g_variant_new("(s)", root_.c_str()));
    EXPECT_EQ(Str(attached, "uuid"), fresh->uuid) << "the path still names the old domain";
    g_autoptr(GVariant) by_path = Out("GetDomain", g_variant_new("(s)", root_.c_str()));
    EXPECT_EQ(Str(by_path, "uuid"), fresh->uuid);
    g_autoptr(GVariant) old = Out("GetDomain", g_variant_new("(s)", uuid_.c_str()));
    EXPECT_EQ(Str(old, "uuid"), uuid_);
    EXPECT_NE(daemon_.Log().find("is no longer at " + root_), std::string::npos)
        << daemon_.Log();
}

TEST_F(DaemonTest, VolumeMethods)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    const char *d = uuid_.c_str();
    g_autoptr(GVariant) made = Create("disk1", 16 * kMiB);
    ASSERT_NE(made, nullptr);
    EXPECT_EQ(Str(made, "name"), "disk1");
    EXPECT_EQ(Str(made, "legality"), "LEGAL");
    EXPECT_EQ(U64(made, "capacity"), 16 * kMiB);
    WritePattern(Str(made, "path"), 0, 4 * kMiB, 3);

    g_autoptr(GVariant) found = Out("LookupVolume", g_variant_new("(ss)", d, "disk1"));
    EXPECT_EQ(Str(found, "uuid"), Str(made, "uuid"));
    EXPECT_EQ(Str(made, "domain"), uuid_) << "a volume names its domain by uuid";
    g_autoptr(GVariant) by_path =
        Out("LookupVolume", g_variant_new("(ss)", root_.c_str(), "disk1"));
    EXPECT_EQ(Str(by_path, "domain"), uuid_) << "also when asked by the domain's path";

    g_autoptr(GVariant) resized = RunJob("ResizeVolume", g_variant_new("(sst)", d, "disk1",
                                                                       32 * kMiB));
    EXPECT_EQ(Str(resized, "state"), "done") << Str(resized, "error_message");
    g_autoptr(GVariant) resized_volume =
        g_variant_lookup_value(resized, "result", G_VARIANT_TYPE_VARDICT);
    ASSERT_NE(resized_volume, nullptr);
    EXPECT_EQ(U64(resized_volume, "capacity"), 32 * kMiB);

    g_autoptr(GVariant) cloned = RunJob(
        "CloneVolume", g_variant_new("(sss@a{sv})", d, "disk1", "disk2", Opts({})));
    EXPECT_EQ(Str(cloned, "state"), "done") << Str(cloned, "error_message");
    EXPECT_EQ(Str(cloned, "domain"), uuid_);
    g_autoptr(GVariant) clone_volume =
        g_variant_lookup_value(cloned, "result", G_VARIANT_TYPE_VARDICT);
    ASSERT_NE(clone_volume, nullptr);
    EXPECT_EQ(FileSha256(Str(clone_volume, "path")), FileSha256(Str(made, "path")));

    g_autoptr(GVariant) volumes = Out("ListVolumes", g_variant_new("(s)", d));
    std::set<std::string> names;
    for (size_t i = 0; i < g_variant_n_children(volumes); i++) {
        g_autoptr(GVariant) v = g_variant_get_child_value(volumes, i);
        names.insert(Str(v, "name"));
    }
    EXPECT_EQ(names, (std::set<std::string>{"disk1", "disk2"}));

    g_autoptr(GVariant) deleted = RunJob("DeleteVolume", g_variant_new("(ss)", d, "disk2"));
    EXPECT_EQ(Str(deleted, "state"), "done") << Str(deleted, "error_message");

    g_autoptr(GVariant) check = Out("CheckDomain", g_variant_new("(s)", d));
    EXPECT_EQ(U32(check, "volumes"), 1u);
    EXPECT_EQ(U32(check, "pending"), 0u);
    EXPECT_EQ(Strv(check, "problems"), std::vector<std::string>{});

    g_autoptr(GVariant) gc = Out("CollectGarbage", g_variant_new("(sb)", d, TRUE));
    EXPECT_EQ(U32(gc, "seen"), 0u);
    EXPECT_EQ(U32(gc, "errors"), 0u);

    g_autoptr(GVariant) hosts = Out("ListHosts", g_variant_new("(s)", d));
    ASSERT_EQ(g_variant_n_children(hosts), 1u);
    guint64 host, generation, timestamp;
    const char *state;
    g_variant_get_child(hosts, 0, "(tt&st)", &host, &generation, &state, &timestamp);
    EXPECT_EQ(host, 1u);
    EXPECT_EQ(generation, 0u);
    EXPECT_STREQ(state, "LIVE");
    EXPECT_GT(timestamp, 0u);

    EXPECT_EQ(CallError("GetLeaseXml", g_variant_new("(ss)", d, "disk1")),
              std::string(kErrorPrefix) + "Unsupported");
    EXPECT_NE(last_message_.find("not attached with sanlock leases"), std::string::npos)
        << last_message_;

    g_autoptr(GVariant) jobs = Out("ListJobs", nullptr);
    std::vector<std::string> types;
    for (size_t i = 0; i < g_variant_n_children(jobs); i++) {
        g_autoptr(GVariant) job = g_variant_get_child_value(jobs, i);
        types.push_back(Str(job, "type"));
        EXPECT_EQ(Str(job, "state"), "done");
    }
    /* The sweep sdmd runs when it attaches a domain, then the test's. */
    EXPECT_EQ(types,
              (std::vector<std::string>{"gc", "create", "resize", "clone", "delete", "gc"}));
    g_autoptr(GVariant) first = g_variant_get_child_value(jobs, 1);
    g_autoptr(GVariant) got = Out("GetJob", g_variant_new("(s)", Str(first, "id").c_str()));
    EXPECT_EQ(Str(got, "object"), "disk1");
}

/* One call that starts a create and answers with the ended job, as WaitJob would: the
 * volume made, or the job's failure in the dictionary. */
TEST_F(DaemonTest, CreateVolumeAndWaitAnswersWithTheEndedJob)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    const char *d = uuid_.c_str();
    auto create = [&](const char *name) {
        return Out("CreateVolumeAndWait",
                   g_variant_new("(sst@a{sv})", d, name, kMiB,
                                 Opts({{"format", g_variant_new_string("qcow2")}})));
    };
    g_autoptr(GVariant) done = create("one");
    ASSERT_NE(done, nullptr);
    EXPECT_EQ(Str(done, "state"), "done") << Str(done, "error_message");
    EXPECT_EQ(Str(done, "type"), "create");
    g_autoptr(GVariant) made = g_variant_lookup_value(done, "result", G_VARIANT_TYPE_VARDICT);
    ASSERT_NE(made, nullptr);
    EXPECT_EQ(Str(made, "format"), "qcow2");
    EXPECT_TRUE(Exists(Str(made, "path")));
    g_autoptr(GVariant) listed = Out("GetJob", g_variant_new("(s)", Str(done, "id").c_str()));
    EXPECT_EQ(Str(listed, "state"), "done") << "a job like any other";

    g_autoptr(GVariant) again = create("one");
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(Str(again, "state"), "failed");
    EXPECT_EQ(Str(again, "error_code"), "already-exists") << Str(again, "error_message");
}

/* libvirt hands out a volume's key and path before the create runs: the planned identity
 * is the one the create makes, and planning leaves storage alone. The first plan comes
 * before sdmd opened the domain (answered from the worker pool), the second after it
 * (answered on the main loop). */
TEST_F(DaemonTest, PlannedVolumeIsCreatedAsPlanned)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    const char *d = uuid_.c_str();
    std::set<std::string> uuids;
    for (const char *name : {"web", "db"}) {
        g_autoptr(GVariant) plan =
            Out("PlanVolume", g_variant_new("(ss@a{sv})", d, name, Opts({})));
        ASSERT_NE(plan, nullptr);
        EXPECT_FALSE(Exists(Str(plan, "path")));
        EXPECT_TRUE(uuids.insert(Str(plan, "uuid")).second) << "every plan is new";
        g_autoptr(GVariant) job = RunJob(
            "CreateVolume",
            g_variant_new("(sst@a{sv})", d, name, kMiB,
                          Opts({{"uuid", g_variant_new_string(Str(plan, "uuid").c_str())},
                                {"image", g_variant_new_string(Str(plan, "image").c_str())}})));
        EXPECT_EQ(Str(job, "state"), "done") << Str(job, "error_message");
        g_autoptr(GVariant) found = Out("LookupVolume", g_variant_new("(ss)", d, name));
        EXPECT_EQ(Str(found, "uuid"), Str(plan, "uuid"));
        EXPECT_EQ(Str(found, "path"), Str(plan, "path"));
        EXPECT_TRUE(Exists(Str(plan, "path")));
    }
    g_autoptr(GVariant) plan = Out("LookupVolume", g_variant_new("(ss)", d, "web"));
    g_autoptr(GVariant) layer = Out(
        "PlanVolume",
        g_variant_new("(ss@a{sv})", d, "web-snap",
                      Opts({{"backing", g_variant_new_string("web")}})));
    EXPECT_EQ(Str(layer, "image"), Str(plan, "image"));
    EXPECT_EQ(Str(layer, "parent"), Str(plan, "uuid"));
}

/* Each method with each kind of bad input it can get: the right named error, a message,
 * and a daemon that goes on answering. */
TEST_F(DaemonTest, BadArgumentsGetNamedErrors)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(GVariant) existing = Create("exists", kMiB);
    std::string rel = "relative/dir";
    std::string missing = tmp_.Sub("missing");
    std::string fresh = tmp_.Sub("fresh");
    ASSERT_EQ(mkdir(fresh.c_str(), 0755), 0);
    const char *d = uuid_.c_str();
    const std::string invalid = std::string(kErrorPrefix) + "InvalidArgument";
    const std::string not_found = std::string(kErrorPrefix) + "NotFound";

    struct Case {
        const char *method;
        std::function<GVariant *()> args;
        std::string error;
    };
    const std::vector<Case> cases = {
        {"FormatDomain", [&] { return g_variant_new("(s@a{sv})", rel.c_str(), Opts({})); },
         invalid},
        {"FormatDomain", [&] {
             return g_variant_new("(s@a{sv})", fresh.c_str(),
                                  Opts({{"bogus", g_variant_new_string("x")}}));
         }, invalid},
        {"FormatDomain", [&] {
             return g_variant_new("(s@a{sv})", fresh.c_str(),
                                  Opts({{"io_timeout", g_variant_new_string("5")}}));
         }, invalid},
        {"FormatDomain", [&] {
             return g_variant_new("(s@a{sv})", fresh.c_str(),
                                  Opts({{"sector_size", g_variant_new_uint32(1000)}}));
         }, invalid},
        {"AttachDomain", [&] { return g_variant_new("(s)", ""); }, invalid},
        {"AttachDomain", [&] { return g_variant_new("(s)", rel.c_str()); }, invalid},
        {"AttachDomain", [&] { return g_variant_new("(s)", missing.c_str()); }, not_found},
        {"DetachDomain", [&] { return g_variant_new("(s)", "no-such-domain"); }, not_found},
        {"DetachDomain", [&] { return g_variant_new("(s)", ""); }, invalid},
        {"GetDomain", [&] { return g_variant_new("(s)", missing.c_str()); }, not_found},
        {"GetDomain", [&] { return g_variant_new("(s)", ""); }, invalid},
        {"CreateVolume", [&] {
             return g_variant_new("(sst@a{sv})", "no-such-domain", "v", kMiB, Opts({}));
         }, not_found},
        {"CreateVolumeAndWait",
         [&] { return g_variant_new("(sst@a{sv})", "no-such-domain", "v", kMiB, Opts({})); },
         not_found},
        {"CreateVolumeAndWait",
         [&] { return g_variant_new("(sst@a{sv})", d, "a/b", kMiB, Opts({})); }, invalid},
        {"CreateVolume", [&] { return g_variant_new("(sst@a{sv})", d, "a/b", kMiB, Opts({})); },
         invalid},
        {"CreateVolume", [&] { return g_variant_new("(sst@a{sv})", d, "", kMiB, Opts({})); },
         invalid},
        {"CreateVolume", [&] { return g_variant_new("(sst@a{sv})", d, "..", kMiB, Opts({})); },
         invalid},
        {"CreateVolume", [&] { return g_variant_new("(sst@a{sv})", d, "v", 0ul, Opts({})); },
         invalid},
        {"CreateVolume", [&] {
             return g_variant_new("(sst@a{sv})", d, "v", kMiB,
                                  Opts({{"format", g_variant_new_string("vmdk")}}));
         }, invalid},
        {"CreateVolume", [&] {
             return g_variant_new("(sst@a{sv})", d, "v", kMiB,
                                  Opts({{"prealloc", g_variant_new_string("falloc")}}));
         }, invalid},
        {"CreateVolume", [&] {
             return g_variant_new("(sst@a{sv})", d, "v", kMiB,
                                  Opts({{"colour", g_variant_new_string("red")}}));
         }, invalid},
        {"CreateVolume", [&] {
             return g_variant_new("(sst@a{sv})", d, "v", kMiB,
                                  Opts({{"format", g_variant_new_uint32(1)}}));
         }, invalid},
        {"CreateVolume", [&] {
             return g_variant_new("(sst@a{sv})", d, "v", 0ul,
                                  Opts({{"backing", g_variant_new_string("x/y")}}));
         }, invalid},
        {"CloneVolume", [&] {
             return g_variant_new("(sss@a{sv})", "no-such-domain", "exists", "c", Opts({}));
         }, not_found},
        {"CloneVolume", [&] { return g_variant_new("(sss@a{sv})", d, "", "c", Opts({})); },
         invalid},
        {"CloneVolume", [&] { return g_variant_new("(sss@a{sv})", d, "exists", "c/d", Opts({})); },
         invalid},
        {"CloneVolume", [&] {
             return g_variant_new("(sss@a{sv})", d, "exists", "c",
                                  Opts({{"format", g_variant_new_string("qed")}}));
         }, invalid},
        {"CloneVolume", [&] {
             return g_variant_new("(sss@a{sv})", d, "exists", "c",
                                  Opts({{"prealloc", g_variant_new_string("full")}}));
         }, invalid},
        {"DeleteVolume", [&] { return g_variant_new("(ss)", "no-such-domain", "exists"); },
         not_found},
        {"DeleteVolume", [&] { return g_variant_new("(ss)", d, "a/b"); }, invalid},
        {"ResizeVolume", [&] { return g_variant_new("(sst)", "no-such-domain", "exists", kMiB); },
         not_found},
        {"ResizeVolume", [&] { return g_variant_new("(sst)", d, "", kMiB); }, invalid},
        {"ResizeVolume", [&] { return g_variant_new("(sst)", d, "exists", 0ul); }, invalid},
        {"PlanVolume", [&] {
             return g_variant_new("(ss@a{sv})", "no-such-domain", "v", Opts({}));
         }, not_found},
        {"PlanVolume", [&] { return g_variant_new("(ss@a{sv})", d, "../v", Opts({})); },
         invalid},
        {"PlanVolume", [&] {
             return g_variant_new("(ss@a{sv})", d, "v",
                                  Opts({{"backing", g_variant_new_string("absent")}}));
         }, not_found},
        {"PlanVolume", [&] {
             return g_variant_new("(ss@a{sv})", d, "v",
                                  Opts({{"format", g_variant_new_string("raw")}}));
         }, invalid},
        {"CreateVolume", [&] {
             return g_variant_new("(sst@a{sv})", d, "v", kMiB,
                                  Opts({{"uuid", g_variant_new_string("../../x")}}));
         }, invalid},
        {"LookupVolume", [&] { return g_variant_new("(ss)", "no-such-domain", "exists"); },
         not_found},
        {"LookupVolume", [&] { return g_variant_new("(ss)", d, "a/b"); }, invalid},
        {"LookupVolume", [&] { return g_variant_new("(ss)", d, "absent"); }, not_found},
        {"ListVolumes", [&] { return g_variant_new("(s)", "no-such-domain"); }, not_found},
        {"GetLeaseXml", [&] { return g_variant_new("(ss)", "no-such-domain", "exists"); },
         not_found},
        {"GetLeaseXml", [&] { return g_variant_new("(ss)", d, ""); }, invalid},
        {"CollectGarbage", [&] { return g_variant_new("(sb)", "no-such-domain", FALSE); },
         not_found},
        {"CheckDomain", [&] { return g_variant_new("(s)", "no-such-domain"); }, not_found},
        {"ListHosts", [&] { return g_variant_new("(s)", ""); }, invalid},
        {"ListHosts", [&] { return g_variant_new("(s)", "no-such-domain"); }, not_found},
        {"GetJob", [&] { return g_variant_new("(s)", "job-999"); }, not_found},
        {"WaitJob", [&] { return g_variant_new("(su)", "job-999", 10u); }, not_found},
        {"CancelJob", [&] { return g_variant_new("(s)", "job-999"); }, not_found},
        {"CancelJob", [&] { return g_variant_new("(s)", "job-1"); }, invalid},
        /* A call whose arguments do not fit the method's signature never reaches it. */
        {"CreateVolume", [&] { return g_variant_new("(ss)", d, "v"); },
         "org.freedesktop.DBus.Error.InvalidArgs"},
        {"NoSuchMethod", [&] { return g_variant_new("()"); },
         "org.freedesktop.DBus.Error.UnknownMethod"},
    };
    for (const auto &c : cases) {
        std::string label = std::string(c.method) + " #" + std::to_string(&c - cases.data());
        EXPECT_EQ(CallError(c.method, c.args()), c.error) << label << ": " << last_message_;
        if (c.error.rfind(kErrorPrefix, 0) == 0) {
            EXPECT_GT(last_message_.size(), 40u) << label << ": the message says what to do";
        }
    }
    g_autoptr(GVariant) status = Out("GetStatus", nullptr);
    EXPECT_NE(status, nullptr) << "sdmd still answers";
    g_autoptr(GVariant) volumes = Out("ListVolumes", g_variant_new("(s)", d));
    EXPECT_EQ(g_variant_n_children(volumes), 1u) << "no bad call made anything";
}

TEST_F(DaemonTest, CloneSignalsProgressAndStatesToSubscribersOnly)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(GVariant) source = Create("source", 64 * kMiB);
    WritePattern(Str(source, "path"), 0, 48 * kMiB, 5);
    /* A second client that listens without asking: libvirtd's case, which only waits. */
    g_autoptr(GError) error = nullptr;
    g_autoptr(GDBusConnection) quiet = daemon_.Connect(&error);
    ASSERT_NE(quiet, nullptr) << error->message;
    Signals unasked;
    guint quiet_subscription = Listen(quiet, &unasked, false);
    Subscribe();
    g_autoptr(GVariant) reply = CallOk(
        "CloneVolume", g_variant_new("(sss@a{sv})", uuid_.c_str(), "source", "copy",
                                     Opts({{"format", g_variant_new_string("qcow2")}})));
    ASSERT_NE(reply, nullptr);
    const char *id;
    g_variant_get(reply, "(&s)", &id);
    std::string job = id;
    ASSERT_TRUE(SpinUntil([&] { return signals_.StatesOf(job).size() >= 3; })) << daemon_.Log();
    EXPECT_EQ(signals_.StatesOf(job), (std::vector<std::string>{"pending", "running", "done"}));

    std::vector<Signals::Progress> copy;
    std::set<std::string> steps;
    for (const auto &p : signals_.progress) {
        if (p.id != job)
            continue;
        steps.insert(p.step);
        if (p.total > 0)
            copy.push_back(p);
    }
    ASSERT_GE(copy.size(), 2u) << "a copy reports progress as it goes";
    EXPECT_EQ(copy.back().done, copy.back().total) << "and ends complete";
    EXPECT_EQ(copy.back().total, 64 * kMiB);
    for (size_t i = 1; i < copy.size(); i++)
        EXPECT_LE(copy[i - 1].done, copy[i].done) << "progress never goes back";
    EXPECT_TRUE(steps.count("clone.copy") && steps.count("clone.commit"))
        << ::testing::PrintToString(steps);

    /* A reply comes after every signal sent before it on the same connection, and
     * signals are dispatched here in arrival order: after this, none can still come. */
    g_autoptr(GVariant) status = Call(quiet, "GetStatus", nullptr, &error);
    ASSERT_NE(status, nullptr) << error->message;
    while (g_main_context_iteration(nullptr, FALSE)) {
    }
    EXPECT_TRUE(unasked.changed.empty() && unasked.progress.empty())
        << unasked.changed.size() << " JobChanged and " << unasked.progress.size()
        << " JobProgress reached a client that did not subscribe";
    g_dbus_connection_signal_unsubscribe(quiet, quiet_subscription);
    g_dbus_connection_close_sync(quiet, nullptr, nullptr);
}

TEST_F(DaemonTest, CancelRunningCloneLeavesNothing)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemonWithStuckCopies());
    std::string job = StartStuckClone("doomed");
    ASSERT_FALSE(job.empty());
    EXPECT_EQ(CallError("DetachDomain", g_variant_new("(s)", uuid_.c_str())),
              std::string(kErrorPrefix) + "Busy") << "a domain with jobs stays attached";

    g_autoptr(GVariant) cancelled = CallOk("CancelJob", g_variant_new("(s)", job.c_str()));
    g_autoptr(GVariant) final_job = Out("WaitJob", g_variant_new("(su)", job.c_str(), 60000u));
    EXPECT_EQ(Str(final_job, "state"), "aborted");
    EXPECT_EQ(Str(final_job, "error_code"), "cancelled");
    EXPECT_TRUE(SpinUntil([&] { return signals_.StatesOf(job).back() == "aborted"; }))
        << "JobChanged tells every subscribed client";

    g_autoptr(GVariant) check = Out("CheckDomain", g_variant_new("(s)", uuid_.c_str()));
    EXPECT_EQ(Strv(check, "problems"), std::vector<std::string>{});
    EXPECT_EQ(U32(check, "pending"), 0u);
    EXPECT_EQ(TxEntries(), std::vector<std::string>{}) << "no transaction left behind";
    EXPECT_EQ(CallError("LookupVolume", g_variant_new("(ss)", uuid_.c_str(), "doomed")),
              std::string(kErrorPrefix) + "NotFound");
}

TEST_F(DaemonTest, WaitJobTimeoutReturnsTheRunningJob)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemonWithStuckCopies());
    std::string job = StartStuckClone("slow");
    ASSERT_FALSE(job.empty());
    g_autoptr(GVariant) waited = Out("WaitJob", g_variant_new("(su)", job.c_str(), 300u));
    EXPECT_EQ(Str(waited, "state"), "running");
    EXPECT_EQ(Str(waited, "step"), "clone.copy");
    g_autoptr(GVariant) at_once = Out("WaitJob", g_variant_new("(su)", job.c_str(), 0u));
    EXPECT_EQ(Str(at_once, "state"), "running");
    g_autoptr(GVariant) status = Out("GetStatus", nullptr);
    EXPECT_EQ(U32(status, "jobs"), 1u);
    g_autoptr(GVariant) cancelled = CallOk("CancelJob", g_variant_new("(s)", job.c_str()));
}

TEST_F(DaemonTest, StopCancelsRunningJobs)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemonWithStuckCopies());
    std::string job = StartStuckClone("interrupted");
    ASSERT_FALSE(job.empty());
    EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
    EXPECT_NE(daemon_.Log().find(job + " clone 'interrupted': aborted"), std::string::npos)
        << daemon_.Log();
    auto domain = Domain::Open(root_);
    ASSERT_TRUE(domain.ok());
    auto check = (*domain)->Check();
    ASSERT_TRUE(check.ok());
    EXPECT_TRUE(check->ok()) << ::testing::PrintToString(check->problems);
    EXPECT_EQ(check->pending_transactions, 0u);
}

TEST_F(DaemonTest, GcTimerSweepsAnAbandonedTransaction)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon("gc_interval=1"));
    /* Planted whole with one rename, as a dead owner would have left it. */
    meta::Marker m;
    m.txid = layout::NewUuid();
    m.op = meta::TxOp::kCreate;
    m.host_id = 2;
    m.slot = 5;
    m.image = layout::NewUuid();
    m.volume = layout::NewUuid();
    m.name = "abandoned";
    m.new_image = true;
    std::string staging = tmp_.Sub("staging");
    ASSERT_EQ(mkdir(staging.c_str(), 0755), 0);
    WriteFile(staging + "/marker", meta::Encode(m));
    ASSERT_EQ(mkdir((staging + "/garbage").c_str(), 0755), 0);
    WriteFile(staging + "/garbage/data", std::string(4096, 'x'));
    /* Owner 9: no attachment of this test takes it, so it is a dead owner's. */
    std::string planted = root_ + "/tx/" +
                          layout::TxDirName({m.txid, m.slot, {9, layout::NewIncarnation()}});
    ASSERT_EQ(rename(staging.c_str(), planted.c_str()), 0);

    EXPECT_TRUE(SpinUntil([&] { return !Exists(planted); }, std::chrono::seconds(90)))
        << daemon_.Log();
    EXPECT_TRUE(SpinUntil([&] { return daemon_.Log().find("1 collected") != std::string::npos; }))
        << daemon_.Log();
    g_autoptr(GVariant) check = Out("CheckDomain", g_variant_new("(s)", uuid_.c_str()));
    EXPECT_EQ(Strv(check, "problems"), std::vector<std::string>{});
}

TEST_F(DaemonTest, OnlyRootMayConnect)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    struct stat st;
    ASSERT_EQ(stat(daemon_.socket().c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_uid, 0u);

    /* Let the socket file itself be reached: then sdmd's own check must refuse. */
    ASSERT_EQ(chmod(tmp_.path().c_str(), 0755), 0);
    CommandResult denied = RunAs(kNobody, kNogroup,
                                 {SdmPath(), "--socket", daemon_.socket(), "status"},
                                 tmp_.path());
    EXPECT_EQ(denied.exit_code, 3) << denied.out;
    ASSERT_EQ(chmod(daemon_.socket().c_str(), 0666), 0);
    CommandResult refused = RunAs(kNobody, kNogroup,
                                  {SdmPath(), "--socket", daemon_.socket(), "status"},
                                  tmp_.path());
    EXPECT_EQ(refused.exit_code, 3) << refused.out;
    EXPECT_NE(refused.out.find("cannot reach sdmd"), std::string::npos) << refused.out;
    EXPECT_NE(daemon_.Log().find("refused a client with uid 65534"), std::string::npos)
        << daemon_.Log();
    g_autoptr(GVariant) status = Out("GetStatus", nullptr);
    EXPECT_NE(status, nullptr) << "root still gets in";
}

TEST_F(DaemonTest, SocketGroupMembersMayConnect)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon("socket_group=nogroup"));
    struct stat st;
    ASSERT_EQ(stat(daemon_.socket().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, kNogroup);
    ASSERT_EQ(chmod(tmp_.path().c_str(), 0755), 0);
    CommandResult member = RunAs(kNobody, kNogroup,
                                 {SdmPath(), "--socket", daemon_.socket(), "status"},
                                 tmp_.path());
    EXPECT_EQ(member.exit_code, 0) << member.out << daemon_.Log();
    EXPECT_NE(member.out.find("host id:  1"), std::string::npos) << member.out;
}

TEST_F(DaemonTest, SigtermExitsZeroAndRemovesTheSocket)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    ASSERT_TRUE(Exists(daemon_.socket()));
    EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
    EXPECT_FALSE(Exists(daemon_.socket()));
    EXPECT_NE(daemon_.Log().find("stopped"), std::string::npos) << daemon_.Log();
}

TEST_F(DaemonTest, StaleSocketIsReplacedLiveOneIsNot)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    CommandResult second = sdm::testing::Run({SdmdPath(), "--foreground", "--config", daemon_.config_path()});
    EXPECT_EQ(second.exit_code, 1) << second.out;
    EXPECT_NE(second.out.find("another sdmd is serving"), std::string::npos) << second.out;

    daemon_.Kill();
    ASSERT_TRUE(Exists(daemon_.socket())) << "a killed sdmd leaves its socket";
    ASSERT_TRUE(daemon_.Start("domains=" + root_));
    EXPECT_NE(daemon_.Log().find("removing the stale socket"), std::string::npos)
        << daemon_.Log();
}

TEST_F(DaemonTest, BadConfigurationExitsTwoNamingKeyAndLine)
{
    struct Case {
        std::string line;
        std::string says;
    } cases[] = {
        {"host_id=abc", "host_id: 'abc' is not a whole number from 1 to 2000"},
        {"host_id=0", "host_id"},
        {"gc_intreval=5", "gc_intreval: unknown key"},
        {"log_level=loud", "log_level"},
        {"socket=relative.sock", "socket"},
        {"socket_group=no-such-group-here", "socket_group"},
        {"lease_backend=nfs", "lease_backend"},
        {"domains=/ok;relative", "domains"},
        {"this is not a key", "not a key=value line"},
        {"[elsewhere]", "unknown group [elsewhere]"},
    };
    std::string path = tmp_.Sub("bad.conf");
    for (const auto &c : cases) {
        WriteFile(path, "# sdmd test\n[sdmd]\n" + c.line + "\n");
        CommandResult r = sdm::testing::Run({SdmdPath(), "--foreground", "--config", path});
        EXPECT_EQ(r.exit_code, 2) << c.line << ": " << r.out;
        EXPECT_NE(r.out.find(path + ":3: "), std::string::npos) << c.line << ": " << r.out;
        EXPECT_NE(r.out.find(c.says), std::string::npos) << c.line << ": " << r.out;
    }
    CommandResult absent = sdm::testing::Run({SdmdPath(), "--foreground", "--config", tmp_.Sub("absent")});
    EXPECT_EQ(absent.exit_code, 2) << absent.out;
    CommandResult usage = sdm::testing::Run({SdmdPath(), "--bogus"});
    EXPECT_EQ(usage.exit_code, 2) << usage.out;
}

/* --- volume data and domain removal: methods that take file descriptors --- */

/* Calls `method` with `fds` in the message's unix fd list (sdmd gets duplicates). */
GVariant *CallWithFds(GDBusConnection *connection, const char *method, GVariant *args,
                      const std::vector<int> &fds, GError **error)
{
    g_autoptr(GUnixFDList) list = g_unix_fd_list_new();
    for (int fd : fds)
        EXPECT_GE(g_unix_fd_list_append(list, fd, nullptr), 0);
    return g_dbus_connection_call_with_unix_fd_list_sync(
        connection, nullptr, "/org/libvirt/Sdm1", "org.libvirt.Sdm1.Manager", method, args,
        nullptr, G_DBUS_CALL_FLAGS_NONE, 60000, list, nullptr, nullptr, error);
}

struct Pipe {
    Pipe() { EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0); }
    ~Pipe() { Close(0), Close(1); }
    void Close(int end)
    {
        if (fds[end] >= 0)
            close(fds[end]);
        fds[end] = -1;
    }
    int fds[2] = {-1, -1};
};

class DaemonDataTest : public DaemonTest {
protected:
    void SetUp() override
    {
        signal(SIGPIPE, SIG_IGN);
        DaemonTest::SetUp();
    }

    /* Starts a job with descriptors; its id, or "" after a test failure. */
    std::string StartFdJob(const char *method, GVariant *args, const std::vector<int> &fds)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply = CallWithFds(conn_, method, args, fds, &error);
        EXPECT_NE(reply, nullptr) << method << ": " << (error ? error->message : "");
        if (!reply)
            return "";
        const char *id;
        g_variant_get(reply, "(&s)", &id);
        return id;
    }

    std::string FdCallError(const char *method, GVariant *args, const std::vector<int> &fds)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply = CallWithFds(conn_, method, args, fds, &error);
        last_message_ = error ? error->message : "";
        return reply ? "<succeeded>" : ErrorName(error);
    }

    GVariant *Wait(const std::string &job)
    {
        return Out("WaitJob", g_variant_new("(su)", job.c_str(), 60000u));
    }

    /* Uploads `content` through pipes; `confirm` writes the end's confirmation. */
    GVariant *Upload(const std::string &name, const std::string &content, bool confirm,
                     uint64_t offset = 0)
    {
        Pipe data, control;
        std::string job = StartFdJob(
            "UploadVolume",
            g_variant_new("(sstthh@a{sv})", uuid_.c_str(), name.c_str(), offset,
                          static_cast<guint64>(0), 0, 1, Opts({})),
            {data.fds[0], control.fds[0]});
        data.Close(0);
        control.Close(0);
        EXPECT_EQ(write(data.fds[1], content.data(), content.size()),
                  static_cast<ssize_t>(content.size()));
        data.Close(1);
        if (confirm) {
            EXPECT_EQ(write(control.fds[1], "", 1), 1);
        }
        control.Close(1);
        return Wait(job);
    }
};

/* sdmd killed at each step of a wipe (SDM_CRASH_AT): storage shows either the wipe not
 * begun (LEGAL, the old data), or under way (ILLEGAL, so no consumer uses a half-wiped
 * volume), or done (LEGAL, zeros); never LEGAL with anything else. A wipe after the
 * restart settles it. Download changes nothing on storage and has no crash points. */
TEST_F(DaemonDataTest, WipeKilledAtEachStepIsIllegalUntilItEnds)
{
    const char *d = uuid_.c_str();
    struct Expected {
        std::string step;
        bool legal;
        bool zeroed;
    };
    const std::vector<Expected> cases = {{"wipe.begin", true, false},
                                         {"wipe.data", false, false},
                                         {"wipe.legal", false, true},
                                         {"wipe.done", true, true}};
    std::vector<std::string> listed;
    for (const auto &c : cases)
        listed.push_back(c.step);
    ASSERT_EQ(StepsOf("wipe"), listed) << "a step without a case here";
    for (const auto &c : cases) {
        SCOPED_TRACE(c.step);
        ASSERT_NO_FATAL_FAILURE(StartDaemon("", {"SDM_CRASH_AT=" + c.step}));
        const std::string name = "v-" + c.step.substr(c.step.find('.') + 1);
        g_autoptr(GVariant) made = Create(name, 4 * kMiB);
        const std::string path = Str(made, "path");
        WritePattern(path, 0, 4 * kMiB, 9);
        const std::string before = FileSha256(path);

        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) started =
            Call(conn_, "WipeVolume", g_variant_new("(ss@a{sv})", d, name.c_str(), Opts({})),
                 &error);
        /* The job's thread may reach the step, and kill sdmd, before the main loop sends
         * the call's reply. */
        if (started) {
            const char *id;
            g_variant_get(started, "(&s)", &id);
            g_autoptr(GVariant) waited =
                Call(conn_, "WaitJob", g_variant_new("(su)", id, 60000u), &error);
            EXPECT_EQ(waited, nullptr) << "sdmd was to die at " << c.step;
        }
        EXPECT_EQ(daemon_.Stop(), 128 + SIGKILL) << daemon_.Log();
        Disconnect();

        ASSERT_NO_FATAL_FAILURE(StartDaemon());
        g_autoptr(GVariant) found = Out("LookupVolume", g_variant_new("(ss)", d, name.c_str()));
        EXPECT_EQ(Str(found, "legality"), c.legal ? "LEGAL" : "ILLEGAL");
        if (c.zeroed)
            EXPECT_EQ(ReadFile(path), std::string(4 * kMiB, '\0'));
        else
            EXPECT_EQ(FileSha256(path), before);

        g_autoptr(GVariant) again =
            RunJob("WipeVolume", g_variant_new("(ss@a{sv})", d, name.c_str(), Opts({})));
        EXPECT_EQ(Str(again, "state"), "done") << Str(again, "error_message");
        g_autoptr(GVariant) settled =
            Out("LookupVolume", g_variant_new("(ss)", d, name.c_str()));
        EXPECT_EQ(Str(settled, "legality"), "LEGAL");
        EXPECT_EQ(ReadFile(path), std::string(4 * kMiB, '\0'));
        g_autoptr(GVariant) check = Out("CheckDomain", g_variant_new("(s)", d));
        EXPECT_EQ(Strv(check, "problems"), std::vector<std::string>{});
        EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
        Disconnect();
    }
}

TEST_F(DaemonDataTest, UploadDownloadWipeImportAndRemove)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    const char *d = uuid_.c_str();
    g_autoptr(GVariant) made = Create("v", 4 * kMiB);
    const std::string path = Str(made, "path");
    std::string source = tmp_.Sub("source");
    WriteFile(source, "");
    ASSERT_EQ(truncate(source.c_str(), static_cast<off_t>(4 * kMiB)), 0);
    WritePattern(source, kMiB, 512 * 1024, 8);
    const std::string content = ReadFile(source);

    /* The pipe holds far less than the content: sdmd reads while this thread writes. */
    g_autoptr(GVariant) up = Upload("v", content, true);
    EXPECT_EQ(Str(up, "state"), "done") << Str(up, "error_message");
    EXPECT_EQ(FileSha256(path), FileSha256(source));
    g_autoptr(GVariant) after = Out("LookupVolume", g_variant_new("(ss)", d, "v"));
    EXPECT_EQ(Str(after, "legality"), "LEGAL");
    EXPECT_EQ(U64(after, "generation"), U64(made, "generation") + 2);

    Pipe down;
    std::string job = StartFdJob(
        "DownloadVolume",
        g_variant_new("(sstth@a{sv})", d, "v", static_cast<guint64>(kMiB),
                      static_cast<guint64>(kMiB), 0, Opts({})),
        {down.fds[1]});
    down.Close(1);
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = read(down.fds[0], buf, sizeof(buf))) > 0)
        got.append(buf, static_cast<size_t>(n));
    g_autoptr(GVariant) down_job = Wait(job);
    EXPECT_EQ(Str(down_job, "state"), "done") << Str(down_job, "error_message");
    EXPECT_EQ(got, content.substr(kMiB, kMiB)) << "EOF comes when the job closes its end";

    g_autoptr(GVariant) wiped = RunJob(
        "WipeVolume", g_variant_new("(ss@a{sv})", d, "v",
                                    Opts({{"algorithm", g_variant_new_string("zero")}})));
    EXPECT_EQ(Str(wiped, "state"), "done") << Str(wiped, "error_message");
    EXPECT_EQ(ReadFile(path), std::string(4 * kMiB, '\0'));

    int fd = open(source.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    job = StartFdJob("ImportVolume",
                     g_variant_new("(ssh@a{sv})", d, "imported", 0,
                                   Opts({{"source_format", g_variant_new_string("raw")},
                                         {"format", g_variant_new_string("qcow2")}})),
                     {fd});
    close(fd);
    g_autoptr(GVariant) imported = Wait(job);
    EXPECT_EQ(Str(imported, "state"), "done") << Str(imported, "error_message");
    g_autoptr(GVariant) volume = g_variant_lookup_value(imported, "result",
                                                        G_VARIANT_TYPE_VARDICT);
    ASSERT_NE(volume, nullptr);
    EXPECT_EQ(Str(volume, "format"), "qcow2");
    EXPECT_EQ(U64(volume, "capacity"), 4 * kMiB);

    /* An upload whose producer goes away without confirming: ILLEGAL, never LEGAL. */
    g_autoptr(GVariant) aborted = Upload("v", content.substr(0, kMiB), false);
    EXPECT_EQ(Str(aborted, "state"), "aborted");
    EXPECT_EQ(Str(aborted, "error_code"), "cancelled") << Str(aborted, "error_message");
    g_autoptr(GVariant) illegal = Out("LookupVolume", g_variant_new("(ss)", d, "v"));
    EXPECT_EQ(Str(illegal, "legality"), "ILLEGAL");

    /* RemoveDomain: never an attached domain; an empty detached one goes. */
    EXPECT_EQ(CallError("RemoveDomain", g_variant_new("(s)", root_.c_str())),
              std::string(kErrorPrefix) + "Busy");
    EXPECT_NE(last_message_.find("detach it first"), std::string::npos) << last_message_;
    std::string other = tmp_.Sub("other");
    ASSERT_EQ(mkdir(other.c_str(), 0755), 0);
    ASSERT_TRUE(Domain::Format(other, {}).ok());
    g_autoptr(GVariant) removed = CallOk("RemoveDomain", g_variant_new("(s)", other.c_str()));
    EXPECT_FALSE(Exists(other + "/domain.meta"));
    EXPECT_FALSE(Exists(other + "/leases"));
    EXPECT_EQ(CallError("RemoveDomain", g_variant_new("(s)", other.c_str())),
              std::string(kErrorPrefix) + "NotFound")
        << "no domain there any more";
}

TEST_F(DaemonDataTest, BadArgumentsOfTheDataMethods)
{
    ASSERT_NO_FATAL_FAILURE(StartDaemon());
    g_autoptr(GVariant) made = Create("v", kMiB);
    const char *d = uuid_.c_str();
    const std::string invalid = std::string(kErrorPrefix) + "InvalidArgument";
    Pipe p;
    auto upload = [&](const char *name, GVariant *options) {
        return g_variant_new("(sstthh@a{sv})", d, name, static_cast<guint64>(0),
                             static_cast<guint64>(0), 0, 1, options);
    };
    EXPECT_EQ(FdCallError("UploadVolume", upload("v", Opts({})), {}), invalid)
        << "no descriptors in the message";
    EXPECT_NE(last_message_.find("file descriptor for data"), std::string::npos)
        << last_message_;
    EXPECT_EQ(FdCallError("UploadVolume", upload("v", Opts({})), {p.fds[0]}), invalid)
        << "the control descriptor is missing";
    EXPECT_EQ(FdCallError("UploadVolume",
                          upload("v", Opts({{"sparse", g_variant_new_boolean(true)}})),
                          {p.fds[0], p.fds[0]}),
              invalid);
    EXPECT_EQ(FdCallError("UploadVolume", upload("a/b", Opts({})), {p.fds[0], p.fds[0]}),
              invalid);
    EXPECT_EQ(FdCallError("DownloadVolume",
                          g_variant_new("(sstth@a{sv})", "no-such-domain", "v",
                                        static_cast<guint64>(0), static_cast<guint64>(0), 0,
                                        Opts({})),
                          {p.fds[1]}),
              std::string(kErrorPrefix) + "NotFound");
    EXPECT_EQ(CallError("WipeVolume",
                        g_variant_new("(ss@a{sv})", d, "v",
                                      Opts({{"algorithm", g_variant_new_string("nnsa")}}))),
              std::string(kErrorPrefix) + "Unsupported");
    EXPECT_NE(last_message_.find("zero"), std::string::npos) << last_message_;
    EXPECT_EQ(CallError("WipeVolume",
                        g_variant_new("(ss@a{sv})", d, "v",
                                      Opts({{"algorithm", g_variant_new_uint32(1)}}))),
              invalid);
    EXPECT_EQ(FdCallError("ImportVolume",
                          g_variant_new("(ssh@a{sv})", d, "i", 0,
                                        Opts({{"source_format", g_variant_new_string("vmdk")}})),
                          {p.fds[0]}),
              invalid);
    EXPECT_EQ(FdCallError("ImportVolume",
                          g_variant_new("(ssh@a{sv})", d, "i", 0,
                                        Opts({{"uuid", g_variant_new_string("not-a-uuid")}})),
                          {p.fds[0]}),
              invalid);
    EXPECT_EQ(CallError("RemoveDomain", g_variant_new("(s)", "relative/dir")), invalid);
    EXPECT_EQ(CallError("RemoveDomain", g_variant_new("(s)", tmp_.Sub("missing").c_str())),
              std::string(kErrorPrefix) + "NotFound");
    /* An upload of a name that does not exist fails as a job, and nothing is left. */
    Pipe data, control;
    std::string job = StartFdJob("UploadVolume", upload("absent", Opts({})),
                                 {data.fds[0], control.fds[0]});
    g_autoptr(GVariant) failed = Wait(job);
    EXPECT_EQ(Str(failed, "error_code"), "not-found") << Str(failed, "error_message");
    EXPECT_TRUE(TxEntries().empty());
}

}  // namespace
}  // namespace sdm::testing
