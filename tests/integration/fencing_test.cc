/* Storage loss for one host: three simulated hosts (each its own sanlock daemon and
 * sdmd) share a domain, and host 1 sees it through faultfs (tests/support/faultfs), so
 * that its storage can fail for host 1 alone. An attached sdmd always holds leases in the
 * lockspace (the domain lease shared, its owner lease): idle or mid-clone with its copy
 * stuck on storage, when its lockspace file fails it says so, refuses work, and its
 * sanlock daemon ends it; its leftovers wait for the garbage collector until host 1's host
 * id is freed. Either way hosts 2 and 3 go on. Needs root (FUSE, sanlock daemons); skipped
 * otherwise. Single-threaded like the harnesses it uses. */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/engine/layout.h"
#include "tests/support/faultfs_harness.h"
#include "tests/support/sim_cluster.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
/* A file beside the domain that host 1's stuck qemu-img reads (see StartMidClone). */
constexpr char kStall[] = "stall";
/* sdmd(8): the exit status after sanlock's SIGTERM with a lockspace failing or lost. */
constexpr int kExitFenced = 3;

/* The pid of the process listening on a unix socket. */
pid_t ListenerPid(const std::string &socket_path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
    struct ucred cred = {};
    socklen_t size = sizeof(cred);
    bool ok = fd >= 0 &&
              connect(fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) == 0 &&
              getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &size) == 0;
    if (fd >= 0)
        close(fd);
    return ok ? cred.pid : -1;
}

/* Whether child `pid` has ended, without reaping it (its harness does that). */
bool Ended(pid_t pid)
{
    siginfo_t info = {};
    return waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == pid;
}

/* The lockspace state `h`'s sanlock daemon gives `host_id` ("" if not listed). */
std::string HostState(SimHost &h, const std::string &uuid, uint64_t host_id)
{
    g_autoptr(GVariant) hosts = h.OutOk("ListHosts", g_variant_new("(s)", uuid.c_str()));
    for (size_t i = 0; hosts && i < g_variant_n_children(hosts); i++) {
        guint64 id, generation, timestamp;
        const char *state;
        g_variant_get_child(hosts, i, "(tt&st)", &id, &generation, &state, &timestamp);
        if (id == host_id)
            return state;
    }
    return "";
}

class FencingTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "sanlock daemons and FUSE mounts need root";
        /* The shared storage holds the domain and kStall; host 1 sees it at view_. */
        std::string shared = tmp_.Sub("shared");
        view_ = tmp_.Sub("host1-view");
        root_ = shared + "/domain";
        host1_root_ = view_ + "/domain";
        ASSERT_EQ(mkdir(shared.c_str(), 0755), 0);
        ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
        ASSERT_EQ(mkdir(view_.c_str(), 0755), 0);
        /* Before any sanlock daemon starts: each copies this mount namespace once, and
         * host 1's must have the mount to open its lockspace through it. */
        try {
            fs_ = std::make_unique<FaultFs>(shared, view_);
        } catch (const std::exception &e) {
            FAIL() << e.what();
        }
    }

    void TearDown() override
    {
        if (copier_ > 0)
            kill(copier_, SIGKILL);
    }

    /* Starts hosts 1..3; `host1_env` goes to host 1's sdmd only. */
    void StartHosts(const std::vector<std::string> &host1_env)
    {
        cluster_ = std::make_unique<SimCluster>(3, root_);
        ASSERT_TRUE(cluster_->StartSdmds({"", {}, host1_env}));
    }

    SimHost &host(int id) { return cluster_->host(static_cast<uint32_t>(id)); }
    const std::string &uuid() const { return cluster_->uuid(); }

    bool Create(SimHost &h, const std::string &name)
    {
        return h.Job("CreateVolume", g_variant_new("(sst@a{sv})", uuid().c_str(), name.c_str(),
                                                   4 * kMiB, NoOptions()))
                   .state == "done";
    }

    bool Delete(SimHost &h, const std::string &name)
    {
        return h.Job("DeleteVolume", g_variant_new("(ss)", uuid().c_str(), name.c_str()))
                   .state == "done";
    }

    /* CheckDomain on `h`: no problem, and `pending` transactions in progress. */
    void ExpectConsistent(SimHost &h, uint32_t pending)
    {
        std::vector<std::string> expected;
        if (pending != 0)
            expected.push_back(std::to_string(pending) + " transactions pending");
        EXPECT_EQ(cluster_->CheckProblems(h), expected) << "host " << h.id();
    }

    /* Hosts 2 and 3 each create a volume and delete another: `round` names them. */
    void OthersWork(int round)
    {
        for (int id = 2; id <= 3; id++) {
            std::string tag = "h" + std::to_string(id) + "r" + std::to_string(round);
            if (Create(host(id), "kept-" + tag))
                kept_.push_back("kept-" + tag);
            if (Create(host(id), "gone-" + tag))
                Delete(host(id), "gone-" + tag);
        }
    }

    /* Host 3 lists "source" and what OthersWork kept, and nothing else; hosts 2 and 3
     * find the domain consistent. */
    void ExpectOthersIntact()
    {
        std::vector<std::string> expected = kept_;
        expected.push_back("source");
        std::sort(expected.begin(), expected.end());
        EXPECT_EQ(cluster_->VolumeNames(host(3)), expected);
        for (int id = 2; id <= 3; id++)
            ASSERT_NO_FATAL_FAILURE(ExpectConsistent(host(id), 0));
    }

    /* Three hosts (`host1_env` for host 1's sdmd), the domain, a volume "source" from
     * host 1 and a round of work from the others. */
    void StartShared(const std::vector<std::string> &host1_env = {})
    {
        ASSERT_NO_FATAL_FAILURE(StartHosts(host1_env));
        /* Host 2 formats the domain; host 1 attaches it through faultfs. */
        ASSERT_TRUE(cluster_->FormatAndAttach(2, {{1, host1_root_}}));
        ASSERT_TRUE(Create(host(1), "source")) << "host 1 works through faultfs";
        ASSERT_NO_FATAL_FAILURE(OthersWork(0));
    }

    /* StartShared, then host 1 clones source and is held in the copy by a qemu-img that
     * never ends: the new volume's lease and the domain lease held, its marker on
     * storage. `sdmd` is host 1's sdmd process. */
    void StartMidClone(pid_t *sdmd)
    {
        std::string stuck = tmp_.Sub("stuck-qemu-img");
        std::string stuck_pid = tmp_.Sub("stuck.pid");
        /* Its convert reads kStall through faultfs, then waits for a writer on a FIFO
         * that never gets one. A test that hangs the read gets a copy stuck on storage,
         * which not even SIGKILL ends (as on a hard NFS mount); else one that the test
         * and a cancel can end. */
        std::string fifo = tmp_.Sub("never");
        WriteFile(tmp_.Sub("shared") + "/" + kStall, "");
        ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
        WriteFile(stuck, "#!/bin/sh\n"
                         "if [ \"$1\" = convert ]; then echo $$ > " + stuck_pid +
                         "; exec cat " + view_ + "/" + kStall + " " + fifo + "; fi\n"
                         "exec qemu-img \"$@\"\n");
        ASSERT_EQ(chmod(stuck.c_str(), 0755), 0);
        ASSERT_NO_FATAL_FAILURE(StartShared({"SDM_QEMU_IMG=" + stuck}));

        JobOutcome clone;
        ASSERT_TRUE(cluster_->CloneUntilCopying(host(1), "source", "victim", &clone));
        /* The step is announced before qemu-img starts. */
        ASSERT_TRUE(SpinUntil([&] { return !ReadFile(stuck_pid).empty(); }));
        copier_ = std::atoi(ReadFile(stuck_pid).c_str());
        *sdmd = ListenerPid(host(1).daemon().socket());
        ASSERT_GT(*sdmd, 0) << "cannot find host 1's sdmd";
    }

    TempDir tmp_;
    std::string root_;       /* the domain, as hosts 2 and 3 see it */
    std::string view_;       /* the shared storage through faultfs */
    std::string host1_root_; /* the domain, as host 1 sees it */
    std::vector<std::string> kept_;
    pid_t copier_ = -1;
    /* Destroyed after the hosts: their sanlock daemons hold copies of the mount. */
    std::unique_ptr<FaultFs> fs_;
    std::unique_ptr<SimCluster> cluster_;
};

/* Host 1 is idle when its lockspace file fails: it still holds its attachment's leases,
 * so sanlock ends its sdmd once renewals have failed for 8 x io_timeout; sdmd said the
 * lockspace was failing and refused work before that, and exits at once, touching
 * nothing. */
TEST_F(FencingTest, IdleAttachedHostThatLosesItsLockspaceIsFenced)
{
    ASSERT_NO_FATAL_FAILURE(StartShared());
    pid_t sdmd = ListenerPid(host(1).daemon().socket());
    ASSERT_GT(sdmd, 0) << "cannot find host 1's sdmd";

    ASSERT_EQ(fs_->Add("lose-ids", "read,write", "/domain/" + std::string(layout::kIds),
                       "error=EIO"),
              "");
    ASSERT_TRUE(SpinUntil(
        [&] { return host(1).daemon().Log().find("has not been renewed") != std::string::npos; },
        std::chrono::seconds(60)))
        << host(1).Diagnostics();
    JobOutcome refused = host(1).Submit(
        "CreateVolume",
        g_variant_new("(sst@a{sv})", uuid().c_str(), "after-loss", 4 * kMiB, NoOptions()));
    if (refused.submitted) {
        JobOutcome job = host(1).Wait(refused);
        EXPECT_EQ(job.state, "failed");
        EXPECT_EQ(job.error_code, "io-error") << job.error_message;
    }
    ASSERT_TRUE(SpinUntil([&] { return Ended(sdmd); }, std::chrono::seconds(120)))
        << "sanlock did not end the sdmd that holds the attachment's leases\n"
        << host(1).Diagnostics();
    std::string sanlock_log = host(1).sanlock().OutputTail(1 << 20);
    EXPECT_NE(sanlock_log.find("check_our_lease failed"), std::string::npos) << sanlock_log;
    EXPECT_GT(fs_->Rules()["lose-ids"].hits, 0u);
    EXPECT_EQ(host(1).daemon().Stop(), kExitFenced) << host(1).daemon().Log();
    EXPECT_NE(host(1).daemon().Log().find("stopping at once"), std::string::npos)
        << host(1).daemon().Log();

    /* Nothing of host 1's stands in the others' way. */
    ASSERT_NO_FATAL_FAILURE(OthersWork(1));
    ExpectOthersIntact();
}

/* Host 1's copy is stuck on storage that does not answer, and then its lockspace file
 * fails: the clone cannot be stopped, so host 1 still holds its leases (the domain lease
 * among them: a clone keeps it to its end) when sanlock gives the lockspace up, and
 * sanlock ends sdmd, which exits without touching storage. What it left waits for the
 * garbage collector until host 1's host id is freed. */
TEST_F(FencingTest, HostStuckOnStorageIsFenced)
{
    ASSERT_EQ(fs_->Add("stall-copy", "read", "/" + std::string(kStall), "hang"), "");
    pid_t sdmd;
    ASSERT_NO_FATAL_FAILURE(StartMidClone(&sdmd));
    ASSERT_TRUE(fs_->WaitHung("stall-copy"));

    ASSERT_EQ(fs_->Add("lose-ids", "read,write", "/domain/" + std::string(layout::kIds),
                       "error=EIO"),
              "");
    ASSERT_TRUE(SpinUntil([&] { return Ended(sdmd); }, std::chrono::seconds(120)))
        << "host 1's sdmd outlived its lockspace\n"
        << host(1).Diagnostics();
    std::string sanlock_log = host(1).sanlock().OutputTail(1 << 20);
    EXPECT_NE(sanlock_log.find("check_our_lease failed"), std::string::npos)
        << "host 1's sanlock daemon did not declare its lease lost\n"
        << sanlock_log;
    EXPECT_NE(sanlock_log.find("kill " + std::to_string(sdmd) + " sig 15"), std::string::npos)
        << "host 1's sanlock daemon did not send SIGTERM to sdmd " << sdmd << "\n"
        << sanlock_log;
    int status = host(1).daemon().Stop();
    EXPECT_TRUE(status == kExitFenced || status == 128 + SIGKILL)
        << "host 1's sdmd ended with status " << status << "\n"
        << host(1).daemon().Log();
    EXPECT_NE(host(1).daemon().Log().find("stopping at once without releasing leases"),
              std::string::npos)
        << host(1).daemon().Log();
    EXPECT_GT(fs_->Rules()["lose-ids"].hits, 0u);

    /* Hosts 2 and 3 see host 1's host lease go stale; what host 1 left stays while that
     * lease stands: host 1 might still be writing, as far as they know. */
    EXPECT_TRUE(SpinUntil(
        [&] {
            std::string state = HostState(host(2), uuid(), 1);
            return state == "FAIL" || state == "DEAD";
        },
        std::chrono::seconds(120)))
        << "host 2 sees host 1's host lease renewed: " << HostState(host(2), uuid(), 1);
    SweepReport kept = cluster_->Sweep(host(2));
    ASSERT_TRUE(kept.ok) << kept.error;
    EXPECT_EQ(kept.collected, 0u) << "collected while host 1's host lease stands";
    EXPECT_GE(kept.live, 1u) << "host 1's half-made clone is gone";

    /* The administrator frees host 1's id (it is fenced); host 1's leases are free at
     * once (before, a metadata operation on another host waits for the domain lease until
     * host 1's host lease expires), and the others go on. */
    EXPECT_EQ(ReleaseHostId(cluster_->lockspace(), 1, cluster_->ids_path()), "");
    ASSERT_NO_FATAL_FAILURE(ExpectConsistent(host(3), 1)) << "host 1's clone is pending";
    ASSERT_NO_FATAL_FAILURE(OthersWork(1));
    SweepReport swept = cluster_->Sweep(host(2));
    ASSERT_TRUE(swept.ok) << swept.error;
    EXPECT_GE(swept.collected, 1u) << host(2).Diagnostics();
    EXPECT_EQ(swept.errors, 0u);

    ExpectOthersIntact();
}

}  // namespace
}  // namespace sdm::testing
