/* Tests of the sanlock leases against real sanlock daemons: two simulated hosts share one
 * lockspace (io_timeout 1), host 1 in this process, host 2 in a helper process
 * (sanlock_host_helper) bound to a second daemon. Exclusive and shared leases within a
 * host and across hosts, a holder's death, a host's death and the release of its host id,
 * chunks of volume leases that never overwrite a lease in use, owner leases, two hosts
 * racing for one shared lease, the join, the libvirt lease XML, and bad input. The hosts join once for the whole program (a join costs ~3 s). Tests in
 * SanlockSlow wait for a dead host's leases to expire (~70 s); meson registers them only
 * with -Dslow_tests=true. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <future>
#include <iostream>
#include <thread>
#include <vector>

#include "backend/engine/layout.h"
#include "backend/sanlock/sanlock_lease.h"
#include "tests/support/sanlock_harness.h"
#include "tests/support/test_support.h"

namespace sdm {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using namespace std::chrono_literals;
using testing::SanlockDaemon;
using testing::TempDir;

constexpr uint32_t kIoTimeout = 1;
constexpr auto kJoinTimeout = 60s;

/* Creates the empty area files a domain's Format makes, and the geometry naming them. */
SanlockGeometry MakeDomain(const std::string &dir, uint32_t sector_size = 512,
                           uint64_t alignment = 1 << 20)
{
    SanlockGeometry g;
    g.lockspace = layout::NewUuid();
    g.ids_path = dir + "/ids";
    g.leases_path = dir + "/leases";
    g.owners_path = dir + "/owners";
    g.sector_size = sector_size;
    g.alignment = alignment;
    g.io_timeout = kIoTimeout;
    testing::WriteFile(g.ids_path, "");
    testing::WriteFile(g.leases_path, "");
    testing::WriteFile(g.owners_path, "");
    return g;
}

uint64_t FileSize(const std::string &path)
{
    struct stat st;
    return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

/* A sanlock_host_helper process: another lease user on the host of `daemon`. */
class HostProcess {
public:
    HostProcess(const SanlockDaemon &daemon, const SanlockGeometry &g, uint32_t host_id)
    {
        const char *helper = std::getenv("SDM_SANLOCK_HOST_HELPER");
        std::vector<std::string> args = {helper ? helper : "sanlock_host_helper", g.lockspace,
                                         g.ids_path, g.leases_path, g.owners_path,
                                         std::to_string(host_id), std::to_string(g.io_timeout)};
        std::string env = daemon.env();
        std::vector<char *> argv;
        for (auto &a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        int to_child[2], from_child[2];
        if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0)
            return;
        pid_ = fork();
        if (pid_ == 0) {
            dup2(to_child[0], 0);
            dup2(from_child[1], 1);
            putenv(env.data());
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(to_child[0]);
        close(from_child[1]);
        in_ = to_child[1];
        out_ = from_child[0];
    }

    ~HostProcess()
    {
        if (in_ >= 0)
            close(in_); /* end of input: it releases, leaves and exits */
        if (pid_ > 0) {
            for (int i = 0; i < 500 && waitpid(pid_, nullptr, WNOHANG) == 0; i++)
                std::this_thread::sleep_for(10ms);
            Kill();
        }
        if (out_ >= 0)
            close(out_);
    }

    /* Sends one command and returns its reply line. */
    std::string Call(const std::string &command, std::chrono::milliseconds timeout = 90s)
    {
        std::string line = command + "\n";
        if (pid_ <= 0 || write(in_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
            return "error helper-gone";
        auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto nl = buffer_.find('\n');
            if (nl != std::string::npos) {
                std::string reply = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                return reply;
            }
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            struct pollfd p = {out_, POLLIN, 0};
            if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0)
                return "error no-reply to '" + command + "'";
            char buf[1024];
            ssize_t n = read(out_, buf, sizeof(buf));
            if (n <= 0)
                return "error helper-exited";
            buffer_.append(buf, n);
        }
    }

    /* SIGKILL: the holder dies without releasing anything. */
    void Kill()
    {
        if (pid_ <= 0)
            return;
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

private:
    pid_t pid_ = -1;
    int in_ = -1;
    int out_ = -1;
    std::string buffer_;
};

/* The two hosts and their shared domain, set up once. */
struct World {
    TempDir dir; /* removed last, once nothing uses the domain */
    std::unique_ptr<SanlockDaemon> a; /* host 1: this process */
    std::unique_ptr<SanlockDaemon> b; /* host 2: helper processes */
    SanlockGeometry g;
    std::unique_ptr<SanlockLeaseManager> leases;
    std::unique_ptr<HostProcess> agent; /* host 2's joined lease user */
    std::string error;
    std::string skip;

    void StartHostB()
    {
        agent = std::make_unique<HostProcess>(*b, g, 2);
    }

    std::string JoinHostB()
    {
        std::string reply = agent->Call("join " + std::to_string(kJoinTimeout.count() * 1000));
        return reply.rfind("ok", 0) == 0 ? "" : reply;
    }

    /* After a test killed host 2: a new daemon and lease user, joined again. */
    std::string RestoreHostB()
    {
        agent.reset();
        b->Restart();
        StartHostB();
        return JoinHostB();
    }
};

World *world = nullptr;

class SanlockEnvironment : public ::testing::Environment {
public:
    void SetUp() override
    {
        world = new World;
        if (geteuid() != 0) {
            world->skip = "sanlock daemons need root (mount namespaces, /var/log)";
            return;
        }
        try {
            world->a = std::make_unique<SanlockDaemon>("host-a");
            world->b = std::make_unique<SanlockDaemon>("host-b");
        } catch (const std::exception &e) {
            world->error = e.what();
            return;
        }
        world->a->UseInThisProcess();
        world->g = MakeDomain(world->dir.path());
        Status s = SanlockLeaseManager::FormatAreas(world->g);
        if (!s.ok()) {
            world->error = "FormatAreas: " + s.ToString();
            return;
        }
        world->leases = std::make_unique<SanlockLeaseManager>(world->g, 1);
        s = world->leases->Join();
        world->StartHostB(); /* both hosts join at once */
        std::string b_join = world->JoinHostB();
        if (s.ok())
            s = world->leases->WaitJoined(kJoinTimeout);
        if (!s.ok())
            world->error = "host 1 join: " + s.ToString() + "\n" + world->a->OutputTail();
        else if (!b_join.empty())
            world->error = "host 2 join: " + b_join + "\n" + world->b->OutputTail();
    }

    void TearDown() override
    {
        delete world;
        world = nullptr;
    }
};

[[maybe_unused]] const auto *const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new SanlockEnvironment);

class SanlockLeaseTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (!world->skip.empty())
            GTEST_SKIP() << world->skip;
        ASSERT_EQ(world->error, "");
        ASSERT_NE(world->agent, nullptr) << "an earlier test could not restore host 2";
    }

    SanlockLeaseManager &leases() { return *world->leases; }
    HostProcess &host2() { return *world->agent; }
    const SanlockGeometry &g() { return world->g; }

    std::unique_ptr<LeaseHandle> MustAcquire(uint64_t slot, LeaseMode mode,
                                             std::chrono::milliseconds timeout = 0ms,
                                             LeaseArea area = LeaseArea::kLeases)
    {
        auto lease = leases().Acquire(area, slot, mode, timeout);
        EXPECT_TRUE(lease.ok()) << lease.status().ToString();
        return lease.ok() ? std::move(*lease) : nullptr;
    }

    Status TryAcquire(uint64_t slot, LeaseMode mode, std::chrono::milliseconds timeout = 0ms,
                      LeaseArea area = LeaseArea::kLeases)
    {
        auto lease = leases().Acquire(area, slot, mode, timeout);
        return lease.ok() ? Status::Ok() : lease.status();
    }

    /* The volume leases of the chunk holding `slot`. */
    Status InitSlot(uint64_t slot) { return leases().InitChunk(layout::ChunkOf(slot)); }
};

TEST_F(SanlockLeaseTest, JoinedWithAGenerationThatHostsReports)
{
    EXPECT_GT(leases().generation(), 0u);
    ASSERT_TRUE(leases().WaitJoined(0ms).ok()); /* joined already: no wait */
    auto hosts = leases().Hosts();
    ASSERT_TRUE(hosts.ok()) << hosts.status().ToString();
    auto me = std::find_if(hosts->begin(), hosts->end(),
                           [](const auto &h) { return h.host_id == 1; });
    ASSERT_NE(me, hosts->end());
    EXPECT_EQ(me->generation, leases().generation());
    EXPECT_EQ(me->state, "live");
    EXPECT_GT(me->timestamp, 0u);
    EXPECT_THAT(host2().Call("hosts"), HasSubstr(" 2:"));
}

TEST_F(SanlockLeaseTest, ExclusiveLeaseIsExclusiveWithinTheProcess)
{
    ASSERT_TRUE(InitSlot(1).ok());
    auto lease = MustAcquire(1, LeaseMode::kExclusive);
    Status again = TryAcquire(1, LeaseMode::kExclusive);
    EXPECT_EQ(again.code(), ErrorCode::kBusy) << again.ToString();
    EXPECT_THAT(again.message(), HasSubstr("this host (host id 1"));
    EXPECT_EQ(TryAcquire(1, LeaseMode::kShared).code(), ErrorCode::kBusy);
    lease.reset();
    EXPECT_NE(MustAcquire(1, LeaseMode::kExclusive), nullptr);
}

TEST_F(SanlockLeaseTest, SharedLeasesShareAcrossProcessesAndHosts)
{
    ASSERT_TRUE(InitSlot(2).ok());
    auto first = MustAcquire(2, LeaseMode::kShared);
    auto second = MustAcquire(2, LeaseMode::kShared);
    ASSERT_EQ(host2().Call("acquire 2 sh 5000"), "ok");
    EXPECT_EQ(TryAcquire(2, LeaseMode::kExclusive).code(), ErrorCode::kBusy);
    EXPECT_THAT(host2().Call("acquire 2 ex 0"), StartsWith("error busy"));

    first.reset();
    second.reset();
    Status blocked = TryAcquire(2, LeaseMode::kExclusive);
    EXPECT_EQ(blocked.code(), ErrorCode::kBusy);
    EXPECT_THAT(blocked.message(), HasSubstr("host 2"));
    ASSERT_EQ(host2().Call("release 2"), "ok");
    EXPECT_NE(MustAcquire(2, LeaseMode::kExclusive, 5s), nullptr);
}

TEST_F(SanlockLeaseTest, ExclusiveConflictBetweenHostsNamesTheHolder)
{
    ASSERT_TRUE(InitSlot(3).ok());
    ASSERT_EQ(host2().Call("acquire 3 ex 5000"), "ok");
    Status busy = TryAcquire(3, LeaseMode::kExclusive);
    EXPECT_EQ(busy.code(), ErrorCode::kBusy) << busy.ToString();
    EXPECT_THAT(busy.message(), HasSubstr("is held by host 2 (generation"));
    EXPECT_THAT(busy.message(), HasSubstr("lease v3 of lockspace " + g().lockspace));
    ASSERT_EQ(host2().Call("release 3"), "ok");
    auto mine = MustAcquire(3, LeaseMode::kExclusive, 5s);

    std::string reply = host2().Call("acquire 3 ex 0");
    EXPECT_THAT(reply, StartsWith("error busy"));
    EXPECT_THAT(reply, HasSubstr("host 1 (generation " + std::to_string(leases().generation())));
}

TEST_F(SanlockLeaseTest, TimeoutIsHonouredAndAWaiterGetsTheLeaseWhenReleased)
{
    ASSERT_TRUE(InitSlot(8).ok());
    ASSERT_EQ(host2().Call("acquire 8 ex 5000"), "ok");
    auto start = std::chrono::steady_clock::now();
    Status busy = TryAcquire(8, LeaseMode::kExclusive, 300ms);
    auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(busy.code(), ErrorCode::kBusy);
    EXPECT_GE(waited, 300ms);

    auto waiter = std::async(std::launch::async, [this] {
        auto t0 = std::chrono::steady_clock::now();
        auto lease = leases().Acquire(LeaseArea::kLeases, 8, LeaseMode::kExclusive, 30s);
        std::cout << "waiter got the lease after "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - t0).count()
                  << " ms (released at ~300 ms)\n";
        return lease.ok() ? Status::Ok() : lease.status();
    });
    std::this_thread::sleep_for(300ms);
    ASSERT_EQ(host2().Call("release 8"), "ok");
    Status got = waiter.get();
    EXPECT_TRUE(got.ok()) << got.ToString();
}

TEST_F(SanlockLeaseTest, KilledHolderOnALiveHostIsReleasedByItsDaemon)
{
    ASSERT_TRUE(InitSlot(9).ok());
    {
        HostProcess holder(*world->b, g(), 2);
        ASSERT_EQ(holder.Call("acquire 9 ex 5000"), "ok");
        EXPECT_EQ(TryAcquire(9, LeaseMode::kExclusive).code(), ErrorCode::kBusy);
        holder.Kill();
    }
    /* Host 2's daemon notices the dead client and releases on storage. */
    EXPECT_NE(MustAcquire(9, LeaseMode::kExclusive, 10s), nullptr);
}

TEST_F(SanlockLeaseTest, DeadHostKeepsItsLeaseUntilItsHostIdIsReleased)
{
    ASSERT_TRUE(InitSlot(10).ok());
    {
        HostProcess holder(*world->b, g(), 2);
        ASSERT_EQ(holder.Call("acquire 10 ex 5000"), "ok");
        world->b->Kill(); /* the host dies: its daemon first */
        /* A lease user outlives its daemon: no SIGPIPE death, and errors that say why. */
        EXPECT_EQ(holder.Call("release 10"), "ok");
        std::string reply = holder.Call("acquire 10 ex 0");
        EXPECT_THAT(reply, StartsWith("error io-error"));
        EXPECT_THAT(reply, HasSubstr("sanlock daemon is not running or not reachable"));
        holder.Kill();
        world->agent->Kill();
    }
    Status busy = TryAcquire(10, LeaseMode::kExclusive, 500ms);
    EXPECT_EQ(busy.code(), ErrorCode::kBusy);
    EXPECT_THAT(busy.message(), HasSubstr("host 2"));

    ASSERT_EQ(testing::ReleaseHostId(g().lockspace, 2, g().ids_path), "");
    auto start = std::chrono::steady_clock::now();
    EXPECT_NE(MustAcquire(10, LeaseMode::kExclusive, 10s), nullptr);
    std::cout << "acquired a dead host's lease "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start).count()
              << " ms after release_id\n";

    std::string restored = world->RestoreHostB();
    if (!restored.empty())
        world->agent.reset();
    ASSERT_EQ(restored, "");
}

TEST_F(SanlockLeaseTest, InitChunkWritesWholeChunksAndNeverALeaseInUse)
{
    ASSERT_TRUE(leases().InitChunk(1).ok()); /* slots 65..128 */
    EXPECT_NE(MustAcquire(65, LeaseMode::kExclusive), nullptr);
    EXPECT_NE(MustAcquire(128, LeaseMode::kExclusive), nullptr);
    ASSERT_TRUE(InitSlot(1000).ok());
    EXPECT_NE(MustAcquire(1000, LeaseMode::kExclusive), nullptr);
    /* A chunk nobody initialised stays unwritten. */
    Status absent = TryAcquire(500, LeaseMode::kExclusive);
    EXPECT_EQ(absent.code(), ErrorCode::kNotFound) << absent.ToString();

    /* Host 2 has cached nothing: it must find these chunks on storage, not rewrite them
     * (format 1 chunks, or an earlier incarnation's). */
    ASSERT_TRUE(InitSlot(5).ok());
    auto five = MustAcquire(5, LeaseMode::kExclusive);
    auto seventy = MustAcquire(70, LeaseMode::kExclusive);
    ASSERT_EQ(host2().Call("initchunk 3"), "ok");
    ASSERT_EQ(host2().Call("initchunk 0"), "ok");
    ASSERT_EQ(host2().Call("initchunk 1"), "ok");
    EXPECT_THAT(host2().Call("acquire 5 ex 0"), HasSubstr("host 1"));
    EXPECT_THAT(host2().Call("acquire 70 ex 0"), HasSubstr("host 1"));
    EXPECT_EQ(TryAcquire(5, LeaseMode::kExclusive).code(), ErrorCode::kBusy); /* still mine */
    EXPECT_NE(MustAcquire(200, LeaseMode::kExclusive), nullptr); /* host 2's chunk */
    EXPECT_EQ(leases().InitChunk(layout::kMaxChunk + 1).code(), ErrorCode::kInvalidArgument);

    auto start = std::chrono::steady_clock::now();
    ASSERT_TRUE(leases().InitChunk(2).ok());
    std::cout << "InitChunk of a new chunk of " << layout::kChunkSlots << " slots: "
              << std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start).count()
              << " ms\n";
}

TEST_F(SanlockLeaseTest, OwnerLeasesAreAnAreaOfTheirOwn)
{
    EXPECT_EQ(leases().FirstOwner(), 1u);
    EXPECT_EQ(leases().LastOwner(), 1u) << "with sanlock, a host is exactly one owner";
    Status never = TryAcquire(1, LeaseMode::kExclusive, 0ms, LeaseArea::kOwners);
    EXPECT_EQ(never.code(), ErrorCode::kNotFound) << "an owner lease nobody wrote";
    ASSERT_TRUE(leases().InitOwner(1).ok());
    ASSERT_TRUE(leases().InitOwner(1).ok()) << "written once, found after";
    auto mine = MustAcquire(1, LeaseMode::kExclusive, 0ms, LeaseArea::kOwners);
    ASSERT_EQ(host2().Call("initowner 2"), "ok");
    ASSERT_EQ(host2().Call("acquire 2 ex 0 owners"), "ok");
    /* A collector's probe: host 2's owner lease is held, host 1's is not host 2's to take. */
    Status live = TryAcquire(2, LeaseMode::kExclusive, 0ms, LeaseArea::kOwners);
    EXPECT_EQ(live.code(), ErrorCode::kBusy) << live.ToString();
    EXPECT_THAT(live.message(), HasSubstr("lease o2 of lockspace"));
    EXPECT_THAT(host2().Call("acquire 1 ex 0 owners"), HasSubstr("host 1"));
    EXPECT_NE(MustAcquire(1, LeaseMode::kExclusive, 0ms), nullptr)
        << "volume slot 1 is another lease";
    ASSERT_EQ(host2().Call("release 2"), "ok");
    EXPECT_NE(MustAcquire(2, LeaseMode::kExclusive, 5s, LeaseArea::kOwners), nullptr)
        << "a released owner lease is free: its owner's transactions may be collected";
}

TEST_F(SanlockLeaseTest, TwoHostsTakingOneLeaseSharedNeverRefuseEachOther)
{
    /* Two hosts cloning one source at once: each takes the source's lease shared. */
    ASSERT_TRUE(InitSlot(40).ok());
    int refused = 0;
    for (int i = 0; i < 30; i++) {
        auto theirs = std::async(std::launch::async,
                                 [this] { return host2().Call("acquire 40 sh 0"); });
        Status ours = TryAcquire(40, LeaseMode::kShared);
        std::string reply = theirs.get();
        if (!ours.ok()) {
            refused++;
            ADD_FAILURE() << "host 1 refused: " << ours.ToString();
        }
        if (reply != "ok") {
            refused++;
            ADD_FAILURE() << "host 2 refused: " << reply;
        } else {
            ASSERT_EQ(host2().Call("release 40"), "ok");
        }
    }
    EXPECT_EQ(refused, 0);
}

TEST_F(SanlockLeaseTest, ThreadsAcquireInParallel)
{
    ASSERT_TRUE(InitSlot(20).ok());
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (uint64_t t = 0; t < 4; t++) {
        threads.emplace_back([this, t, &failures] {
            for (int i = 0; i < 10; i++) {
                /* Own slot, then the shared hot slot 20, where they queue. */
                auto own = leases().Acquire(LeaseArea::kLeases, 21 + t, LeaseMode::kExclusive,
                                            0ms);
                auto hot = leases().Acquire(LeaseArea::kLeases, 20, LeaseMode::kExclusive, 30s);
                if (!own.ok() || !hot.ok())
                    failures++;
            }
        });
    }
    for (auto &t : threads)
        t.join();
    EXPECT_EQ(failures.load(), 0);
}

TEST_F(SanlockLeaseTest, AcquireReleaseLatency)
{
    ASSERT_TRUE(InitSlot(30).ok());
    std::vector<double> ms;
    for (int i = 0; i < 100; i++) {
        auto start = std::chrono::steady_clock::now();
        auto lease = leases().Acquire(LeaseArea::kLeases, 30, LeaseMode::kExclusive, 0ms);
        ASSERT_TRUE(lease.ok()) << lease.status().ToString();
        lease->reset();
        ms.push_back(std::chrono::duration<double, std::milli>(
                         std::chrono::steady_clock::now() - start).count());
    }
    std::sort(ms.begin(), ms.end());
    double p50 = ms[ms.size() / 2];
    double p99 = ms[ms.size() * 99 / 100];
    std::cout << "exclusive acquire+release: p50 " << p50 << " ms, p99 " << p99 << " ms\n";
    RecordProperty("acquire_release_p50_us", static_cast<int>(p50 * 1000));
    RecordProperty("acquire_release_p99_us", static_cast<int>(p99 * 1000));
}

TEST_F(SanlockLeaseTest, LeaseXmlNamesLockspaceKeyAndTarget)
{
    std::string xml = leases().LeaseXml(5);
    EXPECT_THAT(xml, StartsWith("<lease>"));
    EXPECT_THAT(xml, HasSubstr("<lockspace>" + g().lockspace + "</lockspace>"));
    EXPECT_THAT(xml, HasSubstr("<key>v5</key>"));
    EXPECT_THAT(xml, HasSubstr("<target path='" + g().leases_path + "' offset='5242880'/>"));
    EXPECT_THAT(xml, HasSubstr("</lease>"));
    EXPECT_THAT(leases().LeaseXml(0), HasSubstr("<key>SDM</key>"));
    EXPECT_THAT(leases().LeaseXml(0), HasSubstr("offset='0'"));

    SanlockGeometry odd = g();
    odd.leases_path = "/srv/a&b'c/leases";
    SanlockLeaseManager other(odd, 1);
    EXPECT_THAT(other.LeaseXml(layout::kMaxSlot),
                HasSubstr("<target path='/srv/a&amp;b&apos;c/leases' offset='1099511627776'/>"));
    EXPECT_EQ(SanlockLeaseManager::ResourceName(LeaseArea::kLeases, layout::kMaxSlot),
              "v1048576");
    EXPECT_EQ(SanlockLeaseManager::ResourceName(LeaseArea::kOwners, 7), "o7");
}

TEST_F(SanlockLeaseTest, BadInputIsRefusedWithAClearError)
{
    Status s = TryAcquire(layout::kMaxSlot + 1, LeaseMode::kExclusive);
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("out of range"));
    EXPECT_EQ(InitSlot(layout::kMaxSlot + 1).code(), ErrorCode::kInvalidArgument);

    TempDir dir;
    SanlockGeometry bad = MakeDomain(dir.path());
    bad.lockspace = std::string(49, 'x');
    EXPECT_EQ(SanlockLeaseManager::FormatAreas(bad).code(), ErrorCode::kInvalidArgument);
    SanlockLeaseManager long_name(bad, 1);
    s = long_name.Join();
    EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("1 to 48"));
    EXPECT_EQ(long_name.InitChunk(0).code(), ErrorCode::kInvalidArgument);
    bad.lockspace = std::string(48, 'x'); /* the longest sanlock takes */
    EXPECT_TRUE(SanlockLeaseManager::FormatAreas(bad).ok());

    SanlockGeometry geometry = MakeDomain(dir.path());
    geometry.alignment = 8 << 20; /* 512-byte sectors go with 1 MiB only */
    EXPECT_EQ(SanlockLeaseManager::FormatAreas(geometry).code(),
              ErrorCode::kInvalidArgument);
    geometry = MakeDomain(dir.path());
    geometry.leases_path = "leases";
    EXPECT_EQ(SanlockLeaseManager::FormatAreas(geometry).code(),
              ErrorCode::kInvalidArgument);
    EXPECT_EQ(SanlockLeaseManager(g(), 0).Join().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(SanlockLeaseManager(g(), 2001).Join().code(), ErrorCode::kInvalidArgument);

    SanlockGeometry missing = MakeDomain(dir.path());
    missing.ids_path = dir.Sub("no-such-ids");
    s = SanlockLeaseManager::FormatAreas(missing);
    EXPECT_EQ(s.code(), ErrorCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr(missing.ids_path + " is missing"));
    s = SanlockLeaseManager(missing, 1).Join();
    EXPECT_EQ(s.code(), ErrorCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr(missing.ids_path));
}

TEST_F(SanlockLeaseTest, LockspaceNotJoinedOrNotFormatted)
{
    TempDir dir;
    SanlockGeometry other = MakeDomain(dir.path());
    ASSERT_TRUE(SanlockLeaseManager::FormatAreas(other).ok());
    SanlockLeaseManager unjoined(other, 1);
    Status s = unjoined.WaitJoined(0ms);
    EXPECT_EQ(s.code(), ErrorCode::kIoError);
    EXPECT_THAT(s.message(), HasSubstr("is not joined on this host"));
    EXPECT_EQ(unjoined.generation(), 0u);
    auto lease = unjoined.Acquire(LeaseArea::kLeases, 0, LeaseMode::kExclusive, 0ms);
    ASSERT_FALSE(lease.ok());
    EXPECT_THAT(lease.status().message(), HasSubstr("is not joined on this host"));

    /* An area that holds no lease: nothing to acquire. */
    s = TryAcquire(700, LeaseMode::kExclusive);
    EXPECT_EQ(s.code(), ErrorCode::kNotFound);
    EXPECT_THAT(s.message(), HasSubstr("no lease there"));
}

TEST_F(SanlockLeaseTest, FormatAreasWritesTheLockspaceAndTheDomainLeaseOnly)
{
    TempDir dir;
    SanlockGeometry fresh = MakeDomain(dir.path());
    ASSERT_TRUE(SanlockLeaseManager::FormatAreas(fresh).ok());
    EXPECT_EQ(FileSize(fresh.leases_path), 1u << 20); /* the domain lease alone */
    EXPECT_EQ(FileSize(fresh.ids_path), 1u << 20);
    EXPECT_EQ(FileSize(fresh.owners_path), 0u) << "owner leases are their hosts' to write";
}

TEST_F(SanlockLeaseTest, FourKiBSectorsWithTwoMiBAlignment)
{
    TempDir dir;
    SanlockGeometry g4k = MakeDomain(dir.path(), 4096, 2 << 20);
    ASSERT_TRUE(SanlockLeaseManager::FormatAreas(g4k).ok());
    EXPECT_EQ(FileSize(g4k.leases_path), 2u << 20);
    SanlockLeaseManager leases4k(g4k, 1);
    ASSERT_TRUE(leases4k.Join().ok());
    Status joined = leases4k.WaitJoined(kJoinTimeout);
    ASSERT_TRUE(joined.ok()) << joined.ToString();
    EXPECT_GT(leases4k.generation(), 0u);
    EXPECT_THAT(leases4k.LeaseXml(3), HasSubstr("offset='6291456'"));

    auto lease = leases4k.Acquire(LeaseArea::kLeases, 0, LeaseMode::kExclusive, 0ms);
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    Status busy = leases4k.Leave();
    EXPECT_EQ(busy.code(), ErrorCode::kBusy) << busy.ToString();
    lease->reset();
    Status left = leases4k.Leave();
    EXPECT_TRUE(left.ok()) << left.ToString();
    EXPECT_EQ(leases4k.generation(), 0u);
    EXPECT_THAT(leases4k.WaitJoined(0ms).message(), HasSubstr("is not joined"));
}

/* ~70 s: a dead host's lease is free once its host lease expires, with nobody's help. */
TEST(SanlockSlow, DeadHostLeaseExpiresByItself)
{
    if (!world->skip.empty())
        GTEST_SKIP() << world->skip;
    ASSERT_EQ(world->error, "");
    SanlockLeaseManager &leases = *world->leases;
    ASSERT_TRUE(leases.InitChunk(0).ok());
    {
        HostProcess holder(*world->b, world->g, 2);
        ASSERT_EQ(holder.Call("acquire 11 ex 5000"), "ok");
        world->b->Kill();
        holder.Kill();
        world->agent->Kill();
    }
    auto start = std::chrono::steady_clock::now();
    auto lease = leases.Acquire(LeaseArea::kLeases, 11, LeaseMode::kExclusive, 300s);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    std::cout << "a dead host's lease expired after "
              << std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::steady_clock::now() - start).count()
              << " s (io_timeout " << kIoTimeout << ")\n";
    std::string restored = world->RestoreHostB();
    if (!restored.empty())
        world->agent.reset();
    EXPECT_EQ(restored, "");
}

}  // namespace
}  // namespace sdm
