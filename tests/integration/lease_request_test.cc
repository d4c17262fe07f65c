/* The domain lease handed over on request, and a lost lockspace, with real sanlock daemons
 * and real sdmd processes (one of each per simulated host, tests/support/).
 *
 * Hosts keep the domain lease for a linger of 60 s (the configuration's maximum) after
 * their last operation, twice the 30 s another host's operation waits for it: without
 * sanlock's request mechanism the second host's operation fails busy. With it, the
 * holder gives the lease back when asked: at once when idle, after its operation when
 * busy. Printed figures (how long the asker waited) are measurements, not assertions.
 * A host whose lockspace vanishes or stops being renewed refuses metadata operations,
 * says so in its domain status and log, and exits at once, without cleaning up, when
 * sanlock ends it. Needs root (the sanlock daemons do); skipped otherwise.
 * Single-threaded like the harnesses it uses. */
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "backend/engine/layout.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/sanlock_harness.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
constexpr char kLongLinger[] = "domain_lease_linger_ms=60000\n";
/* sdmd's exit status after sanlock fenced it (backend/daemon/main.cc). */
constexpr int kExitFenced = 3;

GVariant *NoOptions()
{
    return g_variant_new_array(G_VARIANT_TYPE("{sv}"), nullptr, 0);
}

double SecondsSince(std::chrono::steady_clock::time_point start)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

/* One simulated host: a private sanlock daemon and an sdmd on sanlock leases. */
class Host {
public:
    Host(uint32_t host_id, const std::string &config, const std::vector<std::string> &env)
        : host_id_(host_id), sanlock_("host-" + std::to_string(host_id))
    {
        started_ = daemon_.Start("lease_backend=sanlock\nhost_id=" + std::to_string(host_id) +
                                     "\nsanlock_run_dir=" + sanlock_.run_dir() + "\n" + config,
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

    /* The first out-argument of a call that must succeed (null after a failure). */
    GVariant *Out(const char *method, GVariant *args)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GVariant) reply = Call(conn_, method, args, &error);
        EXPECT_NE(reply, nullptr) << "host " << host_id_ << ": " << method << ": "
                                  << (error ? error->message : "") << "\n"
                                  << Diagnostics();
        return reply ? g_variant_get_child_value(reply, 0) : nullptr;
    }

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

    std::string Step(const std::string &id)
    {
        g_autoptr(GVariant) job = Out("GetJob", g_variant_new("(s)", id.c_str()));
        return Str(job, "step");
    }

    std::string DomainKey(const std::string &uuid, const char *key)
    {
        g_autoptr(GVariant) domain = Out("GetDomain", g_variant_new("(s)", uuid.c_str()));
        return Str(domain, key);
    }

    bool WaitJoined(const std::string &uuid)
    {
        return SpinUntil([&] { return DomainKey(uuid, "lockspace_state") == "joined"; });
    }

    std::string Diagnostics() const { return daemon_.Log() + sanlock_.OutputTail(); }
    SanlockDaemon &sanlock() { return sanlock_; }
    DaemonHarness &daemon() { return daemon_; }

private:
    uint32_t host_id_;
    SanlockDaemon sanlock_;
    TempDir dir_;
    DaemonHarness daemon_{dir_.path()};
    ::testing::AssertionResult started_ = ::testing::AssertionFailure();
    GDBusConnection *conn_ = nullptr;
};

class LeaseRequestTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
        root_ = tmp_.Sub("domain");
        ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
    }

    void StartHost(const std::string &config, const std::vector<std::string> &env = {})
    {
        uint32_t id = static_cast<uint32_t>(hosts_.size()) + 1;
        try {
            hosts_.push_back(std::make_unique<Host>(id, config, env));
        } catch (const std::exception &e) {
            FAIL() << "cannot start host " << id << ": " << e.what();
        }
        ASSERT_TRUE(hosts_.back()->Ready());
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
        for (auto &h : hosts_) {
            g_autoptr(GVariant) attached =
                h->Out("AttachDomain", g_variant_new("(s)", root_.c_str()));
            ASSERT_NE(attached, nullptr);
        }
        for (auto &h : hosts_)
            ASSERT_TRUE(h->WaitJoined(uuid_)) << h->Diagnostics();
    }

    GVariant *CreateArgs(const std::string &name)
    {
        return g_variant_new("(sst@a{sv})", uuid_.c_str(), name.c_str(), 4 * kMiB, NoOptions());
    }

    /* Runs a create on `h` and returns its final job dictionary. */
    GVariant *Create(Host &h, const std::string &name)
    {
        std::string id = h.Submit("CreateVolume", CreateArgs(name));
        return id.empty() ? nullptr : h.Wait(id);
    }

    TempDir tmp_;
    std::string root_;
    std::string uuid_;
    std::string lockspace_;
    std::vector<std::unique_ptr<Host>> hosts_;
};

/* Host 1 lingers on the domain lease, idle; host 2's create asks for it and gets it long
 * before either the linger or its own 30 s lock timeout ends. */
TEST_F(LeaseRequestTest, IdleHolderGivesTheDomainLeaseBackAtOnce)
{
    ASSERT_NO_FATAL_FAILURE(StartHost(kLongLinger));
    ASSERT_NO_FATAL_FAILURE(StartHost(kLongLinger));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());

    g_autoptr(GVariant) first = Create(host(1), "first");
    ASSERT_EQ(Str(first, "state"), "done") << Str(first, "error_message");

    auto start = std::chrono::steady_clock::now();
    g_autoptr(GVariant) second = Create(host(2), "second");
    double waited = SecondsSince(start);
    EXPECT_EQ(Str(second, "state"), "done")
        << Str(second, "error_message") << "\n" << host(1).Diagnostics();
    printf("host 2's create while host 1 lingered idle on the domain lease: %.2f s\n", waited);
    RecordProperty("idle_request_served_s", std::to_string(waited));

    /* And back: host 2 lingers now, host 1 asks. */
    start = std::chrono::steady_clock::now();
    g_autoptr(GVariant) third = Create(host(1), "third");
    waited = SecondsSince(start);
    EXPECT_EQ(Str(third, "state"), "done")
        << Str(third, "error_message") << "\n" << host(2).Diagnostics();
    printf("host 1's create while host 2 lingered idle: %.2f s\n", waited);
}

/* Host 1 is in the middle of a clone when host 2 asks: the lease comes back as soon as
 * the clone ends, not a linger later, and the clone itself is not disturbed. */
TEST_F(LeaseRequestTest, BusyHolderGivesItBackWhenItsOperationEnds)
{
    std::string gate = tmp_.Sub("copy-may-finish");
    std::string slow = tmp_.Sub("slow-qemu-img");
    WriteFile(slow, "#!/bin/sh\n"
                    "if [ \"$1\" = convert ]; then\n"
                    "  while [ ! -e " + gate + " ]; do sleep 0.1; done\n"
                    "fi\n"
                    "exec qemu-img \"$@\"\n");
    ASSERT_EQ(chmod(slow.c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(StartHost(kLongLinger, {"SDM_QEMU_IMG=" + slow}));
    ASSERT_NO_FATAL_FAILURE(StartHost(kLongLinger));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    g_autoptr(GVariant) source = Create(host(1), "source");
    ASSERT_EQ(Str(source, "state"), "done") << Str(source, "error_message");

    GVariantBuilder qcow2;
    g_variant_builder_init(&qcow2, G_VARIANT_TYPE_VARDICT);
    g_variant_builder_add(&qcow2, "{sv}", "format", g_variant_new_string("qcow2"));
    std::string clone = host(1).Submit(
        "CloneVolume", g_variant_new("(sss@a{sv})", uuid_.c_str(), "source", "copy",
                                     g_variant_builder_end(&qcow2)));
    ASSERT_FALSE(clone.empty());
    ASSERT_TRUE(SpinUntil([&] { return host(1).Step(clone) == "clone.copy"; }))
        << host(1).Diagnostics();

    std::string create = host(2).Submit("CreateVolume", CreateArgs("asker"));
    ASSERT_FALSE(create.empty());
    /* The request reaches host 1 within about 4 x io_timeout + 3 s; let the clone run
     * past that, so that host 1 learns of it while busy. */
    std::this_thread::sleep_for(std::chrono::seconds(8));
    EXPECT_EQ(host(2).Step(create), "create.begin")
        << "host 2 got the domain lease while host 1's clone held it";
    auto released = std::chrono::steady_clock::now();
    WriteFile(gate, "");

    g_autoptr(GVariant) cloned = host(1).Wait(clone);
    EXPECT_EQ(Str(cloned, "state"), "done") << Str(cloned, "error_message");
    g_autoptr(GVariant) created = host(2).Wait(create);
    double waited = SecondsSince(released);
    EXPECT_EQ(Str(created, "state"), "done")
        << Str(created, "error_message") << "\n" << host(1).Diagnostics();
    printf("host 2's create ended %.2f s after host 1's clone was let finish\n", waited);
    RecordProperty("busy_request_served_s", std::to_string(waited));
}

class LockspaceLossTest : public LeaseRequestTest {
protected:
    std::string IdsPath() const { return root_ + "/" + layout::kIds; }

    /* Waits until host 1 reports `state` for the domain. */
    bool WaitState(const std::string &state)
    {
        return SpinUntil([&] { return host(1).DomainKey(uuid_, "lockspace_state") == state; });
    }
};

/* The lockspace vanishes under an idle sdmd (an administrator removes it; sanlock does
 * the same after failed renewals): sdmd notices, says so, refuses operations, and a stop
 * then exits at once. */
TEST_F(LockspaceLossTest, VanishedLockspaceStopsOperations)
{
    ASSERT_NO_FATAL_FAILURE(StartHost("domain_lease_linger_ms=0\n"));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    g_autoptr(GVariant) before = Create(host(1), "before");
    ASSERT_EQ(Str(before, "state"), "done") << Str(before, "error_message");

    std::string removed = tmp_.Sub("rem_lockspace.out");
    pid_t rem = Spawn({"sanlock", "client", "rem_lockspace", "-s",
                       lockspace_ + ":1:" + IdsPath() + ":0"},
                      removed, {host(1).sanlock().env()});
    ASSERT_EQ(WaitExit(rem), 0) << ReadFile(removed);
    ASSERT_TRUE(WaitState("lost")) << host(1).Diagnostics();

    g_autoptr(GVariant) after = Create(host(1), "after");
    EXPECT_EQ(Str(after, "state"), "failed");
    EXPECT_EQ(Str(after, "error_code"), "io-error") << Str(after, "error_message");
    EXPECT_NE(Str(after, "error_message").find("lost lockspace " + lockspace_),
              std::string::npos)
        << Str(after, "error_message");
    EXPECT_NE(Str(after, "error_message").find("sdm attach"), std::string::npos)
        << Str(after, "error_message");
    std::string log = host(1).daemon().Log();
    EXPECT_NE(log.find("error: domain " + uuid_ + ": this host lost lockspace"),
              std::string::npos)
        << log;

    EXPECT_EQ(host(1).daemon().Stop(), kExitFenced) << host(1).daemon().Log();
}

/* The storage under the lockspace fails (its ids area cut short, so renewals fail) while
 * sdmd lingers on the domain lease: sdmd reports the lockspace failing, and when sanlock
 * ends it with SIGTERM it exits at once, leaving the domain lease on storage as it was
 * instead of releasing it. */
TEST_F(LockspaceLossTest, FencedHolderExitsWithoutTouchingStorage)
{
    ASSERT_NO_FATAL_FAILURE(StartHost(kLongLinger));
    ASSERT_NO_FATAL_FAILURE(FormatAndAttach());
    g_autoptr(GVariant) made = Create(host(1), "made");
    ASSERT_EQ(Str(made, "state"), "done") << Str(made, "error_message");

    ASSERT_EQ(truncate(IdsPath().c_str(), 0), 0);
    ASSERT_TRUE(WaitState("failing")) << host(1).Diagnostics();
    ASSERT_TRUE(SpinUntil([&] {
        return host(1).daemon().Log().find("stopping at once") != std::string::npos;
    })) << "sanlock did not end sdmd, or sdmd did not take it for fencing\n"
        << host(1).Diagnostics();
    EXPECT_EQ(host(1).daemon().Stop(), kExitFenced) << host(1).daemon().Log();
    std::string log = host(1).daemon().Log();
    EXPECT_NE(log.find("error: domain " + uuid_ + ": this host's lease in lockspace"),
              std::string::npos)
        << log;
    EXPECT_EQ(log.find("stopping: "), std::string::npos)
        << "sdmd went through a normal stop\n" << log;

    /* Released, the domain lease would carry timestamp 0; held by a host that was
     * stopped, it keeps host 1 as its owner. */
    CommandResult leader = sdm::testing::Run({"sanlock", "direct", "read_leader", "-r",
                                lockspace_ + ":SDM:" + root_ + "/" + layout::kLeases + ":0"});
    ASSERT_EQ(leader.exit_code, 0) << leader.out;
    EXPECT_NE(leader.out.find("owner_id 1\n"), std::string::npos) << leader.out;
    EXPECT_EQ(leader.out.find("timestamp 0\n"), std::string::npos) << leader.out;
}

}  // namespace
}  // namespace sdm::testing
