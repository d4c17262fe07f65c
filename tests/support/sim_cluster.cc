/* Implementation of the simulated cluster; see sim_cluster.h. */
#include "tests/support/sim_cluster.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>

#include "backend/engine/layout.h"

namespace sdm::testing {

namespace {

/* A WaitJob call may take its whole timeout; the D-Bus call must outlast it. */
constexpr int kCallSlackMs = 30000;
/* How long SimHost::Wait waits for a job. */
constexpr uint32_t kJobWaitMs = 120000;
constexpr auto kJoinLimit = std::chrono::seconds(60);
/* sdmd logs at debug level: a failure message shows the end of each log. */
constexpr size_t kLogTail = 24000;

bool BoolKey(GVariant *dict, const char *key)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_BOOLEAN);
    return value && g_variant_get_boolean(value);
}

GVariant *CallFor(GDBusConnection *connection, const char *method, GVariant *args,
                  int timeout_ms, GError **error)
{
    return g_dbus_connection_call_sync(connection, nullptr, "/org/libvirt/Sdm1",
                                       "org.libvirt.Sdm1.Manager", method, args, nullptr,
                                       G_DBUS_CALL_FLAGS_NONE, timeout_ms, nullptr, error);
}

std::string Describe(const GError *error)
{
    std::string name = ErrorName(error);
    return (name.empty() ? std::string("(no D-Bus error name)") : name) + ": " +
           (error ? error->message : "");
}

}  // namespace

GVariant *NoOptions()
{
    return g_variant_new_array(G_VARIANT_TYPE("{sv}"), nullptr, 0);
}

JobOutcome SubmitJob(GDBusConnection *connection, const char *method, GVariant *args)
{
    JobOutcome out;
    g_autoptr(GError) error = nullptr;
    g_autoptr(GVariant) reply = Call(connection, method, args, &error);
    if (!reply) {
        out.error_code = ErrorName(error);
        out.error_message = Describe(error);
        return out;
    }
    g_autoptr(GVariant) id = g_variant_get_child_value(reply, 0);
    out.submitted = true;
    out.id = g_variant_get_string(id, nullptr);
    return out;
}

JobOutcome WaitForJob(GDBusConnection *connection, JobOutcome out, uint32_t wait_ms)
{
    g_autoptr(GError) error = nullptr;
    g_autoptr(GVariant) reply =
        CallFor(connection, "WaitJob", g_variant_new("(su)", out.id.c_str(), wait_ms),
                static_cast<int>(wait_ms) + kCallSlackMs, &error);
    if (!reply) {
        out.state = "wait-failed";
        out.error_code = ErrorName(error);
        out.error_message = Describe(error);
        return out;
    }
    g_autoptr(GVariant) job = g_variant_get_child_value(reply, 0);
    out.state = Str(job, "state");
    out.error_code = Str(job, "error_code");
    out.error_message = Str(job, "error_message");
    g_autoptr(GVariant) result = g_variant_lookup_value(job, "result", G_VARIANT_TYPE_VARDICT);
    if (result) {
        out.slot = U64(result, "slot");
        out.path = Str(result, "path");
    }
    return out;
}

JobOutcome RunJob(GDBusConnection *connection, const char *method, GVariant *args,
                  uint32_t wait_ms)
{
    JobOutcome submitted = SubmitJob(connection, method, args);
    if (!submitted.submitted)
        return submitted;
    return WaitForJob(connection, std::move(submitted), wait_ms);
}

SimHost::SimHost(uint32_t id) : id_(id), sanlock_("host-" + std::to_string(id)) {}

SimHost::~SimHost()
{
    CloseConnection();
    if (daemon_.running()) {
        EXPECT_EQ(daemon_.Stop(), 0) << "sdmd " << id_ << " did not stop cleanly\n"
                                     << daemon_.Log();
    }
}

void SimHost::CloseConnection()
{
    if (!conn_)
        return;
    g_dbus_connection_close_sync(conn_, nullptr, nullptr);
    g_object_unref(conn_);
    conn_ = nullptr;
}

::testing::AssertionResult SimHost::StartSdmd(const std::vector<std::string> &env,
                                             const std::string &config)
{
    CloseConnection();
    std::vector<std::string> environment = env;
    environment.emplace_back("SDM_LOCKDEP=1");
    auto started = daemon_.Start("lease_backend=sanlock\nhost_id=" + std::to_string(id_) +
                                     "\nsanlock_run_dir=" + sanlock_.run_dir() + "\n" + config,
                                 environment);
    if (!started)
        return started;
    conn_ = NewConnection();
    if (!conn_)
        return ::testing::AssertionFailure() << "cannot connect to sdmd " << id_;
    return ::testing::AssertionSuccess();
}

bool SimHost::Answers()
{
    std::string error;
    g_autoptr(GVariant) status = Out("GetStatus", nullptr, &error);
    return status != nullptr;
}

void SimHost::KillSdmd()
{
    CloseConnection();
    daemon_.Kill();
}

void SimHost::Die()
{
    KillSdmd();
    sanlock_.Kill();
}

void SimHost::RestartSanlock()
{
    sanlock_.Restart();
}

::testing::AssertionResult SimHost::Attach(const std::string &root, const std::string &uuid)
{
    std::string error;
    g_autoptr(GVariant) attached =
        Out("AttachDomain", g_variant_new("(s)", root.c_str()), &error);
    if (!attached)
        return ::testing::AssertionFailure() << "host " << id_ << ": attach: " << error;
    if (!uuid.empty() && Str(attached, "uuid") != uuid)
        return ::testing::AssertionFailure() << "host " << id_ << " attached domain "
                                             << Str(attached, "uuid") << " at " << root
                                             << ", not " << uuid;
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult SimHost::WaitJoined(const std::string &uuid)
{
    bool joined = SpinUntil(
        [&] {
            std::string ignored;
            g_autoptr(GVariant) domain =
                Out("GetDomain", g_variant_new("(s)", uuid.c_str()), &ignored);
            return domain && BoolKey(domain, "joined");
        },
        std::chrono::duration_cast<std::chrono::milliseconds>(kJoinLimit));
    if (!joined)
        return ::testing::AssertionFailure() << "host " << id_ << " did not join the lockspace\n"
                                             << Diagnostics();
    return ::testing::AssertionSuccess();
}

GVariant *SimHost::Out(const char *method, GVariant *args, std::string *error)
{
    if (!conn_) {
        if (args)
            g_variant_unref(g_variant_ref_sink(args));
        *error = "sdmd " + std::to_string(id_) + " is down";
        return nullptr;
    }
    g_autoptr(GError) gerror = nullptr;
    g_autoptr(GVariant) reply = Call(conn_, method, args, &gerror);
    if (!reply) {
        *error = Describe(gerror);
        return nullptr;
    }
    return g_variant_n_children(reply) > 0 ? g_variant_get_child_value(reply, 0)
                                           : g_variant_new_boolean(TRUE);
}

GVariant *SimHost::OutOk(const char *method, GVariant *args)
{
    std::string error;
    GVariant *out = Out(method, args, &error);
    EXPECT_NE(out, nullptr) << "host " << id_ << ": " << method << ": " << error << "\n"
                            << Diagnostics();
    return out;
}

JobOutcome SimHost::Submit(const char *method, GVariant *args)
{
    if (!conn_) {
        g_variant_unref(g_variant_ref_sink(args));
        ADD_FAILURE() << "host " << id_ << ": " << method << ": sdmd is down";
        return {};
    }
    JobOutcome submitted = SubmitJob(conn_, method, args);
    EXPECT_TRUE(submitted.submitted) << "host " << id_ << ": " << method << ": "
                                     << submitted.error_message << "\n" << Diagnostics();
    return submitted;
}

JobOutcome SimHost::Wait(JobOutcome submitted)
{
    if (!submitted.submitted)
        return submitted;
    if (!conn_) {
        ADD_FAILURE() << "host " << id_ << ": sdmd went down before job " << submitted.id
                      << " ended";
        return submitted;
    }
    return WaitForJob(conn_, std::move(submitted), kJobWaitMs);
}

JobOutcome SimHost::Job(const char *method, GVariant *args)
{
    JobOutcome job = Wait(Submit(method, args));
    if (job.submitted) {
        EXPECT_EQ(job.state, "done") << "host " << id_ << ": " << method << ": "
                                     << job.error_message;
    }
    return job;
}

std::string SimHost::Step(const std::string &job_id)
{
    g_autoptr(GVariant) job = OutOk("GetJob", g_variant_new("(s)", job_id.c_str()));
    return job ? Str(job, "step") : "";
}

GDBusConnection *SimHost::NewConnection() const
{
    g_autoptr(GError) error = nullptr;
    return daemon_.Connect(&error);
}

std::string SimHost::Diagnostics() const
{
    std::string log = daemon_.Log();
    if (log.size() > kLogTail)
        log = "...\n" + log.substr(log.size() - kLogTail);
    return "--- sdmd " + std::to_string(id_) + " ---\n" + log + "--- sanlock " +
           std::to_string(id_) + " ---\n" + sanlock_.OutputTail();
}

SimCluster::SimCluster(int count, std::string root)
    : root_(root.empty() ? tmp_.Sub("domain") : std::move(root))
{
    for (int id = 1; id <= count; id++)
        hosts_.push_back(std::make_unique<SimHost>(id));
}

std::string SimCluster::ids_path() const
{
    return root_ + "/" + layout::kIds;
}

::testing::AssertionResult SimCluster::Start()
{
    auto started = StartSdmds();
    if (!started)
        return started;
    return FormatAndAttach();
}

::testing::AssertionResult SimCluster::StartSdmds(const SdmdSetup &setup)
{
    for (auto &h : hosts_) {
        std::vector<std::string> env = setup.env;
        if (h->id() == 1)
            env.insert(env.end(), setup.host1_env.begin(), setup.host1_env.end());
        auto started = h->StartSdmd(env, setup.config);
        if (!started)
            return started;
    }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult SimCluster::FormatAndAttach(uint32_t formatter,
                                                       const std::map<uint32_t, std::string> &views)
{
    if (mkdir(root_.c_str(), 0755) != 0 && errno != EEXIST)
        return ::testing::AssertionFailure() << "mkdir " << root_ << ": " << strerror(errno);
    std::string error;
    g_autoptr(GVariant) formatted = host(formatter).Out(
        "FormatDomain",
        g_variant_new("(s@a{sv})", root_.c_str(),
                      Opts({{"io_timeout", g_variant_new_uint32(1)}})),
        &error);
    if (!formatted)
        return ::testing::AssertionFailure() << "format: " << error;
    uuid_ = Str(formatted, "uuid");
    lockspace_ = Str(formatted, "lockspace");
    alignment_ = U64(formatted, "alignment");
    /* All attach first: the joins then run side by side. */
    for (auto &h : hosts_) {
        auto view = views.find(h->id());
        auto attached = h->Attach(view == views.end() ? root_ : view->second, uuid_);
        if (!attached)
            return attached;
    }
    for (auto &h : hosts_) {
        auto joined = h->WaitJoined(uuid_);
        if (!joined)
            return joined;
    }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult SimCluster::Kill(uint32_t id, bool host_death)
{
    SimHost &h = host(id);
    if (!host_death) {
        h.KillSdmd();
        return ::testing::AssertionSuccess();
    }
    h.Die();
    std::string released = ReleaseHostId(lockspace_, id, ids_path());
    if (!released.empty())
        return ::testing::AssertionFailure() << "release_id of host " << id << ": " << released;
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult SimCluster::Revive(uint32_t id, bool host_death,
                                              const std::vector<std::string> &env)
{
    SimHost &h = host(id);
    if (host_death)
        h.RestartSanlock();
    auto started = h.StartSdmd(env);
    if (!started)
        return started;
    auto attached = h.Attach(root_);
    if (!attached)
        return attached;
    return h.WaitJoined(uuid_);
}

bool SimCluster::List(SimHost &h, std::map<std::string, ListedVolume> *volumes,
                      std::string *error)
{
    g_autoptr(GVariant) list = h.Out("ListVolumes", g_variant_new("(s)", uuid_.c_str()), error);
    if (!list)
        return false;
    volumes->clear();
    for (size_t i = 0; i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) v = g_variant_get_child_value(list, i);
        ListedVolume lv;
        lv.name = Str(v, "name");
        lv.path = Str(v, "path");
        lv.legality = Str(v, "legality");
        lv.slot = U64(v, "slot");
        lv.capacity = U64(v, "capacity");
        (*volumes)[lv.name] = lv;
    }
    return true;
}

std::vector<std::string> SimCluster::VolumeNames(SimHost &h)
{
    std::map<std::string, ListedVolume> volumes;
    std::string error;
    EXPECT_TRUE(List(h, &volumes, &error)) << "host " << h.id() << ": " << error;
    std::vector<std::string> names;
    for (const auto &[name, volume] : volumes)
        names.push_back(name);
    return names;
}

std::string SimCluster::LockspaceState(SimHost &h)
{
    g_autoptr(GVariant) domain = h.OutOk("GetDomain", g_variant_new("(s)", uuid_.c_str()));
    return domain ? Str(domain, "lockspace_state") : "";
}

std::vector<std::string> SimCluster::CheckProblems(SimHost &h)
{
    std::string error;
    g_autoptr(GVariant) check = h.Out("CheckDomain", g_variant_new("(s)", uuid_.c_str()), &error);
    if (!check)
        return {"CheckDomain failed: " + error};
    std::vector<std::string> problems;
    g_autoptr(GVariant) list =
        g_variant_lookup_value(check, "problems", G_VARIANT_TYPE_STRING_ARRAY);
    if (!list)
        problems.emplace_back("CheckDomain's report has no problems list");
    for (size_t i = 0; list && i < g_variant_n_children(list); i++) {
        g_autoptr(GVariant) p = g_variant_get_child_value(list, i);
        problems.emplace_back(g_variant_get_string(p, nullptr));
    }
    uint32_t pending = U32(check, "pending");
    if (pending != 0)
        problems.push_back(std::to_string(pending) + " transactions pending");
    return problems;
}

SweepReport SimCluster::Sweep(SimHost &h)
{
    SweepReport report;
    g_autoptr(GVariant) swept =
        h.Out("CollectGarbage", g_variant_new("(sb)", uuid_.c_str(), FALSE), &report.error);
    if (!swept)
        return report;
    report.ok = true;
    report.seen = U32(swept, "seen");
    report.collected = U32(swept, "collected");
    report.live = U32(swept, "live");
    report.errors = U32(swept, "errors");
    return report;
}

::testing::AssertionResult SimCluster::CloneUntilCopying(SimHost &h, const std::string &source,
                                                        const std::string &name,
                                                        JobOutcome *clone)
{
    *clone = h.Submit("CloneVolume",
                      g_variant_new("(sss@a{sv})", uuid_.c_str(), source.c_str(), name.c_str(),
                                    Opts({{"format", g_variant_new_string("qcow2")}})));
    if (!clone->submitted)
        return ::testing::AssertionFailure() << "host " << h.id() << " refused the clone";
    if (!SpinUntil([&] { return h.Step(clone->id) == "clone.copy"; }))
        return ::testing::AssertionFailure() << "the clone on host " << h.id()
                                             << " did not reach its copy\n" << h.Diagnostics();
    return ::testing::AssertionSuccess();
}

std::vector<std::string> SimCluster::SharedSlots(const std::map<std::string, ListedVolume> &v)
{
    std::map<uint64_t, std::vector<std::string>> by_slot;
    for (const auto &[name, volume] : v)
        by_slot[volume.slot].push_back(name);
    std::vector<std::string> shared;
    for (const auto &[slot, names] : by_slot) {
        if (names.size() > 1)
            shared.insert(shared.end(), names.begin(), names.end());
    }
    return shared;
}

std::string SimCluster::Diagnostics() const
{
    std::string all;
    for (const auto &h : hosts_)
        all += h->Diagnostics();
    return all;
}

uint64_t SeedFromEnv(const char *env_name)
{
    const char *value = std::getenv(env_name);
    if (value && *value)
        return std::strtoull(value, nullptr, 0);
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) | device();
}

int SecondsFromEnv(const char *env_name, int fallback)
{
    const char *value = std::getenv(env_name);
    if (!value || !*value)
        return fallback;
    int seconds = std::atoi(value);
    return seconds > 0 ? seconds : fallback;
}

}  // namespace sdm::testing
