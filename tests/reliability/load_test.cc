/* Load: three simulated hosts (a private sanlock daemon and an sdmd each, the lock-order
 * checker on), eight D-Bus clients per host, each on its own connection and thread,
 * creating, cloning and deleting volumes in one shared domain for a fixed time
 * (SDM_LOAD_SECONDS, default 30). A client keeps a few volumes of its own, clones from
 * any client's, and now and then races the others for a few shared names.
 *
 * A call may fail only with a contention error the documentation names: busy (a lease or
 * lock held elsewhere, docs/locking.md), already-exists when two clients create one name,
 * not-found when a clone's source or a raced name was deleted first. Each kind is counted.
 * Any other error fails the test; so does a job not finished within kJobWaitMs (a hang:
 * the sdmd logs are printed) and an sdmd that dies (the lock-order checker aborts it on a
 * violation). Afterwards every host lists exactly the volumes the successful jobs say,
 * no lease slot is used twice, every host's consistency check passes and a sweep finds no
 * garbage. ops/s and p50/p99 latency per operation are printed, not asserted.
 *
 * Needs root (the sanlock daemons do); skipped otherwise. The client threads share one
 * Ledger under a mutex; everything else runs on the test's main thread. */
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sdm/types.h"
#include "tests/support/sim_cluster.h"

namespace sdm::testing {
namespace {

constexpr int kHosts = 3;
constexpr int kClientsPerHost = 8;
constexpr int kDefaultSeconds = 30;
/* Far beyond the 30 s lock timeout: a job still running after this is stuck. */
constexpr uint32_t kJobWaitMs = 120000;
constexpr uint64_t kCapacity = 4ull << 20;
/* A client deletes one of its volumes once it has this many, and sometimes before. */
constexpr size_t kMaxOwn = 5;
constexpr int kRaceNames = 4;

using Clock = std::chrono::steady_clock;

/* What one operation may fail with under contention. */
struct OpKind {
    const char *label;
    std::set<std::string> contention;
};

const OpKind kCreate{"create", {"busy"}};
const OpKind kClone{"clone", {"busy", "not-found"}};
const OpKind kDelete{"delete", {"busy"}};
const OpKind kRaceCreate{"race-create", {"busy", "already-exists"}};
const OpKind kRaceDelete{"race-delete", {"busy", "not-found"}};

struct OpStats {
    std::vector<double> ms;
    std::map<std::string, int> outcomes; /* "done" or the error code */
    std::map<std::string, std::string> samples; /* the first message of each error code */
};

/* Shared by the client threads. */
class Ledger {
public:
    void Record(const OpKind &kind, const std::string &object, const JobOutcome &out,
                double ms, int host)
    {
        std::lock_guard lock(mutex_);
        OpStats &stats = stats_[kind.label];
        if (!out.finished()) {
            hung_.push_back("host " + std::to_string(host) + ": " + kind.label + " " + object +
                            " (job " + out.id + "): " + out.state + " " +
                            out.error_message);
            return;
        }
        stats.ms.push_back(ms);
        if (out.state == "done") {
            stats.outcomes["done"]++;
            return;
        }
        stats.outcomes[out.error_code]++;
        stats.samples.emplace(out.error_code, out.error_message);
        if (!kind.contention.count(out.error_code))
            unexpected_.push_back("host " + std::to_string(host) + ": " + kind.label + " " +
                                  object + ": " + out.state + ": " + out.error_code + ": " +
                                  out.error_message);
    }

    void AddSource(const std::string &name)
    {
        std::lock_guard lock(mutex_);
        sources_.push_back(name);
    }

    void RemoveSource(const std::string &name)
    {
        std::lock_guard lock(mutex_);
        sources_.erase(std::remove(sources_.begin(), sources_.end(), name), sources_.end());
    }

    std::string PickSource(std::mt19937_64 &rng)
    {
        std::lock_guard lock(mutex_);
        return sources_[rng() % sources_.size()];
    }

    void RaceDone(const std::string &name, int delta)
    {
        std::lock_guard lock(mutex_);
        race_net_[name] += delta;
    }

    void Keep(const std::vector<std::string> &own)
    {
        std::lock_guard lock(mutex_);
        kept_.insert(own.begin(), own.end());
    }

    /* Read after the clients are joined. */
    const std::map<std::string, OpStats> &stats() const { return stats_; }
    const std::vector<std::string> &hung() const { return hung_; }
    const std::vector<std::string> &unexpected() const { return unexpected_; }
    const std::map<std::string, int> &race_net() const { return race_net_; }
    const std::set<std::string> &kept() const { return kept_; }

private:
    std::mutex mutex_;
    std::map<std::string, OpStats> stats_;
    std::vector<std::string> hung_;
    std::vector<std::string> unexpected_;
    std::vector<std::string> sources_;
    std::map<std::string, int> race_net_;
    std::set<std::string> kept_;
};

double Percentile(std::vector<double> v, double p)
{
    if (v.empty())
        return 0;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

/* One D-Bus client: its own connection to its host's sdmd, its own volumes. */
class Client {
public:
    Client(int host, int index, GDBusConnection *connection, const std::string &uuid,
           Ledger &ledger, uint64_t seed)
        : host_(host), index_(index), connection_(connection), uuid_(uuid), ledger_(ledger),
          rng_(seed) {}

    void Run(Clock::time_point deadline)
    {
        while (Clock::now() < deadline && !stuck_) {
            int r = static_cast<int>(rng_() % 100);
            if (!own_.empty() && (own_.size() >= kMaxOwn || r < 25))
                DeleteOwn();
            else if (r < 55)
                Create(kCreate, NewName(), true);
            else if (r < 88)
                Clone();
            else
                Race();
        }
        ledger_.Keep(own_);
    }

private:
    std::string NewName()
    {
        return "h" + std::to_string(host_) + "c" + std::to_string(index_) + "-" +
               std::to_string(next_++);
    }

    JobOutcome Timed(const OpKind &kind, const std::string &object, const char *method,
                     GVariant *args)
    {
        auto start = Clock::now();
        JobOutcome out = RunJob(connection_, method, args, kJobWaitMs);
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        ledger_.Record(kind, object, out, ms, host_);
        stuck_ = !out.finished();
        return out;
    }

    void Create(const OpKind &kind, const std::string &name, bool mine)
    {
        JobOutcome out = Timed(kind, name, "CreateVolume",
                               g_variant_new("(sst@a{sv})", uuid_.c_str(), name.c_str(),
                                             kCapacity, NoOptions()));
        if (out.state != "done")
            return;
        if (mine)
            Own(name);
        else
            ledger_.RaceDone(name, +1);
    }

    void Clone()
    {
        std::string source = ledger_.PickSource(rng_);
        std::string name = NewName();
        JobOutcome out = Timed(kClone, source + " -> " + name, "CloneVolume",
                               g_variant_new("(sss@a{sv})", uuid_.c_str(), source.c_str(),
                                             name.c_str(), NoOptions()));
        if (out.state == "done")
            Own(name);
    }

    void DeleteOwn()
    {
        size_t i = rng_() % own_.size();
        std::string name = own_[i];
        ledger_.RemoveSource(name);
        JobOutcome out = Timed(kDelete, name, "DeleteVolume",
                               g_variant_new("(ss)", uuid_.c_str(), name.c_str()));
        if (out.state == "done")
            own_.erase(own_.begin() + static_cast<long>(i));
        else
            ledger_.AddSource(name);
    }

    void Race()
    {
        std::string name = "race-" + std::to_string(rng_() % kRaceNames);
        if (rng_() % 2) {
            Create(kRaceCreate, name, false);
            return;
        }
        JobOutcome out = Timed(kRaceDelete, name, "DeleteVolume",
                               g_variant_new("(ss)", uuid_.c_str(), name.c_str()));
        if (out.state == "done")
            ledger_.RaceDone(name, -1);
    }

    void Own(const std::string &name)
    {
        own_.push_back(name);
        ledger_.AddSource(name);
    }

    int host_;
    int index_;
    GDBusConnection *connection_;
    std::string uuid_;
    Ledger &ledger_;
    std::mt19937_64 rng_;
    std::vector<std::string> own_;
    int next_ = 0;
    bool stuck_ = false;
};

TEST(Load, ThreeHostsEightClientsEach)
{
    if (geteuid() != 0)
        GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
    const int seconds = SecondsFromEnv("SDM_LOAD_SECONDS", kDefaultSeconds);
    const uint64_t seed = SeedFromEnv("SDM_LOAD_SEED");
    printf("load: %d hosts x %d clients for %d s, seed %llu (SDM_LOAD_SECONDS, SDM_LOAD_SEED)\n",
           kHosts, kClientsPerHost, seconds, static_cast<unsigned long long>(seed));

    SimCluster cluster(kHosts);
    ASSERT_TRUE(cluster.Start());
    const std::string uuid = cluster.uuid();
    JobOutcome base = RunJob(cluster.host(1).connection(), "CreateVolume",
                             g_variant_new("(sst@a{sv})", uuid.c_str(), "base", kCapacity,
                                           NoOptions()),
                             kJobWaitMs);
    ASSERT_EQ(base.state, "done") << base.error_message;

    Ledger ledger;
    ledger.AddSource("base");
    std::vector<GDBusConnection *> connections;
    std::vector<std::unique_ptr<Client>> clients;
    for (int h = 1; h <= kHosts; h++) {
        for (int c = 0; c < kClientsPerHost; c++) {
            GDBusConnection *connection = cluster.host(h).NewConnection();
            ASSERT_NE(connection, nullptr) << "host " << h << " refused client " << c;
            connections.push_back(connection);
            clients.push_back(std::make_unique<Client>(h, c, connection, uuid, ledger,
                                                       seed + clients.size()));
        }
    }
    auto start = Clock::now();
    auto deadline = start + std::chrono::seconds(seconds);
    std::vector<std::thread> threads;
    for (auto &client : clients)
        threads.emplace_back([&client, deadline] { client->Run(deadline); });
    for (auto &t : threads)
        t.join();
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    for (GDBusConnection *connection : connections) {
        g_dbus_connection_close_sync(connection, nullptr, nullptr);
        g_object_unref(connection);
    }

    int total = 0;
    printf("%-12s %6s %8s %9s %9s  outcomes\n", "operation", "calls", "ops/s", "p50 ms",
           "p99 ms");
    for (const auto &[label, stats] : ledger.stats()) {
        std::string outcomes;
        for (const auto &[what, count] : stats.outcomes)
            outcomes += " " + what + "=" + std::to_string(count);
        total += static_cast<int>(stats.ms.size());
        printf("%-12s %6zu %8.2f %9.1f %9.1f %s\n", label.c_str(), stats.ms.size(),
               static_cast<double>(stats.ms.size()) / elapsed, Percentile(stats.ms, 0.5),
               Percentile(stats.ms, 0.99), outcomes.c_str());
        RecordProperty(label + "_p99_ms", std::to_string(Percentile(stats.ms, 0.99)));
    }
    for (const auto &[label, stats] : ledger.stats()) {
        for (const auto &[code, message] : stats.samples)
            printf("  %s %s, e.g.: %s\n", label.c_str(), code.c_str(), message.c_str());
    }
    printf("all: %d calls in %.1f s, %.2f ops/s\n", total, elapsed,
           static_cast<double>(total) / elapsed);
    RecordProperty("ops_per_s", std::to_string(static_cast<double>(total) / elapsed));

    std::string hung;
    for (const auto &h : ledger.hung())
        hung += h + "\n";
    ASSERT_EQ(hung, "") << "calls that did not finish within " << kJobWaitMs << " ms:\n"
                        << cluster.Diagnostics();
    std::string unexpected;
    for (const auto &u : ledger.unexpected())
        unexpected += u + "\n";
    EXPECT_EQ(unexpected, "") << "errors that are not contention";

    std::set<std::string> expected = ledger.kept();
    expected.insert("base");
    for (const auto &[name, net] : ledger.race_net()) {
        EXPECT_TRUE(net == 0 || net == 1)
            << name << ": " << net << " more creates than deletes succeeded";
        if (net == 1)
            expected.insert(name);
    }
    for (int h = 1; h <= kHosts; h++) {
        SimHost &host = cluster.host(h);
        std::map<std::string, ListedVolume> listed;
        std::string error;
        ASSERT_TRUE(cluster.List(host, &listed, &error)) << "host " << h << ": " << error;
        std::set<std::string> names;
        for (const auto &[name, v] : listed) {
            names.insert(name);
            EXPECT_EQ(v.legality, LegalityName(Legality::kLegal)) << name;
            struct stat st;
            EXPECT_EQ(stat(v.path.c_str(), &st), 0) << name << ": " << v.path;
            EXPECT_EQ(static_cast<uint64_t>(st.st_size), v.capacity) << name;
        }
        EXPECT_EQ(names, expected) << "host " << h << " lists other volumes than the jobs made";
        std::vector<std::string> shared = SimCluster::SharedSlots(listed);
        EXPECT_TRUE(shared.empty()) << "volumes sharing a lease slot: " << shared.size();
        for (const auto &name : shared)
            ADD_FAILURE() << name << " shares slot " << listed[name].slot;
        std::string problems;
        for (const auto &p : cluster.CheckProblems(host))
            problems += p + "\n";
        EXPECT_EQ(problems, "") << "host " << h << "'s check";
    }
    SweepReport swept = cluster.Sweep(cluster.host(2));
    ASSERT_TRUE(swept.ok) << swept.error;
    EXPECT_EQ(swept.collected, 0u) << "the jobs left garbage behind";
    EXPECT_EQ(swept.errors, 0u);
    printf("after the load: %zu volumes, consistent on %d hosts, sweep saw %u markers\n",
           expected.size(), kHosts, swept.seen);
}

}  // namespace
}  // namespace sdm::testing
