/* The randomized soak: three simulated hosts share a domain; each round every host gets a
 * few random creates, clones and deletes at once, and often one host is killed in the
 * middle of them: its sdmd (SIGKILL, as a crash, at a random moment or at a random named
 * step through SDM_CRASH_AT), or the whole host (sdmd and its sanlock daemon, then
 * `sanlock direct release_id` as an administrator would). The host comes back
 * and attaches again, a garbage collection sweep runs, and the invariants are checked:
 *
 * - every host lists the same volumes, each LEGAL, no two on one lease slot;
 * - every volume whose create or clone succeeded and which no delete removed is listed,
 *   with the content it had (a SHA-256 kept by the test; data is written into volumes
 *   between rounds, as a VM would);
 * - a volume made by an interrupted job is either absent or complete (a clone holds its
 *   source's content, a create zeros); nothing else is listed;
 * - the consistency check passes with nothing pending, and a second sweep finds nothing:
 *   the first ones (the revived host's, which alone may collect its predecessor's
 *   garbage, then a random host's) left no garbage once the owners were dead.
 *
 * A job that fails on a live host may fail only with busy or not-found (another host's
 * delete went first). Every broken invariant is a violation, printed with its round; the
 * test fails if there is any. SDM_SOAK_SECONDS sets the length (default 30; the 'slow'
 * suite runs 600); SDM_SOAK_SEED replays a run: the seed is printed first. The timing of
 * kills depends on the machine, so a replay repeats the choices, not every interleaving.
 *
 * Needs root (the sanlock daemons do); skipped otherwise. Single-threaded. */
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backend/engine/crashpoint.h"
#include "sdm/types.h"
#include "tests/support/sim_cluster.h"

namespace sdm::testing {
namespace {

constexpr int kHosts = 3;
constexpr int kDefaultSeconds = 30; /* the default suite's share of CI's time */
constexpr uint32_t kJobWaitMs = 120000;
constexpr uint64_t kMiB = 1ull << 20;
/* Above this many volumes a round prefers deletes, so the domain stays small. */
constexpr size_t kMaxVolumes = 20;
constexpr int kMaxOpsPerHost = 3;
constexpr int kCrashAtPercent = 30;
constexpr int kKillPercent = 40; /* of the rounds without a crash at a step */
constexpr int kHostDeathPercent = 25; /* of the kills */
constexpr int kMaxKillDelayMs = 400;
constexpr uint64_t kPatternBytes = 256 * 1024;

using Clock = std::chrono::steady_clock;

/* A committed volume as the test knows it. */
struct Known {
    std::string sha;
    uint64_t capacity = 0;
};

/* One job of a round. */
struct Planned {
    uint32_t host = 0;
    std::string op; /* "create", "clone", "delete" */
    std::string name;
    std::string source;
    Known source_state; /* a clone's source as the round began */
    uint64_t capacity = 0;
    JobOutcome job;
};

class Soak {
public:
    explicit Soak(uint64_t seed) : cluster_(kHosts), seed_(seed), rng_(seed) {}

    ::testing::AssertionResult Start() { return cluster_.Start(); }

    /* One round; a failure here (a host that cannot come back) ends the soak. */
    ::testing::AssertionResult Round()
    {
        round_++;
        std::vector<Planned> jobs = Plan();
        /* A crash at a named step: the host's sdmd starts again with SDM_CRASH_AT and gets
         * a job of that operation; it kills itself when the job reaches the step. */
        uint32_t armed = 0;
        std::string step;
        if (!known_.empty() && Percent() < kCrashAtPercent) {
            static const char *const kOps[] = {"create", "clone", "delete"};
            std::string op = kOps[rng_() % 3];
            std::vector<std::string> steps = StepsOf(op);
            step = steps[rng_() % steps.size()];
            armed = 1 + static_cast<uint32_t>(rng_() % kHosts);
            auto restarted = cluster_.Kill(armed, false);
            if (restarted)
                restarted = cluster_.Revive(armed, false, {"SDM_CRASH_AT=" + step});
            if (!restarted)
                return restarted;
            jobs.push_back(PlanOne(armed, op, {}));
        }
        for (auto &p : jobs) {
            p.job = SubmitJob(cluster_.host(p.host).connection(), Method(p), Args(p));
            ops_++;
            /* The armed host may have crashed at its step already. */
            if (!p.job.submitted && p.host != armed)
                Violation("host " + std::to_string(p.host) + " refused " + p.op + " " +
                          p.name + ": " + p.job.error_message);
        }
        uint32_t victim = armed;
        bool death = false;
        if (armed) {
            /* Every job ends, or the armed sdmd dies and its waits end with it. */
            for (const auto &p : jobs) {
                if (p.job.submitted)
                    WaitForJob(cluster_.host(p.host).connection(), p.job, kJobWaitMs);
            }
            /* Its job may have failed busy before the step: then this is a plain kill. */
            bool crashed = !cluster_.host(armed).Answers();
            crash_steps_[step + (crashed ? "" : " (not reached)")]++;
            auto killed = cluster_.Kill(armed, false);
            if (!killed)
                return killed;
        } else if (Percent() < kKillPercent) {
            victim = 1 + static_cast<uint32_t>(rng_() % kHosts);
            death = Percent() < kHostDeathPercent;
            WaitForKillMoment(victim, jobs);
            auto killed = cluster_.Kill(victim, death);
            if (!killed)
                return killed;
            (death ? host_deaths_ : sdmd_kills_)++;
        }
        std::vector<Planned> finished, interrupted;
        for (auto &p : jobs) {
            if (!p.job.submitted)
                continue;
            if (p.host == victim) {
                interrupted.push_back(p);
                continue;
            }
            p.job = WaitForJob(cluster_.host(p.host).connection(), p.job, kJobWaitMs);
            finished.push_back(p);
        }
        if (victim) {
            auto revived = cluster_.Revive(victim, death);
            if (!revived)
                return revived;
        }
        Apply(finished);
        SweepAndCheck(interrupted, victim);
        WriteData();
        return ::testing::AssertionSuccess();
    }

    void Report() const
    {
        std::string codes, steps;
        for (const auto &[code, count] : outcomes_)
            codes += " " + code + "=" + std::to_string(count);
        for (const auto &[step, count] : killed_at_)
            steps += " " + step + "=" + std::to_string(count);
        printf("soak: seed %llu, %d rounds, %d operations (%s ), %d sdmd kills, %d host deaths, "
               "%d interrupted jobs (%d committed, %d not), %u transactions swept away, "
               "%zu volumes at the end, %zu violations\n",
               static_cast<unsigned long long>(seed_), round_, ops_, codes.c_str(), sdmd_kills_,
               host_deaths_, interrupted_, interrupted_committed_,
               interrupted_ - interrupted_committed_, collected_, known_.size(),
               violations_.size());
        printf("soak: the killed hosts' jobs were at:%s\n", steps.c_str());
        std::string crashes;
        for (const auto &[step, count] : crash_steps_)
            crashes += " " + step + "=" + std::to_string(count);
        printf("soak: %d crashes at a named step:%s\n", crash_count(), crashes.c_str());
    }

    int crash_count() const
    {
        int n = 0;
        for (const auto &[step, count] : crash_steps_)
            n += count;
        return n;
    }
    const std::vector<std::string> &violations() const { return violations_; }
    std::string Diagnostics() const { return cluster_.Diagnostics(); }

private:
    int Percent() { return static_cast<int>(rng_() % 100); }

    /* The steps the victim's jobs are at, as "step" or "state" ("pending", "done"). */
    std::vector<std::string> VictimSteps(uint32_t victim, const std::vector<Planned> &jobs)
    {
        std::vector<std::string> steps;
        for (const auto &p : jobs) {
            if (p.host != victim || !p.job.submitted)
                continue;
            std::string error;
            g_autoptr(GVariant) job = cluster_.host(victim).Out(
                "GetJob", g_variant_new("(s)", p.job.id.c_str()), &error);
            std::string state = job ? Str(job, "state") : "unknown";
            steps.push_back(state == "running" ? p.op + ":" + Str(job, "step") : state);
        }
        return steps;
    }

    /* A running job past its first step, which waits for the locks. */
    static bool InsideTransaction(const std::string &step)
    {
        return step.find(':') != step.npos && !step.ends_with(".begin");
    }

    /* Half the kills wait until one of the victim's jobs is past its locks, so that they
     * land inside transactions; the others come at a random moment. The steps the jobs
     * were at are counted (a job may move on before the kill lands). */
    void WaitForKillMoment(uint32_t victim, const std::vector<Planned> &jobs)
    {
        if (Percent() < 50) {
            auto limit = Clock::now() + std::chrono::milliseconds(kMaxKillDelayMs * 5);
            while (Clock::now() < limit) {
                auto steps = VictimSteps(victim, jobs);
                if (std::any_of(steps.begin(), steps.end(), InsideTransaction))
                    break;
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % 20));
        } else {
            std::this_thread::sleep_for(std::chrono::milliseconds(rng_() % kMaxKillDelayMs));
        }
        for (const auto &step : VictimSteps(victim, jobs))
            killed_at_[step]++;
    }

    std::string Pick(const std::set<std::string> &exclude)
    {
        std::vector<std::string> names;
        for (const auto &[name, k] : known_) {
            if (!exclude.count(name))
                names.push_back(name);
        }
        return names.empty() ? "" : names[rng_() % names.size()];
    }

    /* A job of `op` on `h` (a delete or clone needs a committed volume; without one it
     * becomes a create). A delete never picks a volume in `deleting`. */
    Planned PlanOne(uint32_t h, const std::string &op, const std::set<std::string> &deleting)
    {
        Planned p;
        p.host = h;
        p.op = op;
        if (op == "delete") {
            p.name = Pick(deleting);
            if (!p.name.empty())
                return p;
        } else if (op == "clone" && !known_.empty()) {
            p.source = Pick({});
            p.source_state = known_.at(p.source);
            p.name = "v" + std::to_string(next_++);
            return p;
        }
        p.op = "create";
        p.name = "v" + std::to_string(next_++);
        p.capacity = (1 + rng_() % 4) * kMiB;
        return p;
    }

    std::vector<Planned> Plan()
    {
        std::vector<Planned> jobs;
        std::set<std::string> deleting;
        for (uint32_t h = 1; h <= kHosts; h++) {
            int count = 1 + static_cast<int>(rng_() % kMaxOpsPerHost);
            for (int i = 0; i < count; i++) {
                int r = Percent();
                bool crowded = known_.size() >= kMaxVolumes;
                const char *op = (crowded ? r < 60 : r < 25) ? "delete"
                                 : r < 65                   ? "clone"
                                                            : "create";
                jobs.push_back(PlanOne(h, op, deleting));
                if (jobs.back().op == "delete")
                    deleting.insert(jobs.back().name);
            }
        }
        return jobs;
    }

    static const char *Method(const Planned &p)
    {
        if (p.op == "create")
            return "CreateVolume";
        return p.op == "clone" ? "CloneVolume" : "DeleteVolume";
    }

    GVariant *Args(const Planned &p) const
    {
        const char *d = cluster_.uuid().c_str();
        if (p.op == "create")
            return g_variant_new("(sst@a{sv})", d, p.name.c_str(), p.capacity, NoOptions());
        if (p.op == "clone")
            return g_variant_new("(sss@a{sv})", d, p.source.c_str(), p.name.c_str(),
                                 NoOptions());
        return g_variant_new("(ss)", d, p.name.c_str());
    }

    /* What a volume made by `p` must hold: zeros for a create, its source's content for a
     * clone (sources never change during a round, though a delete may remove one). */
    Known Expected(const Planned &p)
    {
        if (p.op == "clone")
            return p.source_state;
        return {ZeroSha(p.capacity), p.capacity};
    }

    std::string ZeroSha(uint64_t capacity)
    {
        auto it = zero_sha_.find(capacity);
        if (it != zero_sha_.end())
            return it->second;
        std::string path = scratch_.Sub("zeros");
        WriteFile(path, "");
        EXPECT_EQ(truncate(path.c_str(), static_cast<off_t>(capacity)), 0);
        return zero_sha_[capacity] = FileSha256(path);
    }

    /* Jobs that ran to their end on live hosts: made volumes first (a clone's source may
     * be deleted in the same round), deletes after. */
    void Apply(const std::vector<Planned> &finished)
    {
        std::map<std::string, Known> made;
        for (const auto &p : finished) {
            std::string what = "host " + std::to_string(p.host) + ": " + p.op + " " + p.name;
            if (!p.job.finished()) {
                Violation(what + " did not finish within " + std::to_string(kJobWaitMs) +
                          " ms: " + p.job.state + " " + p.job.error_message);
                continue;
            }
            outcomes_[p.job.state == "done" ? p.op + ":done" : p.op + ":" + p.job.error_code]++;
            if (p.job.state != "done") {
                if (p.job.error_code != "busy" && p.job.error_code != "not-found")
                    Violation(what + " failed with more than contention: " +
                              p.job.error_code + ": " + p.job.error_message);
                continue;
            }
            if (p.op != "delete")
                made[p.name] = Expected(p);
        }
        for (const auto &p : finished) {
            if (p.op == "delete" && p.job.state == "done")
                known_.erase(p.name);
        }
        for (auto &[name, k] : made) {
            known_[name] = k;
            fresh_.insert(name);
        }
    }

    /* `revived`, if not 0, is the host that came back this round: only it may collect
     * what its previous sdmd left (the others see that owner alive again), and it does at
     * once. Then a random host sweeps. */
    void SweepAndCheck(const std::vector<Planned> &interrupted, uint32_t revived)
    {
        uint32_t sweeper = 1 + static_cast<uint32_t>(rng_() % kHosts);
        for (uint32_t h : {revived, sweeper}) {
            if (h == 0)
                continue;
            SweepReport swept = cluster_.Sweep(cluster_.host(h));
            collected_ += swept.collected;
            if (!swept.ok || swept.errors != 0)
                Violation("the sweep on host " + std::to_string(h) + " failed: " +
                          swept.error + " (" + std::to_string(swept.errors) + " errors)");
        }

        std::map<std::string, ListedVolume> listed;
        std::string error;
        if (!cluster_.List(cluster_.host(1), &listed, &error)) {
            Violation("ListVolumes on host 1: " + error);
            return;
        }
        for (uint32_t h = 2; h <= kHosts; h++) {
            std::map<std::string, ListedVolume> other;
            if (!cluster_.List(cluster_.host(h), &other, &error))
                Violation("ListVolumes on host " + std::to_string(h) + ": " + error);
            else if (Names(other) != Names(listed))
                Violation("host " + std::to_string(h) + " lists other volumes than host 1");
        }
        for (const auto &name : SimCluster::SharedSlots(listed))
            Violation(name + " shares lease slot " + std::to_string(listed[name].slot));

        ResolveInterrupted(interrupted, listed);
        for (const auto &[name, v] : listed) {
            if (v.legality != LegalityName(Legality::kLegal))
                Violation(name + " is listed " + v.legality + " after the sweep");
            if (!known_.count(name))
                Violation(name + " is listed, but no job that made it succeeded");
        }
        for (auto it = known_.begin(); it != known_.end();) {
            auto found = listed.find(it->first);
            if (found == listed.end()) {
                Violation(it->first + " was committed and is gone");
                it = known_.erase(it);
                continue;
            }
            std::string sha = FileSha256(found->second.path);
            if (sha != it->second.sha || found->second.capacity != it->second.capacity) {
                Violation(it->first + "'s content or capacity changed");
                it->second = {sha, found->second.capacity};
            }
            paths_[it->first] = found->second.path;
            ++it;
        }

        for (const auto &p : cluster_.CheckProblems(cluster_.host(sweeper)))
            Violation("check after the sweep: " + p);
        SweepReport again = cluster_.Sweep(cluster_.host(1 + sweeper % kHosts));
        if (!again.ok || again.collected != 0 || again.live != 0)
            Violation("a second sweep still found garbage: collected " +
                      std::to_string(again.collected) + ", live " +
                      std::to_string(again.live) + " " + again.error);
    }

    /* A job of a killed host either committed or left nothing visible. */
    void ResolveInterrupted(const std::vector<Planned> &interrupted,
                            const std::map<std::string, ListedVolume> &listed)
    {
        for (const auto &p : interrupted) {
            interrupted_++;
            bool present = listed.count(p.name) > 0;
            if (p.op == "delete") {
                if (!present) {
                    known_.erase(p.name);
                    interrupted_committed_++;
                }
                continue;
            }
            if (!present)
                continue;
            interrupted_committed_++;
            Known expected = Expected(p);
            const ListedVolume &v = listed.at(p.name);
            if (FileSha256(v.path) != expected.sha || v.capacity != expected.capacity)
                Violation(p.op + " " + p.name + ", interrupted, is listed with other content "
                          "than it must have");
            known_[p.name] = expected;
            fresh_.insert(p.name);
        }
    }

    /* Half the volumes made this round get data, as a VM would write it. */
    void WriteData()
    {
        for (const auto &name : fresh_) {
            auto it = known_.find(name);
            if (it == known_.end() || rng_() % 2)
                continue;
            const std::string &path = paths_[name];
            uint64_t offset = rng_() % (it->second.capacity - kPatternBytes);
            WritePattern(path, offset, kPatternBytes, static_cast<uint32_t>(rng_()));
            it->second.sha = FileSha256(path);
        }
        fresh_.clear();
    }

    static std::set<std::string> Names(const std::map<std::string, ListedVolume> &listed)
    {
        std::set<std::string> names;
        for (const auto &[name, v] : listed)
            names.insert(name);
        return names;
    }

    void Violation(const std::string &what)
    {
        std::string line = "round " + std::to_string(round_) + ": " + what;
        printf("VIOLATION %s\n", line.c_str());
        violations_.push_back(line);
    }

    SimCluster cluster_;
    TempDir scratch_;
    uint64_t seed_;
    std::mt19937_64 rng_;
    std::map<std::string, Known> known_;
    std::map<std::string, std::string> paths_;
    std::set<std::string> fresh_;
    std::map<uint64_t, std::string> zero_sha_;
    std::map<std::string, int> outcomes_;
    std::map<std::string, int> killed_at_;
    std::map<std::string, int> crash_steps_;
    std::vector<std::string> violations_;
    int next_ = 0;
    int round_ = 0;
    int ops_ = 0;
    int sdmd_kills_ = 0;
    int host_deaths_ = 0;
    int interrupted_ = 0;
    int interrupted_committed_ = 0;
    uint32_t collected_ = 0;
};

TEST(Soak, RandomOperationsAndKills)
{
    if (geteuid() != 0)
        GTEST_SKIP() << "sanlock daemons need root (mount namespaces, /var/log)";
    const int seconds = SecondsFromEnv("SDM_SOAK_SECONDS", kDefaultSeconds);
    const uint64_t seed = SeedFromEnv("SDM_SOAK_SEED");
    printf("soak: %d hosts for %d s, seed %llu (replay: SDM_SOAK_SEED=%llu)\n", kHosts, seconds,
           static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
    RecordProperty("seed", std::to_string(seed));

    Soak soak(seed);
    ASSERT_TRUE(soak.Start());
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < deadline) {
        auto round = soak.Round();
        if (!round) {
            soak.Report();
            FAIL() << round.message() << "\nseed " << seed;
        }
    }
    soak.Report();
    std::string all;
    for (const auto &v : soak.violations())
        all += v + "\n";
    EXPECT_EQ(all, "") << "seed " << seed << " (SDM_SOAK_SEED=" << seed << " replays it)\n"
                       << soak.Diagnostics();
}

}  // namespace
}  // namespace sdm::testing
