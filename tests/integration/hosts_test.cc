/* sdmd on sanlock leases: a real sdmd with lease_backend=sanlock, talking to a private
 * sanlock daemon through sanlock_run_dir (simulated hosts, tests/support/sim_cluster.h).
 * Formatting writes the lockspace and lease areas; attaching joins the lockspace in the
 * background and `joined` reports it; volume operations, ListHosts and GetLeaseXml then
 * work on real sanlock leases. DeadHostSlow waits for a dead host's leases to expire
 * (~70 s); meson registers it only with -Dslow_tests=true. Needs root (the sanlock daemons
 * do); skipped otherwise. Single-threaded like the harnesses it uses. */
#include <sys/stat.h>
#include <csignal>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backend/engine/layout.h"
#include "sdm/types.h"
#include "tests/support/domain_fixture.h"
#include "tests/support/sim_cluster.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr char kErrorPrefix[] = "org.libvirt.Sdm1.Error.";

/* The D-Bus error name of a call that should fail ("<succeeded>" if it did not), and its
 * message in `message`. */
std::string CallError(SimHost &h, const char *method, GVariant *args, std::string *message)
{
    g_autoptr(GError) error = nullptr;
    g_autoptr(GVariant) reply = Call(h.connection(), method, args, &error);
    *message = error ? error->message : "";
    return reply ? "<succeeded>" : ErrorName(error);
}

class HostsTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
    }

    /* Starts hosts 1..count, each with its sanlock daemon and sdmd (`config` and `env` as
     * for SimHost::StartSdmd), for a new domain. */
    void StartHosts(int count, const std::string &config = "",
                    const std::vector<std::string> &env = {})
    {
        cluster_.reset();
        cluster_ = std::make_unique<SimCluster>(count);
        ASSERT_TRUE(cluster_->StartSdmds({config, env}));
    }

    /* Host 1 formats the domain with io_timeout 1; every host attaches it and joins. */
    void FormatAndAttach() { ASSERT_TRUE(cluster_->FormatAndAttach()); }

    SimHost &host(int id) { return cluster_->host(static_cast<uint32_t>(id)); }
    const std::string &root() const { return cluster_->root(); }
    const std::string &uuid() const { return cluster_->uuid(); }

    JobOutcome Create(SimHost &h, const std::string &name)
    {
        return h.Job("CreateVolume", g_variant_new("(sst@a{sv})", uuid().c_str(), name.c_str(),
                                                   8 * kMiB, NoOptions()));
    }

    GVariant *CloneArgs(const std::string &source, const std::string &name)
    {
        return g_variant_new("(sss@a{sv})", uuid().c_str(), source.c_str(), name.c_str(),
                             NoOptions());
    }

    /* CheckDomain on `h` finds no problem and no pending transaction. */
    void ExpectConsistent(SimHost &h)
    {
        EXPECT_EQ(cluster_->CheckProblems(h), std::vector<std::string>{}) << "host " << h.id();
    }

    TempDir tmp_;
    std::unique_ptr<SimCluster> cluster_;
};

TEST_F(HostsTest, OneHostOnSanlockLeases)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    SimHost &h = host(1);
    const char *d = uuid().c_str();

    JobOutcome made = Create(h, "disk1");
    ASSERT_EQ(made.state, "done");
    JobOutcome cloned = h.Job("CloneVolume", CloneArgs("disk1", "disk2"));
    ASSERT_EQ(cloned.state, "done");
    EXPECT_NE(cloned.slot, made.slot) << "two volumes share a lease slot";
    h.Job("DeleteVolume", g_variant_new("(ss)", d, "disk2"));
    EXPECT_EQ(cluster_->VolumeNames(h), std::vector<std::string>{"disk1"});

    g_autoptr(GVariant) hosts = h.OutOk("ListHosts", g_variant_new("(s)", d));
    ASSERT_NE(hosts, nullptr);
    bool found = false;
    for (size_t i = 0; i < g_variant_n_children(hosts); i++) {
        guint64 id, generation, timestamp;
        const char *state;
        g_variant_get_child(hosts, i, "(tt&st)", &id, &generation, &state, &timestamp);
        if (id != 1)
            continue;
        found = true;
        EXPECT_GT(generation, 0u) << "a joined host has a generation";
        EXPECT_STREQ(state, "LIVE");
    }
    EXPECT_TRUE(found) << "host 1 is not among the lockspace's hosts";

    g_autoptr(GVariant) xml = h.OutOk("GetLeaseXml", g_variant_new("(ss)", d, "disk1"));
    ASSERT_NE(xml, nullptr);
    std::string text = g_variant_get_string(xml, nullptr);
    uint64_t slot = made.slot;
    EXPECT_NE(text.find("<lockspace>" + cluster_->lockspace() + "</lockspace>"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("<key>v" + std::to_string(slot) + "</key>"), std::string::npos)
        << text;
    EXPECT_NE(text.find("path='" + root() + "/" + layout::kLeases + "' offset='" +
                        std::to_string(layout::LeaseOffset(slot, cluster_->alignment())) +
                        "'"),
              std::string::npos)
        << text;
    std::string message;
    EXPECT_EQ(CallError(h, "GetLeaseXml", g_variant_new("(ss)", d, "nosuch"), &message),
              std::string(kErrorPrefix) + "NotFound")
        << message;

    g_autoptr(GVariant) detached = h.OutOk("DetachDomain", g_variant_new("(s)", d));
    g_autoptr(GVariant) again = h.OutOk("AttachDomain", g_variant_new("(s)", root().c_str()));
    EXPECT_TRUE(h.WaitJoined(uuid()));
    JobOutcome after = Create(h, "disk3");
    EXPECT_EQ(after.state, "done") << "the domain works again after detach and attach";
    ExpectConsistent(h);
}

/* A format 1 domain on sanlock: no host attaches it, the error names `sdm upgrade`; the
 * upgrade through sdmd joins the lockspace, takes the domain lease, settles what format 1
 * left pending, and every host attaches the domain afterwards. */
TEST_F(HostsTest, AFormat1DomainIsUpgradedThroughSdm)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(2));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    ASSERT_EQ(Create(host(1), "keep").state, "done");
    ASSERT_EQ(Create(host(2), "late").state, "done");
    for (int id = 1; id <= 2; id++) {
        g_autoptr(GVariant) detached =
            host(id).OutOk("DetachDomain", g_variant_new("(s)", uuid().c_str()));
    }
    ASSERT_NO_FATAL_FAILURE(MakeFormat1(root(), "late", "never"));

    std::string refused;
    g_autoptr(GVariant) none =
        host(1).Out("AttachDomain", g_variant_new("(s)", root().c_str()), &refused);
    EXPECT_EQ(none, nullptr);
    EXPECT_NE(refused.find("sdm upgrade " + root()), std::string::npos) << refused;

    CommandResult r = sdm::testing::Run(
        {SdmPath(), "--socket", host(1).daemon().socket(), "upgrade", root()});
    ASSERT_EQ(r.exit_code, 0) << r.out << host(1).Diagnostics();
    EXPECT_NE(r.out.find("from format 1 to 2"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("2 format 1 transactions adopted"), std::string::npos) << r.out;
    for (int id = 1; id <= 2; id++) {
        ASSERT_TRUE(host(id).Attach(root(), uuid()));
        ASSERT_TRUE(host(id).WaitJoined(uuid()));
    }
    EXPECT_EQ(cluster_->VolumeNames(host(2)), (std::vector<std::string>{"keep", "late"}));
    EXPECT_EQ(Create(host(2), "after").state, "done");
    ExpectConsistent(host(1));
}

/* Three hosts share one domain: what one makes the others see, a lease held by a VM on
 * one host stops a clone on another, and creates, clones and deletes from all three at
 * once never give one lease slot to two volumes and leave the domain consistent. */
TEST_F(HostsTest, ThreeHostsShareADomain)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(3));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());

    JobOutcome base = Create(host(1), "base");
    ASSERT_EQ(base.state, "done");
    EXPECT_EQ(cluster_->VolumeNames(host(2)), std::vector<std::string>{"base"});
    EXPECT_EQ(cluster_->VolumeNames(host(3)), std::vector<std::string>{"base"});

    /* A stand-in for libvirt's sanlock lock manager on host 1: holds base's lease. It
     * ends by SIGKILL, as a VM's process does, so that its daemon drops the lease but the
     * lockspace, which it shares with host 1's sdmd, stays (a helper that ends normally
     * leaves the lockspace under sdmd's feet). */
    std::string stop = tmp_.Sub("release-base");
    std::string output = tmp_.Sub("holder.out");
    std::string pid_file = tmp_.Sub("holder.pid");
    const char *helper = std::getenv("SDM_SANLOCK_HOST_HELPER");
    ASSERT_NE(helper, nullptr) << "SDM_SANLOCK_HOST_HELPER is not set";
    std::string script = "{ echo join 60000; echo acquire " + std::to_string(base.slot) +
                         " ex 0; while [ ! -e " + stop + " ]; do sleep 0.1; done; } | " +
                         helper + " " + cluster_->lockspace() + " " + cluster_->ids_path() +
                         " " + root() + "/" + layout::kLeases + " " + root() + "/" +
                         layout::kOwners + " 1 1 & echo $! > " +
                         pid_file + "; wait";
    pid_t holder = Spawn({"/bin/sh", "-c", script}, output, {host(1).sanlock().env()});
    ASSERT_GT(holder, 0);
    bool held = SpinUntil([&] {
        std::string text = ReadFile(output);
        return text.find("ok\n") != std::string::npos || text.find("error") != std::string::npos;
    });
    std::string replies = ReadFile(output);
    EXPECT_TRUE(held && replies.find("error") == std::string::npos) << replies;

    JobOutcome job = host(2).Wait(host(2).Submit("CloneVolume", CloneArgs("base", "copy")));
    EXPECT_EQ(job.state, "failed");
    EXPECT_EQ(job.error_code, "busy") << job.error_message;
    EXPECT_NE(job.error_message.find("host 1"), std::string::npos)
        << "the message names the holder: " << job.error_message;
    EXPECT_EQ(cluster_->VolumeNames(host(2)), std::vector<std::string>{"base"});
    ASSERT_NO_FATAL_FAILURE(ExpectConsistent(host(3)));

    pid_t helper_pid = std::atoi(ReadFile(pid_file).c_str());
    ASSERT_GT(helper_pid, 0) << ReadFile(pid_file);
    ASSERT_EQ(kill(helper_pid, SIGKILL), 0);
    WriteFile(stop, "");
    WaitExit(holder);

    /* All three at once, in waves: each host creates a qcow2 volume, layers a snapshot on
     * the one it made in the wave before, clones base and deletes a clone the next host
     * made in an earlier wave, all submitted before any is waited for. They touch
     * different images (or read base, shared), so none may fail: no domain-wide lease
     * serializes them. What is on storage afterwards is exactly what the jobs say. */
    constexpr int kWaves = 5;
    struct Pending {
        int host;
        std::string kind;
        std::string name;
        JobOutcome job;
    };
    std::set<std::string> expected = {"base"};
    std::vector<std::string> clones[4]; /* by host id: its clones not yet given to a delete */
    int done = 0, deletes_done = 0, submitted = 0;
    for (int wave = 0; wave < kWaves; wave++) {
        std::vector<Pending> jobs;
        for (int id = 1; id <= 3; id++) {
            std::string tag = "h" + std::to_string(id) + "w" + std::to_string(wave);
            GVariantBuilder qcow2;
            g_variant_builder_init(&qcow2, G_VARIANT_TYPE_VARDICT);
            g_variant_builder_add(&qcow2, "{sv}", "format", g_variant_new_string("qcow2"));
            jobs.push_back({id, "create", "new-" + tag,
                            host(id).Submit("CreateVolume",
                                            g_variant_new("(sst@a{sv})", uuid().c_str(),
                                                          ("new-" + tag).c_str(), 4 * kMiB,
                                                          g_variant_builder_end(&qcow2)))});
            if (wave > 0) {
                std::string below = "new-h" + std::to_string(id) + "w" + std::to_string(wave - 1);
                GVariantBuilder layer;
                g_variant_builder_init(&layer, G_VARIANT_TYPE_VARDICT);
                g_variant_builder_add(&layer, "{sv}", "format", g_variant_new_string("qcow2"));
                g_variant_builder_add(&layer, "{sv}", "backing",
                                      g_variant_new_string(below.c_str()));
                jobs.push_back({id, "snapshot", "snap-" + tag,
                                host(id).Submit("CreateVolume",
                                                g_variant_new("(sst@a{sv})", uuid().c_str(),
                                                              ("snap-" + tag).c_str(), 0,
                                                              g_variant_builder_end(&layer)))});
            }
            jobs.push_back({id, "clone", "clone-" + tag,
                            host(id).Submit("CloneVolume", CloneArgs("base", "clone-" + tag))});
            std::vector<std::string> &theirs = clones[id % 3 + 1];
            if (!theirs.empty()) {
                std::string victim = theirs.front();
                theirs.erase(theirs.begin());
                jobs.push_back({id, "delete", victim,
                                host(id).Submit("DeleteVolume",
                                                g_variant_new("(ss)", uuid().c_str(),
                                                              victim.c_str()))});
            }
        }
        for (const auto &j : jobs) {
            ASSERT_TRUE(j.job.submitted) << "host " << j.host << " refused " << j.kind << " "
                                         << j.name;
            submitted++;
            JobOutcome finished = host(j.host).Wait(j.job);
            ASSERT_EQ(finished.state, "done")
                << "host " << j.host << ": " << j.kind << " " << j.name << ": "
                << finished.error_code << " " << finished.error_message;
            done++;
            if (j.kind == "delete") {
                deletes_done++;
                expected.erase(j.name);
            } else {
                expected.insert(j.name);
                if (j.kind == "clone")
                    clones[j.host].push_back(j.name);
            }
        }
    }
    EXPECT_GT(deletes_done, 0) << "no delete got through";

    std::vector<std::string> names(expected.begin(), expected.end());
    for (int id = 1; id <= 3; id++)
        EXPECT_EQ(cluster_->VolumeNames(host(id)), names) << "host " << id;
    std::map<std::string, ListedVolume> volumes;
    std::string error;
    ASSERT_TRUE(cluster_->List(host(3), &volumes, &error)) << error;
    std::set<uint64_t> slots;
    for (const auto &[name, v] : volumes) {
        EXPECT_TRUE(slots.insert(v.slot).second)
            << "slot " << v.slot << " is used twice (" << name << ")";
        EXPECT_EQ(v.legality, LegalityName(Legality::kLegal)) << name;
        struct stat st;
        ASSERT_EQ(stat(v.path.c_str(), &st), 0) << name << ": " << v.path;
        if (name == "base" || name.rfind("clone-", 0) == 0) { /* raw */
            EXPECT_EQ(static_cast<uint64_t>(st.st_size), v.capacity) << name;
        }
    }
    printf("parallel from three hosts: %d of %d jobs done (%d deletes)\n", done, submitted,
           deletes_done);
    for (int id = 1; id <= 3; id++)
        ASSERT_NO_FATAL_FAILURE(ExpectConsistent(host(id)));
    SweepReport swept = cluster_->Sweep(host(2));
    ASSERT_TRUE(swept.ok) << swept.error;
    EXPECT_EQ(swept.collected, 0u) << "the jobs left garbage behind";
    EXPECT_EQ(swept.errors, 0u);
}

/* The life cycle of one domain on one host (issue 20): attach, detach, remove and format of
 * one domain run one at a time in sdmd, whatever the order their calls arrive in. */
class LifecycleTest : public HostsTest {
protected:
    void SetUp() override
    {
        HostsTest::SetUp();
        if (IsSkipped())
            return;
        ASSERT_NO_FATAL_FAILURE(StartHosts(1));
        ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    }

    /* `method` on a connection of its own, on another thread: `Wait` gives its error
     * name ("" when it succeeded) and message. */
    struct Background {
        std::thread thread;
        std::string error, message;
        void Wait() { thread.join(); }
    };
    void Start(Background *call, const char *method, GVariant *args)
    {
        GDBusConnection *connection = host(1).NewConnection();
        ASSERT_NE(connection, nullptr);
        GVariant *owned = g_variant_ref_sink(args);
        call->thread = std::thread([call, connection, method, owned] {
            g_autoptr(GError) error = nullptr;
            g_autoptr(GVariant) reply = Call(connection, method, owned, &error);
            call->error = reply ? "" : ErrorName(error);
            call->message = error ? error->message : "";
            g_variant_unref(owned);
            g_dbus_connection_close_sync(connection, nullptr, nullptr);
            g_object_unref(connection);
        });
    }

    /* The domain is attached, joined and works: a create commits, and its lockspace is
     * still joined a few lease renewals later (a leave that ran behind an attach's back
     * shows as "lost" within about a second). */
    void ExpectWorking(const std::string &name)
    {
        ASSERT_TRUE(host(1).WaitJoined(uuid()));
        EXPECT_EQ(Create(host(1), name).state, "done") << host(1).Diagnostics();
        std::this_thread::sleep_for(std::chrono::seconds(3));
        EXPECT_EQ(cluster_->LockspaceState(host(1)), "joined") << host(1).Diagnostics();
    }
};

/* `sdm detach P & sdm attach P`: the attach waits for the detach, lockspace leave
 * included, and joins the lockspace anew; it never answers with a lockspace about to go. */
TEST_F(LifecycleTest, AttachDuringDetachWaitsForIt)
{
    Background detach;
    ASSERT_NO_FATAL_FAILURE(Start(&detach, "DetachDomain", g_variant_new("(s)", root().c_str())));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    g_autoptr(GVariant) attached = host(1).OutOk("AttachDomain", g_variant_new("(s)", root().c_str()));
    detach.Wait();
    EXPECT_EQ(detach.error, "") << detach.message;
    EXPECT_EQ(Str(attached, "uuid"), uuid());
    ExpectWorking("after-detach");
}

/* Two attaches at once of a domain not attached join its lockspace once: the second finds
 * the first's (sanlock ended a join that a second handle left under it: add_lockspace
 * -201). */
TEST_F(LifecycleTest, AttachesAtOnceJoinOnce)
{
    g_autoptr(GVariant) detached = host(1).OutOk("DetachDomain", g_variant_new("(s)", uuid().c_str()));
    Background first, second;
    ASSERT_NO_FATAL_FAILURE(Start(&first, "AttachDomain", g_variant_new("(s)", root().c_str())));
    ASSERT_NO_FATAL_FAILURE(
        Start(&second, "AttachDomain", g_variant_new("(s)", (root() + "/").c_str())));
    first.Wait();
    second.Wait();
    EXPECT_EQ(first.error, "") << first.message;
    EXPECT_EQ(second.error, "") << second.message;
    ExpectWorking("after-two-attaches");
}

/* An attach that comes while the domain is being removed waits for the removal and then
 * finds no domain; a domain formatted anew at the same path is another one, attached
 * under its own uuid. */
TEST_F(LifecycleTest, AttachDuringRemoveFindsNoDomain)
{
    g_autoptr(GVariant) detached = host(1).OutOk("DetachDomain", g_variant_new("(s)", uuid().c_str()));
    Background remove;
    ASSERT_NO_FATAL_FAILURE(Start(&remove, "RemoveDomain", g_variant_new("(s)", root().c_str())));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::string message;
    EXPECT_EQ(CallError(host(1), "AttachDomain", g_variant_new("(s)", root().c_str()), &message),
              std::string(kErrorPrefix) + "NotFound")
        << message;
    remove.Wait();
    EXPECT_EQ(remove.error, "") << remove.message;
    g_autoptr(GVariant) listed = host(1).OutOk("ListDomains", nullptr);
    EXPECT_EQ(g_variant_n_children(listed), 0u) << "a removed domain stays attached";

    g_autoptr(GVariant) formatted = host(1).OutOk(
        "FormatDomain", g_variant_new("(s@a{sv})", root().c_str(),
                                      Opts({{"io_timeout", g_variant_new_uint32(1)}})));
    ASSERT_NE(formatted, nullptr);
    std::string fresh = Str(formatted, "uuid");
    EXPECT_NE(fresh, uuid());
    ASSERT_TRUE(host(1).Attach(root(), fresh));
    ASSERT_TRUE(host(1).WaitJoined(fresh));
    EXPECT_EQ(host(1)
                  .Job("CreateVolume", g_variant_new("(sst@a{sv})", fresh.c_str(), "fresh",
                                                     8 * kMiB, NoOptions()))
                  .state,
              "done");
}

/* Removing a domain gives its domain lease back before the lease area goes: sanlock
 * writes the release into that file. */
TEST_F(LifecycleTest, RemoveGivesTheDomainLeaseBackBeforeItsFile)
{
    ASSERT_EQ(Create(host(1), "gone").state, "done");
    host(1).Job("DeleteVolume", g_variant_new("(ss)", uuid().c_str(), "gone"));
    g_autoptr(GVariant) detached = host(1).OutOk("DetachDomain", g_variant_new("(s)", uuid().c_str()));
    g_autoptr(GVariant) removed = host(1).OutOk("RemoveDomain", g_variant_new("(s)", root().c_str()));
    std::string log = host(1).daemon().Log();
    EXPECT_EQ(log.find("sanlock_release"), std::string::npos) << log;
    struct stat st;
    EXPECT_NE(stat((root() + "/" + layout::kLeases).c_str(), &st), 0) << "the lease area stays";
}

/* An sdmd that stops leaves the lockspace as it goes; the next one, started at once,
 * waits for that leave and joins again instead of failing or finding a lockspace that is
 * about to go. */
TEST_F(LifecycleTest, RestartedSdmdJoinsAgain)
{
    ASSERT_EQ(host(1).daemon().Stop(), 0) << host(1).Diagnostics();
    ASSERT_TRUE(host(1).StartSdmd());
    ASSERT_TRUE(host(1).Attach(root(), uuid()));
    ExpectWorking("after-restart");
}

/* `sdm hosts` prints a host's timestamp as sanlock gives it, seconds of that host's
 * monotonic clock, not as a date in 1970. */
TEST_F(LifecycleTest, SdmHostsPrintsTimestampsNotDates)
{
    CommandResult r =
        sdm::testing::Run({SdmPath(), "--socket", host(1).daemon().socket(), "hosts", uuid()});
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(r.out.find("1970"), std::string::npos) << r.out;
    g_autoptr(GVariant) hosts = host(1).OutOk("ListHosts", g_variant_new("(s)", uuid().c_str()));
    ASSERT_NE(hosts, nullptr);
    guint64 id, generation, timestamp;
    const char *state;
    g_variant_get_child(hosts, 0, "(tt&st)", &id, &generation, &state, &timestamp);
    /* The timestamp of a later renewal may have replaced the one printed. */
    std::string printed = r.out.substr(r.out.find('\n') + 1);
    size_t last = printed.find_last_of(' ');
    ASSERT_NE(last, std::string::npos) << r.out;
    uint64_t shown = std::stoull(printed.substr(last + 1));
    EXPECT_LE(shown, timestamp) << r.out;
    EXPECT_GT(shown + 60, timestamp) << r.out;
}

/* Host 1 dies (its sdmd and its sanlock daemon killed) in the middle of a clone, holding
 * the new volume's lease; hosts 2 and 3 live on. Common to the tests of how a dead host's
 * garbage waits for its leases. */
class DeadHostTest : public HostsTest {
protected:
    /* Three hosts, a volume "source", and host 1 killed while it copies "victim". */
    void KillHostOneInAClone()
    {
        std::string stuck = tmp_.Sub("stuck-qemu-img");
        std::string stuck_pid = tmp_.Sub("stuck.pid");
        WriteFile(stuck, "#!/bin/sh\n"
                         "if [ \"$1\" = convert ]; then echo $$ > " + stuck_pid +
                         "; exec sleep 300; fi\n"
                         "exec qemu-img \"$@\"\n");
        ASSERT_EQ(chmod(stuck.c_str(), 0755), 0);
        ASSERT_NO_FATAL_FAILURE(StartHosts(3, "", {"SDM_QEMU_IMG=" + stuck}));
        ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
        ASSERT_EQ(Create(host(1), "source").state, "done");
        JobOutcome clone;
        ASSERT_TRUE(cluster_->CloneUntilCopying(host(1), "source", "victim", &clone));
        host(1).Die();
        pid_t copier = std::atoi(ReadFile(stuck_pid).c_str());
        if (copier > 0)
            kill(copier, SIGKILL);
    }

    /* One sweep on host 3: {collected, live}, with no errors. */
    std::pair<uint32_t, uint32_t> Sweep()
    {
        SweepReport report = cluster_->Sweep(host(3));
        EXPECT_TRUE(report.ok) << report.error;
        EXPECT_EQ(report.errors, 0u) << host(3).Diagnostics();
        return {report.collected, report.live};
    }

    /* The half-made volume is gone, and with it every trace of the clone. */
    void ExpectOnlySource()
    {
        EXPECT_EQ(cluster_->VolumeNames(host(3)), std::vector<std::string>{"source"});
        ASSERT_NO_FATAL_FAILURE(ExpectConsistent(host(3)));
    }
};

/* Host 3's collector leaves the half-made volume alone while host 1's host lease stands,
 * and collects it once an administrator releases host 1's id. */
TEST_F(DeadHostTest, GarbageWaitsForReleaseId)
{
    ASSERT_NO_FATAL_FAILURE(KillHostOneInAClone());
    auto [kept, live] = Sweep();
    EXPECT_EQ(kept, 0u) << "collected while host 1's lease stands";
    EXPECT_GE(live, 1u);

    EXPECT_EQ(ReleaseHostId(cluster_->lockspace(), 1, cluster_->ids_path()), "");
    auto [collected, still_live] = Sweep();
    EXPECT_GE(collected, 1u) << host(3).Diagnostics();
    EXPECT_EQ(still_live, 0u);
    ExpectOnlySource();
}

/* The slow group (meson -Dslow_tests=true, suite 'slow'): nobody releases host 1's id, so
 * its leases expire by themselves, about 8 x io_timeout + 60 s after its last renewal.
 * Until then every sweep leaves the garbage alone. */
class DeadHostSlow : public DeadHostTest {};

TEST_F(DeadHostSlow, GarbageWaitsForTheLeaseToExpire)
{
    constexpr auto kLimit = std::chrono::seconds(240);
    constexpr auto kInterval = std::chrono::seconds(2);
    ASSERT_NO_FATAL_FAILURE(KillHostOneInAClone());
    auto start = std::chrono::steady_clock::now();
    auto [kept, live] = Sweep();
    ASSERT_EQ(kept, 0u) << "collected while host 1's lease stands";
    EXPECT_GE(live, 1u);

    int sweeps = 1;
    uint32_t collected = 0;
    while (collected == 0 && std::chrono::steady_clock::now() - start < kLimit) {
        std::this_thread::sleep_for(kInterval);
        auto [swept, still_live] = Sweep();
        collected = swept;
        sweeps++;
        if (collected == 0) {
            ASSERT_GE(still_live, 1u) << "the garbage is neither live nor collected";
        }
    }
    auto waited = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::steady_clock::now() - start);
    ASSERT_GE(collected, 1u) << "host 1's leases did not expire within "
                             << kLimit.count() << " s\n" << host(3).Diagnostics();
    printf("host 1's garbage was collected %lld s after it died, by sweep %d (io_timeout 1)\n",
           static_cast<long long>(waited.count()), sweeps);
    ExpectOnlySource();
}

/* The keys this backend brings refuse bad values, naming the line and the key. */
TEST(HostsConfig, BadSanlockKeysExitTwo)
{
    TempDir tmp;
    struct Case {
        std::string line;
        std::string says;
    } cases[] = {
        {"lease_backend=sanlocks", "lease_backend: 'sanlocks' is not a lease backend"},
        {"sanlock_run_dir=run/sanlock", "sanlock_run_dir: give"},
        {"domain_lease_linger_ms=200", "domain_lease_linger_ms: no longer used"},
    };
    std::string path = tmp.Sub("bad.conf");
    for (const auto &c : cases) {
        WriteFile(path, "# sdmd test\n[sdmd]\n" + c.line + "\n");
        CommandResult r = sdm::testing::Run({SdmdPath(), "--foreground", "--config", path});
        EXPECT_EQ(r.exit_code, 2) << c.line << ": " << r.out;
        EXPECT_NE(r.out.find(path + ":3: " + c.says), std::string::npos)
            << c.line << ": " << r.out;
    }
}

}  // namespace
}  // namespace sdm::testing
