/* sdmd on sanlock leases: a real sdmd with lease_backend=sanlock, talking to a private
 * sanlock daemon (tests/support/sanlock_harness.h) through sanlock_run_dir. Formatting
 * writes the lockspace and lease areas; attaching joins the lockspace in the background
 * and `joined` reports it; volume operations, ListHosts and GetLeaseXml then work on real
 * sanlock leases. DeadHostSlow waits for a dead host's leases to expire (~70 s); meson
 * registers it only with -Dslow_tests=true. Needs root (the sanlock daemons do); skipped
 * otherwise. Single-threaded like the harnesses it uses. */
#include <sys/stat.h>
#include <csignal>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backend/engine/layout.h"
#include "sdm/types.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/sanlock_harness.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr char kErrorPrefix[] = "org.libvirt.Sdm1.Error.";

GVariant *NoOptions()
{
    return g_variant_new_array(G_VARIANT_TYPE("{sv}"), nullptr, 0);
}

bool Bool(GVariant *dict, const char *key)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_BOOLEAN);
    return value && g_variant_get_boolean(value);
}

/* One simulated host: a private sanlock daemon and an sdmd using it with `host_id`. */
class Host {
public:
    Host(uint32_t host_id, const std::string &backend, const std::vector<std::string> &env)
        : host_id_(host_id), sanlock_("host-" + std::to_string(host_id))
    {
        started_ = daemon_.Start("lease_backend=" + backend + "\nhost_id=" +
                                 std::to_string(host_id) + "\nsanlock_run_dir=" +
                                 sanlock_.run_dir() + "\n",
                                 env);
        g_autoptr(GError) error = nullptr;
        if (started_)
            conn_ = daemon_.Connect(&error);
    }

    ~Host()
    {
        if (conn_) {
            g_dbus_connection_close_sync(conn_, nullptr, nullptr);
            g_object_unref(conn_);
        }
        if (daemon_.running()) {
            EXPECT_EQ(daemon_.Stop(), 0) << daemon_.Log();
        }
    }

    ::testing::AssertionResult Ready() const
    {
        if (!started_)
            return started_;
        if (!conn_)
            return ::testing::AssertionFailure() << "cannot connect to sdmd " << host_id_;
        return ::testing::AssertionSuccess();
    }

    /* The first out-argument of a call that must succeed (null after a failure, and for
     * a method without out-arguments). */
    GVariant *Out(const char *method, GVariant *args)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply = Call(conn_, method, args, &error);
        EXPECT_NE(reply, nullptr) << "host " << host_id_ << ": " << method << ": "
                                  << (error ? error->message : "") << "\n"
                                  << daemon_.Log();
        return reply && g_variant_n_children(reply) > 0 ? g_variant_get_child_value(reply, 0)
                                                        : nullptr;
    }

    std::string CallError(const char *method, GVariant *args)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply = Call(conn_, method, args, &error);
        last_message_ = error ? error->message : "";
        return reply ? "<succeeded>" : ErrorName(error);
    }

    /* Submits with `method`; the job id ("" after a failure). */
    std::string Submit(const char *method, GVariant *args)
    {
        g_autoptr(GVariant) id = Out(method, args);
        return id ? g_variant_get_string(id, nullptr) : "";
    }

    /* Waits for a job; its final dictionary. */
    GVariant *Wait(const std::string &id)
    {
        return Out("WaitJob", g_variant_new("(su)", id.c_str(), 120000u));
    }

    /* Runs a job that must succeed; its result. */
    GVariant *Job(const char *method, GVariant *args)
    {
        std::string id = Submit(method, args);
        if (id.empty())
            return nullptr;
        g_autoptr(GVariant) job = Wait(id);
        EXPECT_EQ(Str(job, "state"), "done") << "host " << host_id_ << ": " << method << ": "
                                             << Str(job, "error_message");
        return job ? g_variant_lookup_value(job, "result", G_VARIANT_TYPE_VARDICT) : nullptr;
    }

    bool WaitJoined(const std::string &uuid)
    {
        return SpinUntil([&] {
            g_autoptr(GVariant) domain = Out("GetDomain", g_variant_new("(s)", uuid.c_str()));
            return Bool(domain, "joined");
        });
    }

    std::vector<std::string> VolumeNames(const std::string &uuid)
    {
        std::vector<std::string> names;
        g_autoptr(GVariant) volumes = Out("ListVolumes", g_variant_new("(s)", uuid.c_str()));
        for (size_t i = 0; volumes && i < g_variant_n_children(volumes); i++) {
            g_autoptr(GVariant) v = g_variant_get_child_value(volumes, i);
            names.push_back(Str(v, "name"));
        }
        std::sort(names.begin(), names.end());
        return names;
    }

    std::string Diagnostics() const { return daemon_.Log() + sanlock_.OutputTail(); }
    SanlockDaemon &sanlock() { return sanlock_; }
    DaemonHarness &daemon() { return daemon_; }
    const std::string &last_message() const { return last_message_; }

private:
    uint32_t host_id_;
    SanlockDaemon sanlock_;
    TempDir dir_;
    DaemonHarness daemon_{dir_.path()};
    ::testing::AssertionResult started_ = ::testing::AssertionFailure();
    GDBusConnection *conn_ = nullptr;
    std::string last_message_;
};

class HostsTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
        root_ = tmp_.Sub("domain");
        ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    }

    /* Starts hosts 1..count, each with its sanlock daemon and sdmd. */
    void StartHosts(int count, const std::string &backend = "sanlock",
                    const std::vector<std::string> &env = {})
    {
        for (int id = 1; id <= count; id++) {
            try {
                hosts_.push_back(std::make_unique<Host>(id, backend, env));
            } catch (const std::exception &e) {
                FAIL() << "cannot start host " << id << ": " << e.what();
            }
            ASSERT_TRUE(hosts_.back()->Ready());
        }
    }

    Host &host(int id) { return *hosts_.at(id - 1); }

    /* Host 1 formats the domain with io_timeout 1; every host attaches it and joins. */
    void FormatAndAttach()
    {
        GVariantBuilder options;
        g_variant_builder_init(&options, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&options, "{sv}", "io_timeout", g_variant_new_uint32(1));
        g_autoptr(GVariant) formatted =
            host(1).Out("FormatDomain", g_variant_new("(s@a{sv})", root_.c_str(),
                                                      g_variant_builder_end(&options)));
        ASSERT_NE(formatted, nullptr);
        uuid_ = Str(formatted, "uuid");
        lockspace_ = Str(formatted, "lockspace");
        alignment_ = U64(formatted, "alignment");
        for (auto &h : hosts_) {
            g_autoptr(GVariant) attached =
                h->Out("AttachDomain", g_variant_new("(s)", root_.c_str()));
            ASSERT_NE(attached, nullptr);
            ASSERT_EQ(Str(attached, "uuid"), uuid_);
        }
        for (auto &h : hosts_)
            ASSERT_TRUE(h->WaitJoined(uuid_)) << h->Diagnostics();
    }

    GVariant *Create(Host &h, const std::string &name)
    {
        return h.Job("CreateVolume", g_variant_new("(sst@a{sv})", uuid_.c_str(), name.c_str(),
                                                   8 * kMiB, NoOptions()));
    }

    GVariant *CloneArgs(const std::string &source, const std::string &name)
    {
        return g_variant_new("(sss@a{sv})", uuid_.c_str(), source.c_str(), name.c_str(),
                             NoOptions());
    }

    /* CheckDomain on `h` finds no problem and no pending transaction. */
    void ExpectConsistent(Host &h)
    {
        g_autoptr(GVariant) check = h.Out("CheckDomain", g_variant_new("(s)", uuid_.c_str()));
        ASSERT_NE(check, nullptr);
        g_autoptr(GVariant) problems =
            g_variant_lookup_value(check, "problems", G_VARIANT_TYPE_STRING_ARRAY);
        ASSERT_NE(problems, nullptr);
        std::string all;
        for (size_t i = 0; i < g_variant_n_children(problems); i++) {
            g_autoptr(GVariant) p = g_variant_get_child_value(problems, i);
            all += std::string(g_variant_get_string(p, nullptr)) + "\n";
        }
        EXPECT_EQ(all, "");
        g_autoptr(GVariant) pending = g_variant_lookup_value(check, "pending", nullptr);
        ASSERT_NE(pending, nullptr);
        EXPECT_EQ(g_variant_get_uint32(pending), 0u);
    }

    /* Median wall time of `count` creates through D-Bus on host 1, in milliseconds. */
    double CreateMedianMs(int count)
    {
        std::vector<double> times;
        for (int i = 0; i < count; i++) {
            auto start = std::chrono::steady_clock::now();
            g_autoptr(GVariant) made = Create(host(1), "bench" + std::to_string(i));
            times.push_back(std::chrono::duration<double, std::milli>(
                                std::chrono::steady_clock::now() - start)
                                .count());
        }
        std::sort(times.begin(), times.end());
        return times[times.size() / 2];
    }

    TempDir tmp_;
    std::string root_;
    std::string uuid_;
    std::string lockspace_;
    uint64_t alignment_ = 0;
    std::vector<std::unique_ptr<Host>> hosts_;
};

TEST_F(HostsTest, OneHostOnSanlockLeases)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    Host &h = host(1);
    const char *d = uuid_.c_str();

    g_autoptr(GVariant) made = Create(h, "disk1");
    ASSERT_NE(made, nullptr);
    g_autoptr(GVariant) cloned = h.Job("CloneVolume", CloneArgs("disk1", "disk2"));
    ASSERT_NE(cloned, nullptr);
    EXPECT_NE(U64(cloned, "slot"), U64(made, "slot")) << "two volumes share a lease slot";
    g_autoptr(GVariant) deleted = h.Job("DeleteVolume", g_variant_new("(ss)", d, "disk2"));
    EXPECT_EQ(h.VolumeNames(uuid_), std::vector<std::string>{"disk1"});

    g_autoptr(GVariant) hosts = h.Out("ListHosts", g_variant_new("(s)", d));
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

    g_autoptr(GVariant) xml = h.Out("GetLeaseXml", g_variant_new("(ss)", d, "disk1"));
    ASSERT_NE(xml, nullptr);
    std::string text = g_variant_get_string(xml, nullptr);
    uint64_t slot = U64(made, "slot");
    EXPECT_NE(text.find("<lockspace>" + lockspace_ + "</lockspace>"), std::string::npos)
        << text;
    EXPECT_NE(text.find("<key>v" + std::to_string(slot) + "</key>"), std::string::npos)
        << text;
    EXPECT_NE(text.find("path='" + root_ + "/" + layout::kLeases + "' offset='" +
                        std::to_string(layout::LeaseOffset(slot, alignment_)) + "'"),
              std::string::npos)
        << text;
    EXPECT_EQ(h.CallError("GetLeaseXml", g_variant_new("(ss)", d, "nosuch")),
              std::string(kErrorPrefix) + "NotFound")
        << h.last_message();

    g_autoptr(GVariant) detached = h.Out("DetachDomain", g_variant_new("(s)", d));
    g_autoptr(GVariant) again = h.Out("AttachDomain", g_variant_new("(s)", root_.c_str()));
    EXPECT_TRUE(h.WaitJoined(uuid_)) << h.Diagnostics();
    g_autoptr(GVariant) after = Create(h, "disk3");
    EXPECT_NE(after, nullptr) << "the domain works again after detach and attach";
    ExpectConsistent(h);
}

/* Three hosts share one domain: what one makes the others see, a lease held by a VM on
 * one host stops a clone on another, and creates, clones and deletes from all three at
 * once never give one lease slot to two volumes and leave the domain consistent. */
TEST_F(HostsTest, ThreeHostsShareADomain)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(3));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());

    g_autoptr(GVariant) base = Create(host(1), "base");
    ASSERT_NE(base, nullptr);
    EXPECT_EQ(host(2).VolumeNames(uuid_), std::vector<std::string>{"base"});
    EXPECT_EQ(host(3).VolumeNames(uuid_), std::vector<std::string>{"base"});

    /* A stand-in for libvirt's sanlock lock manager on host 1: holds base's lease. It
     * ends by SIGKILL, as a VM's process does, so that its daemon drops the lease but the
     * lockspace, which it shares with host 1's sdmd, stays (a helper that ends normally
     * leaves the lockspace under sdmd's feet). */
    std::string stop = tmp_.Sub("release-base");
    std::string output = tmp_.Sub("holder.out");
    std::string pid_file = tmp_.Sub("holder.pid");
    const char *helper = std::getenv("SDM_SANLOCK_HOST_HELPER");
    ASSERT_NE(helper, nullptr) << "SDM_SANLOCK_HOST_HELPER is not set";
    std::string script = "{ echo join 60000; echo acquire " +
                         std::to_string(U64(base, "slot")) +
                         " ex 0; while [ ! -e " + stop + " ]; do sleep 0.1; done; } | " +
                         helper + " " + lockspace_ + " " + root_ + "/" + layout::kIds + " " +
                         root_ + "/" + layout::kLeases + " 1 1 & echo $! > " + pid_file +
                         "; wait";
    pid_t holder = Spawn({"/bin/sh", "-c", script}, output, {host(1).sanlock().env()});
    ASSERT_GT(holder, 0);
    bool held = SpinUntil([&] {
        std::string text = ReadFile(output);
        return text.find("ok\n") != std::string::npos || text.find("error") != std::string::npos;
    });
    std::string replies = ReadFile(output);
    EXPECT_TRUE(held && replies.find("error") == std::string::npos) << replies;

    std::string id = host(2).Submit("CloneVolume", CloneArgs("base", "copy"));
    g_autoptr(GVariant) job = host(2).Wait(id);
    EXPECT_EQ(Str(job, "state"), "failed");
    EXPECT_EQ(Str(job, "error_code"), "busy") << Str(job, "error_message");
    EXPECT_NE(Str(job, "error_message").find("host 1"), std::string::npos)
        << "the message names the holder: " << Str(job, "error_message");
    EXPECT_EQ(host(2).VolumeNames(uuid_), std::vector<std::string>{"base"});
    ASSERT_NO_FATAL_FAILURE(ExpectConsistent(host(3)));

    pid_t helper_pid = std::atoi(ReadFile(pid_file).c_str());
    ASSERT_GT(helper_pid, 0) << ReadFile(pid_file);
    ASSERT_EQ(kill(helper_pid, SIGKILL), 0);
    WriteFile(stop, "");
    WaitExit(holder);

    /* All three at once, in waves: each host creates a volume, clones base and deletes a
     * volume the next host made in an earlier wave, all submitted before any is waited
     * for. A job may fail only with busy; what is on storage afterwards is exactly what
     * the jobs that succeeded say. */
    constexpr int kWaves = 5;
    struct Pending {
        int host;
        std::string kind;
        std::string name;
        std::string job;
    };
    std::set<std::string> expected = {"base"};
    std::vector<std::string> made[4]; /* by host id: its volumes not yet given to a delete */
    int done = 0, deletes_done = 0, submitted = 0;
    std::string busy_sample;
    for (int wave = 0; wave < kWaves; wave++) {
        std::vector<Pending> jobs;
        for (int id = 1; id <= 3; id++) {
            std::string tag = "h" + std::to_string(id) + "w" + std::to_string(wave);
            jobs.push_back({id, "create", "new-" + tag,
                            host(id).Submit("CreateVolume",
                                            g_variant_new("(sst@a{sv})", uuid_.c_str(),
                                                          ("new-" + tag).c_str(), 4 * kMiB,
                                                          NoOptions()))});
            jobs.push_back({id, "clone", "clone-" + tag,
                            host(id).Submit("CloneVolume", CloneArgs("base", "clone-" + tag))});
            std::vector<std::string> &theirs = made[id % 3 + 1];
            if (!theirs.empty()) {
                std::string victim = theirs.front();
                theirs.erase(theirs.begin());
                jobs.push_back({id, "delete", victim,
                                host(id).Submit("DeleteVolume",
                                                g_variant_new("(ss)", uuid_.c_str(),
                                                              victim.c_str()))});
            }
        }
        for (const auto &j : jobs) {
            ASSERT_FALSE(j.job.empty()) << "host " << j.host << " refused " << j.kind << " "
                                        << j.name;
            submitted++;
            g_autoptr(GVariant) finished = host(j.host).Wait(j.job);
            std::string state = Str(finished, "state");
            if (state != "done") {
                EXPECT_EQ(state, "failed");
                EXPECT_EQ(Str(finished, "error_code"), "busy")
                    << "host " << j.host << ": " << j.kind << " " << j.name << ": "
                    << Str(finished, "error_message");
                busy_sample = Str(finished, "error_message");
                if (j.kind == "delete")
                    made[j.host % 3 + 1].push_back(j.name); /* still there: delete it later */
                continue;
            }
            done++;
            if (j.kind == "delete") {
                deletes_done++;
                expected.erase(j.name);
            } else {
                expected.insert(j.name);
                made[j.host].push_back(j.name);
            }
        }
    }
    EXPECT_GT(deletes_done, 0) << "no delete got through";

    std::vector<std::string> names(expected.begin(), expected.end());
    for (int id = 1; id <= 3; id++)
        EXPECT_EQ(host(id).VolumeNames(uuid_), names) << "host " << id;
    g_autoptr(GVariant) volumes = host(3).Out("ListVolumes", g_variant_new("(s)", uuid_.c_str()));
    ASSERT_NE(volumes, nullptr);
    std::set<uint64_t> slots;
    for (size_t i = 0; i < g_variant_n_children(volumes); i++) {
        g_autoptr(GVariant) v = g_variant_get_child_value(volumes, i);
        std::string name = Str(v, "name");
        EXPECT_TRUE(slots.insert(U64(v, "slot")).second)
            << "slot " << U64(v, "slot") << " is used twice (" << name << ")";
        EXPECT_EQ(Str(v, "legality"), LegalityName(Legality::kLegal)) << name;
        struct stat st;
        ASSERT_EQ(stat(Str(v, "path").c_str(), &st), 0) << name << ": " << Str(v, "path");
        EXPECT_EQ(static_cast<uint64_t>(st.st_size), U64(v, "capacity")) << name;
    }
    printf("parallel from three hosts: %d of %d jobs done (%d deletes), the others busy (%s)\n",
           done, submitted, deletes_done, busy_sample.c_str());
    for (int id = 1; id <= 3; id++)
        ASSERT_NO_FATAL_FAILURE(ExpectConsistent(host(id)));
    g_autoptr(GVariant) swept =
        host(2).Out("CollectGarbage", g_variant_new("(sb)", uuid_.c_str(), FALSE));
    ASSERT_NE(swept, nullptr);
    EXPECT_EQ(U32(swept, "collected"), 0u) << "the jobs left garbage behind";
    EXPECT_EQ(U32(swept, "errors"), 0u);
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
        ASSERT_NO_FATAL_FAILURE(StartHosts(3, "sanlock", {"SDM_QEMU_IMG=" + stuck}));
        ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
        g_autoptr(GVariant) source = Create(host(1), "source");
        ASSERT_NE(source, nullptr);

        GVariantBuilder qcow2;
        g_variant_builder_init(&qcow2, G_VARIANT_TYPE_VARDICT);
        g_variant_builder_add(&qcow2, "{sv}", "format", g_variant_new_string("qcow2"));
        std::string id = host(1).Submit(
            "CloneVolume", g_variant_new("(sss@a{sv})", uuid_.c_str(), "source", "victim",
                                         g_variant_builder_end(&qcow2)));
        ASSERT_FALSE(id.empty());
        ASSERT_TRUE(SpinUntil([&] {
            g_autoptr(GVariant) job = host(1).Out("GetJob", g_variant_new("(s)", id.c_str()));
            return Str(job, "step") == "clone.copy";
        })) << host(1).Diagnostics();
        host(1).daemon().Kill();
        host(1).sanlock().Kill();
        pid_t copier = std::atoi(ReadFile(stuck_pid).c_str());
        if (copier > 0)
            kill(copier, SIGKILL);
    }

    /* One sweep on host 3: {collected, live}, with no errors. */
    std::pair<uint32_t, uint32_t> Sweep()
    {
        g_autoptr(GVariant) report =
            host(3).Out("CollectGarbage", g_variant_new("(sb)", uuid_.c_str(), FALSE));
        EXPECT_NE(report, nullptr);
        if (!report)
            return {0, 0};
        EXPECT_EQ(U32(report, "errors"), 0u) << host(3).Diagnostics();
        return {U32(report, "collected"), U32(report, "live")};
    }

    /* The half-made volume is gone, and with it every trace of the clone. */
    void ExpectOnlySource()
    {
        EXPECT_EQ(host(3).VolumeNames(uuid_), std::vector<std::string>{"source"});
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

    EXPECT_EQ(ReleaseHostId(lockspace_, 1, root_ + "/" + layout::kIds), "");
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
        {"domain_lease_linger_ms=soon", "domain_lease_linger_ms: 'soon' is not a whole number"},
        {"domain_lease_linger_ms=60001",
         "domain_lease_linger_ms: '60001' is not a whole number from 0 to 60000"},
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

/* Not an assertion on speed: prints the median create time with each lease backend. */
TEST_F(HostsTest, CreateMedianSanlockAgainstLocal)
{
    constexpr int kCreates = 15;
    ASSERT_NO_FATAL_FAILURE(StartHosts(1));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    double sanlock = CreateMedianMs(kCreates);
    hosts_.clear();

    root_ = tmp_.Sub("local-domain");
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(StartHosts(1, "local"));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    double local = CreateMedianMs(kCreates);
    printf("create via D-Bus, median of %d: sanlock leases %.1f ms, local leases %.1f ms\n",
           kCreates, sanlock, local);
    RecordProperty("create_p50_sanlock_ms", std::to_string(sanlock));
    RecordProperty("create_p50_local_ms", std::to_string(local));
}

}  // namespace
}  // namespace sdm::testing
