/* Storage-domain pools on real sanlock leases, driven through the real virsh (issues 19 and
 * 20): one or two simulated hosts, each with its own sanlock daemon, sdmd and private
 * libvirtd, sharing one domain formatted with io_timeout 1. The pool's life cycle (destroy,
 * delete, start again, sdmd restarted under an active pool), and what one host's waiting
 * must not do to the other calls on its pool: a delete or resize that waits for the domain
 * lease another host holds, a long wipe. A lease is held by
 * sanlock_host_helper (tests/integration/sanlock_host_helper.cc) on the other host's
 * sanlock daemon. Needs root (the sanlock daemons do); skipped otherwise. Assertions are
 * about order (a call ends while another still waits), never about durations. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backend/engine/layout.h"
#include "tests/support/daemon_harness.h"
#include "tests/support/libvirt_harness.h"
#include "tests/support/sanlock_harness.h"

namespace sdm::testing {
namespace {

constexpr char kPool[] = "shared";

struct Host {
    int id = 0;
    std::unique_ptr<SanlockDaemon> sanlock;
    std::unique_ptr<DaemonHarness> sdmd;
    std::unique_ptr<LibvirtHarness> libvirt;
};

/* Whether a spawned process still runs; one that ended is left for WaitExit to reap. */
bool StillRunning(pid_t pid)
{
    siginfo_t info = {};
    return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == 0;
}

class PoolLifecycleTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
        domain_ = tmp_.Sub("domain");
    }

    void TearDown() override
    {
        WriteFile(gate_, ""); /* no copy stays held */
        for (auto &host : hosts_)
            StopSdmdAndLibvirtd(&host.sdmd, &host.libvirt);
        hosts_.clear();
    }

    /* Hosts 1..count, each with the pool defined, built and started; `env` goes to host 1's
     * sdmd. */
    void StartHosts(int count, const std::vector<std::string> &env = {})
    {
        for (int id = 1; id <= count; id++) {
            std::string dir = tmp_.Sub("host" + std::to_string(id));
            hosts_.emplace_back();
            Host &host = hosts_.back();
            host.id = id;
            host.sanlock = std::make_unique<SanlockDaemon>("host" + std::to_string(id));
            ASSERT_TRUE(StartSdmdAndLibvirtd(dir, Config(host), &host.sdmd, &host.libvirt,
                                             id == 1 ? env : std::vector<std::string>{}));
            WriteFile(dir + "/pool.xml",
                      DomainPoolXml(kPool, domain_, host.sdmd->socket(), " io_timeout='1'"));
            DefineBuildStartPool(*host.libvirt, kPool, dir + "/pool.xml");
        }
        ASSERT_FALSE(HasFailure());
    }

    static std::string Config(const Host &host)
    {
        return "lease_backend=sanlock\nhost_id=" + std::to_string(host.id) +
               "\nsanlock_run_dir=" + host.sanlock->run_dir();
    }

    Host &host(int id) { return hosts_.at(id - 1); }

    std::set<std::string> Names(Host &h)
    {
        return VolListNames(h.libvirt->VirshOk({"vol-list", kPool}));
    }

    /* The first value of a call to `h`'s sdmd that must succeed, or null. */
    GVariant *Sdmd(Host &h, const char *method, GVariant *args)
    {
        g_autoptr(GError) error = nullptr;
        g_autoptr(GDBusConnection) connection = h.sdmd->Connect(&error);
        if (!connection) {
            ADD_FAILURE() << "cannot reach sdmd " << h.id << ": " << error->message;
            if (args)
                g_variant_unref(g_variant_ref_sink(args));
            return nullptr;
        }
        g_autoptr(GVariant) reply = Call(connection, method, args, &error);
        if (!reply) {
            ADD_FAILURE() << "sdmd " << h.id << ": " << method << ": " << error->message;
            return nullptr;
        }
        return g_variant_get_child_value(reply, 0);
    }

    /* How many jobs of `type` run on `h`'s sdmd now. */
    int Running(Host &h, const std::string &type)
    {
        g_autoptr(GVariant) jobs = Sdmd(h, "ListJobs", nullptr);
        int running = 0;
        for (size_t i = 0; jobs && i < g_variant_n_children(jobs); i++) {
            g_autoptr(GVariant) job = g_variant_get_child_value(jobs, i);
            running += Str(job, "type") == type && Str(job, "state") == "running";
        }
        return running;
    }

    /* `virsh args` against `h`, in the background; its output goes to `output`. */
    pid_t VirshInBackground(Host &h, const std::vector<std::string> &args,
                            const std::string &output)
    {
        std::vector<std::string> argv = {"virsh", "-q", "-c", h.libvirt->uri()};
        argv.insert(argv.end(), args.begin(), args.end());
        return Spawn(argv, output);
    }

    /* A qemu-img for host 1's sdmd that, once `armed_` exists, holds every convert (the
     * copy of a qcow2 clone) until `gate_` does. */
    std::string SlowQemuImg()
    {
        std::string slow = tmp_.Sub("slow-qemu-img");
        WriteFile(slow, "#!/bin/sh\n"
                        "if [ \"$1\" = convert ] && [ -e " + armed_ + " ]; then\n"
                        "    while [ ! -e " + gate_ + " ]; do sleep 0.1; done\n"
                        "fi\n"
                        "exec qemu-img \"$@\"\n");
        EXPECT_EQ(chmod(slow.c_str(), 0755), 0);
        return slow;
    }

    TempDir tmp_;
    std::string domain_;
    std::vector<Host> hosts_;
    std::string armed_ = tmp_.Sub("armed");
    std::string gate_ = tmp_.Sub("gate");
};

/* pool-destroy detaches the domain for good: sdmd no longer serves it (the pool watcher
 * does not attach it again), and pool-delete then removes it. */
TEST_F(PoolLifecycleTest, PoolDestroyDetachesSoPoolDeleteRemoves)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1));
    Host &h = host(1);
    h.libvirt->VirshOk({"vol-create-as", kPool, "passing", "4M"});
    h.libvirt->VirshOk({"vol-delete", "passing", "--pool", kPool});
    h.libvirt->VirshOk({"pool-destroy", kPool});
    /* A watcher round or two, for a wrong attach to show. */
    std::this_thread::sleep_for(std::chrono::seconds(3));
    g_autoptr(GVariant) domains = Sdmd(h, "ListDomains", nullptr);
    ASSERT_NE(domains, nullptr);
    EXPECT_EQ(g_variant_n_children(domains), 0u) << "the stopped pool's domain is attached";
    h.libvirt->VirshOk({"pool-delete", kPool});
    struct stat st;
    EXPECT_NE(stat(domain_.c_str(), &st), 0) << "the domain's directory stays";
}

/* pool-start right after pool-destroy joins the lockspace again once the leave is over,
 * and the pool works. */
TEST_F(PoolLifecycleTest, PoolStartRightAfterDestroyWorks)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1));
    Host &h = host(1);
    for (int round = 0; round < 3; round++) {
        SCOPED_TRACE(round);
        h.libvirt->VirshOk({"pool-destroy", kPool});
        h.libvirt->VirshOk({"pool-start", kPool});
        h.libvirt->VirshOk({"vol-create-as", kPool, "round" + std::to_string(round), "4M"});
    }
    EXPECT_EQ(Names(h), (std::set<std::string>{"round0", "round1", "round2"}));
}

/* Right after sdmd restarts (without the pool's domain in its configuration), calls on the
 * pool wait for the domain to be attached again, or say to retry: never "volume not
 * found". */
TEST_F(PoolLifecycleTest, CallsRightAfterAnSdmdRestartWaitForTheAttach)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(1));
    Host &h = host(1);
    h.libvirt->VirshOk({"vol-create-as", kPool, "before", "4M"});
    ASSERT_EQ(h.sdmd->Stop(), 0) << h.sdmd->Log();
    ASSERT_TRUE(h.sdmd->Start(Config(h)));
    std::string uri = h.libvirt->uri();
    CommandResult creates = sdm::testing::Run(
        {"/bin/sh", "-c",
         "for i in 1 2 3 4; do virsh -q -c " + uri + " vol-create-as " + kPool +
             " after$i 4M & done; virsh -q -c " + uri + " vol-info before --pool " + kPool +
             "; wait"});
    EXPECT_EQ(creates.out.find("not found"), std::string::npos) << creates.out;
    EXPECT_EQ(creates.out.find("Failed to create vol"), std::string::npos) << creates.out;
    /* vol-info's call holds the pool lock, so it does not wait: it may say to retry. */
    if (creates.out.find("Failed to get volume information") != std::string::npos) {
        EXPECT_NE(creates.out.find("attaching it again"), std::string::npos) << creates.out;
    }
    EXPECT_EQ(Names(h), (std::set<std::string>{"before", "after1", "after2", "after3", "after4"}))
        << creates.out;
}

/* A delete and a resize that wait (for the image locks that host 1's clones of their
 * volumes hold while they copy) run at once, and neither stops vol-list or any other call
 * on the pool meanwhile: libvirt holds no pool lock while they wait. */
TEST_F(PoolLifecycleTest, WaitingDeleteAndResizeLeaveThePoolUsable)
{
    ASSERT_NO_FATAL_FAILURE(StartHosts(2, {"SDM_QEMU_IMG=" + SlowQemuImg()}));
    Host &one = host(1);
    for (const char *name : {"doomed", "growing"})
        one.libvirt->VirshOk({"vol-create-as", kPool, name, "4M", "--format", "qcow2"});
    one.libvirt->VirshOk({"vol-create-as", kPool, "bystander", "4M"});
    WriteFile(armed_, "");
    /* Through sdm, not libvirt: libvirt itself refuses to delete a volume it copies. */
    auto sdm_clone = [&](const char *source, const char *name, const char *out) {
        return Spawn({SdmPath(), "--socket", one.sdmd->socket(), "clone", domain_, source, name},
                     tmp_.Sub(out));
    };
    pid_t clones[] = {sdm_clone("doomed", "copy1", "clone1.out"),
                      sdm_clone("growing", "copy2", "clone2.out")};
    ASSERT_TRUE(SpinUntil([&] { return Running(one, "clone") == 2; }));

    pid_t del = VirshInBackground(one, {"vol-delete", "doomed", "--pool", kPool},
                                  tmp_.Sub("delete.out"));
    pid_t resize = VirshInBackground(one, {"vol-resize", "growing", "8M", "--pool", kPool},
                                     tmp_.Sub("resize.out"));
    ASSERT_GT(del, 0);
    ASSERT_GT(resize, 0);
    bool both = SpinUntil([&] {
        return Running(one, "delete") == 1 && Running(one, "resize") == 1;
    });
    bool waiting = StillRunning(del) && StillRunning(resize);
    EXPECT_TRUE(both && waiting) << "the delete and the resize did not wait side by side:\n"
                                 << ReadFile(tmp_.Sub("delete.out"))
                                 << ReadFile(tmp_.Sub("resize.out"));
    /* Calls that take the pool lock answer while both wait. */
    EXPECT_EQ(Names(one), (std::set<std::string>{"doomed", "growing", "bystander"}));
    one.libvirt->VirshOk({"vol-info", "bystander", "--pool", kPool});
    one.libvirt->VirshOk({"pool-info", kPool});
    EXPECT_TRUE(StillRunning(del) && StillRunning(resize))
        << "the calls above waited for the delete or the resize";

    WriteFile(gate_, "");
    for (pid_t clone : clones)
        EXPECT_EQ(WaitExit(clone), 0);
    EXPECT_EQ(WaitExit(del), 0) << ReadFile(tmp_.Sub("delete.out"));
    EXPECT_EQ(WaitExit(resize), 0) << ReadFile(tmp_.Sub("resize.out"));
    /* The copies, made through sdm, show once the pool's watcher has seen them. */
    const std::set<std::string> after = {"growing", "bystander", "copy1", "copy2"};
    EXPECT_TRUE(SpinUntil([&] { return Names(one) == after; }));
    EXPECT_EQ(Names(one), after);
    EXPECT_NE(one.libvirt->VirshOk({"vol-info", "growing", "--pool", kPool}).find("8.00 MiB"),
              std::string::npos);
}

/* While this host works on a volume for a long time with the pool unlocked (a wipe, as a
 * build or a copy), the volumes another host makes still show in this host's pool. */
TEST_F(PoolLifecycleTest, OtherHostsVolumesShowDuringALongLocalJob)
{
    /* Host 1's qemu-img, once armed, holds every `create` (a qcow2 wipe makes the volume
     * again) until the gate opens. */
    std::string armed = tmp_.Sub("armed");
    std::string gate = tmp_.Sub("gate");
    std::string slow = tmp_.Sub("slow-qemu-img");
    WriteFile(slow, "#!/bin/sh\n"
                    "if [ \"$1\" = create ] && [ -e " + armed + " ]; then\n"
                    "    while [ ! -e " + gate + " ]; do sleep 0.1; done\n"
                    "fi\n"
                    "exec qemu-img \"$@\"\n");
    ASSERT_EQ(chmod(slow.c_str(), 0755), 0);
    ASSERT_NO_FATAL_FAILURE(StartHosts(2, {"SDM_QEMU_IMG=" + slow}));
    Host &one = host(1), &two = host(2);
    one.libvirt->VirshOk({"vol-create-as", kPool, "wiped", "4M", "--format", "qcow2"});

    WriteFile(armed, "");
    pid_t wipe = VirshInBackground(one, {"vol-wipe", "wiped", "--pool", kPool},
                                   tmp_.Sub("wipe.out"));
    ASSERT_GT(wipe, 0);
    ASSERT_TRUE(SpinUntil([&] { return Running(one, "wipe") == 1; }))
        << ReadFile(tmp_.Sub("wipe.out"));
    two.libvirt->VirshOk({"vol-create-as", kPool, "fresh", "4M"});
    bool shown = SpinUntil([&] { return Names(one).count("fresh") || !StillRunning(wipe); },
                           std::chrono::seconds(120));
    EXPECT_TRUE(shown && Names(one).count("fresh") && StillRunning(wipe))
        << "host 1 saw host 2's volume only once its own wipe ended";

    WriteFile(gate, "");
    EXPECT_EQ(WaitExit(wipe), 0) << ReadFile(tmp_.Sub("wipe.out"));
    EXPECT_EQ(Names(one), (std::set<std::string>{"wiped", "fresh"}));
}

}  // namespace
}  // namespace sdm::testing
