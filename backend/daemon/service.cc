/* Implementation of sdmd's service; see service.h.
 *
 * The shape of every method: check the arguments on the main loop (cheap, no storage),
 * then either answer at once (state the daemon holds), submit a job and answer with its
 * id (changes to storage), or run the call on the worker pool and answer from there
 * (reads of storage). Job events travel from job threads through one queue to the main
 * loop, which logs them, emits them as signals and completes the calls waiting on them. */
#include "backend/daemon/service.h"

#include <gio/gunixfdlist.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "backend/daemon/dbus_api.h"
#include "backend/daemon/log.h"
#include "backend/daemon/sdm1-dbus.h"
#include "backend/engine/fileio.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/sanlock/sanlock_lease.h"

namespace sdm::daemon {

namespace {

constexpr char kHostLive[] = "LIVE";

SanlockGeometry SanlockGeometryOf(const DomainInfo &info)
{
    SanlockGeometry g;
    g.lockspace = info.lockspace;
    g.ids_path = info.path + "/" + layout::kIds;
    g.leases_path = info.path + "/" + layout::kLeases;
    g.owners_path = info.path + "/" + layout::kOwners;
    g.alignment = info.alignment;
    g.sector_size = info.sector_size;
    g.io_timeout = info.io_timeout;
    return g;
}

std::string CanonicalPath(const std::string &path)
{
    g_autofree char *canonical = g_canonicalize_filename(path.c_str(), "/");
    return canonical;
}

std::optional<std::string> RealPath(const std::string &path)
{
    g_autofree char *real = realpath(path.c_str(), nullptr);
    if (!real)
        return std::nullopt;
    return std::string(real);
}

void ReturnDict(GDBusMethodInvocation *invocation, GVariant *dict)
{
    g_dbus_method_invocation_return_value(invocation, g_variant_new("(@a{sv})", dict));
}

/* Answers with a volume of the domain `uuid`, or with why there is none. */
void ReturnVolume(GDBusMethodInvocation *invocation, const Result<VolumeInfo> &volume,
                  const std::string &uuid)
{
    if (!volume.ok())
        return dbus::ReturnError(invocation, volume.status());
    ReturnDict(invocation, dbus::VolumeToDict(*volume, uuid));
}

Status NoSuchJob(const char *id)
{
    return Status::Error(ErrorCode::kNotFound,
                         Printf(_("no job '%s'; it may have finished and expired, list the jobs "
                                  "to see the current ids"),
                                id));
}

std::string JobLabel(const JobSnapshot &job)
{
    return Printf("%s %s '%s'", job.id.c_str(), job.type.c_str(), job.object.c_str());
}

}  // namespace

/* An attached domain. With sanlock leases the engine's Domain is opened only once the
 * lockspace is joined, because the markers it writes carry this host's generation. */
struct Service::AttachedDomain {
    DomainInfo info;              /* as read at attach; immutable afterwards */
    std::string path;             /* where the engine opens it */
    DomainOptions options;        /* generation filled in by Ready() */
    std::shared_ptr<SanlockLeaseManager> sanlock; /* null with local leases */
    mutable std::mutex open_mu;
    std::shared_ptr<Domain> domain; /* guarded by open_mu; null until Ready() opened it */
    bool closed = false;            /* guarded by open_mu: detached, never to open again */

    /* The engine's Domain, once the lockspace is joined (waiting at most the lock
     * timeout). Blocks: job threads and worker calls only. */
    Result<std::shared_ptr<Domain>> Ready();
    /* Runs `use` on the ready Domain, or returns why it is not ready. */
    template <typename F>
    auto With(F use) -> decltype(use(std::declval<Domain &>()))
    {
        auto ready = Ready();
        if (!ready.ok())
            return ready.status();
        return use(**ready);
    }
    /* The Domain if it is open and usable now, else null; never waits (main loop). */
    std::shared_ptr<Domain> OpenNow();
    std::set<std::string> paths;  /* as attached, canonical and real: what callers may use */
    /* The lockspace state last reported (main loop). */
    SanlockLeaseManager::LockspaceState reported = SanlockLeaseManager::LockspaceState::kJoining;
    int jobs = 0;                 /* unfinished jobs on the domain (main loop) */
    int sweeps = 0;               /* of those, gc jobs (main loop) */
    int quiet = 0;                /* of those, sweeps the daemon started itself (main loop) */
    std::mutex sweep_mu;          /* one sweep at a time (job threads) */
};

std::shared_ptr<Domain> Service::AttachedDomain::OpenNow()
{
    if (sanlock && !sanlock->Unusable().ok())
        return nullptr;
    std::unique_lock lock(open_mu, std::try_to_lock);
    return lock.owns_lock() ? domain : nullptr;
}

Result<std::shared_ptr<Domain>> Service::AttachedDomain::Ready()
{
    if (sanlock) {
        Status unusable = sanlock->Unusable();
        if (!unusable.ok())
            return Status::Error(unusable.code(),
                                 Printf(_("domain %s is not usable on this host: %s"),
                                        info.uuid.c_str(), unusable.message().c_str()));
    }
    std::lock_guard lock(open_mu);
    if (domain)
        return domain;
    if (closed)
        return Status::Error(ErrorCode::kNotFound,
                             Printf(_("domain %s is detached"), info.uuid.c_str()));
    if (sanlock) {
        Status joined = sanlock->WaitJoined(options.lock_timeout);
        if (!joined.ok())
            return Status::Error(joined.code(),
                                 Printf(_("domain %s is not usable yet: this host has not "
                                          "joined its sanlock lockspace: %s"),
                                        info.uuid.c_str(), joined.message().c_str()));
        options.generation = sanlock->generation();
    }
    auto opened = Domain::Open(path, options);
    if (!opened.ok())
        return opened.status();
    domain = std::move(*opened);
    return domain;
}

/* A call waiting on a job: WaitJob, or CollectGarbage waiting for its report. */
struct Service::Waiter {
    Service *service;
    std::string job;
    GDBusMethodInvocation *invocation;
    bool wants_report;
    guint timer = 0;
};

/* The daemon's side of a job: what the engine's JobSnapshot does not hold. */
struct Service::JobRecord {
    std::shared_ptr<AttachedDomain> entry;
    bool gc = false;
    bool quiet = false;          /* a timer sweep: its routine lines are debug */
    std::string last_step;       /* main loop */
    bool settled = false;        /* main loop: its final event is handled */
    std::list<std::unique_ptr<Waiter>> waiters; /* main loop */
    std::mutex mu;
    std::optional<VolumeInfo> volume;  /* guarded by mu: the volume the job made */
    std::optional<GcReport> report;    /* guarded by mu: a gc job's report */
};

/* The keys a life-cycle call holds; when the last reference goes, the calls waiting for
 * them may start. Made and dropped on the main loop only. */
class Service::Hold {
public:
    Hold(Service *service, std::vector<std::string> keys)
        : service_(service), keys_(std::move(keys))
    {
    }
    ~Hold()
    {
        for (const auto &key : keys_)
            service_->held_.erase(key);
        service_->StartQueued();
    }
    Hold(const Hold &) = delete;
    Hold &operator=(const Hold &) = delete;

private:
    Service *service_;
    std::vector<std::string> keys_;
};

/* Turns a D-Bus method's handle-* signal into a call of the member function. */
template <typename... Args>
struct Service::Handler<void (Service::*)(GDBusMethodInvocation *, Args...)> {
    template <void (Service::*Method)(GDBusMethodInvocation *, Args...)>
    static gboolean Call(SdmManager *, GDBusMethodInvocation *invocation, Args... args,
                         gpointer self)
    {
        auto *service = static_cast<Service *>(self);
        if (service->stopping_) {
            dbus::ReturnError(invocation,
                              Status::Error(ErrorCode::kBusy,
                                            _("sdmd is stopping; retry once it is back")));
            return TRUE;
        }
        (service->*Method)(invocation, args...);
        return TRUE;
    }
};

template <auto Method>
void Service::Connect(const char *signal)
{
    g_signal_connect(skeleton_, signal,
                     G_CALLBACK((&Handler<decltype(Method)>::template Call<Method>)), this);
}

Service::Service(Config config)
    : config_(std::move(config)), started_(std::chrono::steady_clock::now()),
      jobs_(std::chrono::seconds(config_.job_expiry))
{
    dbus::ErrorQuark();
    /* libsanlock reads it at its first call, which comes later, from a worker thread. */
    if (!config_.sanlock_run_dir.empty())
        g_setenv("SANLOCK_RUN_DIR", config_.sanlock_run_dir.c_str(), TRUE);
    subscription_ = jobs_.Subscribe([this](const JobEvent &event) { OnJobEvent(event); });
    skeleton_ = sdm_manager_skeleton_new();
    Connect<&Service::GetStatus>("handle-get-status");
    Connect<&Service::FormatDomain>("handle-format-domain");
    Connect<&Service::AttachDomain>("handle-attach-domain");
    Connect<&Service::DetachDomain>("handle-detach-domain");
    Connect<&Service::ListDomains>("handle-list-domains");
    Connect<&Service::GetDomain>("handle-get-domain");
    Connect<&Service::PlanVolume>("handle-plan-volume");
    Connect<&Service::CreateVolume>("handle-create-volume");
    Connect<&Service::CreateVolumeAndWait>("handle-create-volume-and-wait");
    Connect<&Service::CloneVolume>("handle-clone-volume");
    Connect<&Service::DeleteVolume>("handle-delete-volume");
    Connect<&Service::ResizeVolume>("handle-resize-volume");
    Connect<&Service::LookupVolume>("handle-lookup-volume");
    Connect<&Service::ListVolumes>("handle-list-volumes");
    Connect<&Service::ListVolumeTable>("handle-list-volume-table");
    Connect<&Service::GetLeaseXml>("handle-get-lease-xml");
    Connect<&Service::CollectGarbage>("handle-collect-garbage");
    Connect<&Service::CheckDomain>("handle-check-domain");
    Connect<&Service::ListHosts>("handle-list-hosts");
    Connect<&Service::ListJobs>("handle-list-jobs");
    Connect<&Service::GetJob>("handle-get-job");
    Connect<&Service::WaitJob>("handle-wait-job");
    Connect<&Service::SubscribeJobs>("handle-subscribe-jobs");
    Connect<&Service::CancelJob>("handle-cancel-job");
    Connect<&Service::RemoveDomain>("handle-remove-domain");
    Connect<&Service::UpgradeDomain>("handle-upgrade-domain");
    Connect<&Service::UploadVolume>("handle-upload-volume");
    Connect<&Service::DownloadVolume>("handle-download-volume");
    Connect<&Service::WipeVolume>("handle-wipe-volume");
    Connect<&Service::ImportVolume>("handle-import-volume");
}

Service::~Service()
{
    /* No job thread may queue an event (or reach this object) past this point. */
    jobs_.Unsubscribe(subscription_);
    {
        std::lock_guard lock(events_mu_);
        if (drain_source_)
            g_source_remove(drain_source_);
        drain_source_ = 0;
    }
    if (gc_timer_)
        g_source_remove(gc_timer_);
    if (lockspace_timer_)
        g_source_remove(lockspace_timer_);
    if (stop_timer_)
        g_source_remove(stop_timer_);
    for (auto &[id, record] : records_) {
        for (auto &waiter : record->waiters) {
            if (waiter->timer)
                g_source_remove(waiter->timer);
            dbus::ReturnError(waiter->invocation,
                              Status::Error(ErrorCode::kCancelled,
                                            _("sdmd stopped before the job ended; list the "
                                              "jobs again once sdmd is back")));
        }
    }
    subscribers_.clear();
    for (GDBusConnection *connection : connections_) {
        g_signal_handlers_disconnect_by_data(connection, this);
        g_dbus_interface_skeleton_unexport_from_connection(
            G_DBUS_INTERFACE_SKELETON(skeleton_), connection);
        g_dbus_connection_close_sync(connection, nullptr, nullptr);
        g_object_unref(connection);
    }
    if (server_) {
        g_dbus_server_stop(server_);
        g_object_unref(server_);
    }
    if (auth_)
        g_object_unref(auth_);
    g_object_unref(skeleton_);
}

/* --- start and stop --- */

Status Service::Start()
{
    for (const auto &path : config_.domains) {
        Found found = Probe(path);
        std::shared_ptr<AttachedDomain> entry;
        if (found.info.ok() && domains_.count(found.info->uuid)) {
            entry = domains_[found.info->uuid]; /* listed twice, under two names */
        } else {
            auto opened = found.info.ok() ? OpenEntry(path, *found.info)
                                          : Result<std::shared_ptr<AttachedDomain>>(
                                                found.info.status());
            if (!opened.ok()) {
                Log(LogLevel::kError,
                    _("cannot attach domain %s listed in the configuration: %s"), path.c_str(),
                    opened.status().ToString().c_str());
                continue;
            }
            entry = Adopt(std::move(*opened));
        }
        entry->paths.insert(path);
        if (found.real)
            entry->paths.insert(*found.real);
    }
    SDM_RETURN_IF_ERROR(Listen());
    if (config_.gc_interval > 0)
        gc_timer_ = g_timeout_add_seconds(config_.gc_interval, OnGcTimer, this);
    if (config_.lease_backend == LeaseBackend::kSanlock)
        lockspace_timer_ = g_timeout_add_seconds(1, OnLockspaceTimer, this);
    Log(LogLevel::kInfo, _("listening on %s: host id %u, %s leases, %zu domains attached"),
        config_.socket.c_str(), config_.host_id, LeaseBackendName(config_.lease_backend),
        domains_.size());
    return Status::Ok();
}

Status Service::Listen()
{
    const std::string &path = config_.socket;
    g_autofree char *dir = g_path_get_dirname(path.c_str());
    if (g_mkdir_with_parents(dir, 0755) != 0)
        return Status::FromErrno(errno, Printf(_("cannot create the socket's directory %s"),
                                               dir));
    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Status::Error(ErrorCode::kAlreadyExists,
                                 Printf(_("%s exists and is not a socket; remove it or choose "
                                          "another socket path"),
                                        path.c_str()));
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return Status::FromErrno(errno, _("cannot create a unix socket"));
        struct sockaddr_un addr = {};
        addr.sun_family = AF_UNIX;
        strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        int rc = connect(fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr));
        int err = errno;
        close(fd);
        if (rc == 0)
            return Status::Error(ErrorCode::kBusy,
                                 Printf(_("another sdmd is serving %s; stop it first, or give "
                                          "this one another socket (--socket)"),
                                        path.c_str()));
        if (err != ECONNREFUSED)
            return Status::FromErrno(err, Printf(_("cannot probe the existing socket %s"),
                                                 path.c_str()));
        Log(LogLevel::kInfo, _("removing the stale socket %s"), path.c_str());
        if (unlink(path.c_str()) != 0 && errno != ENOENT)
            return Status::FromErrno(errno, Printf(_("cannot remove the stale socket %s"),
                                                   path.c_str()));
    }

    gid_t group = 0;
    if (!config_.socket_group.empty()) {
        struct group *g = getgrnam(config_.socket_group.c_str());
        if (!g)
            return Status::Error(ErrorCode::kNotFound,
                                 Printf(_("socket_group '%s' does not exist; create it or "
                                          "change the configuration"),
                                        config_.socket_group.c_str()));
        group = g->gr_gid;
    }

    auth_ = g_dbus_auth_observer_new();
    g_signal_connect(auth_, "allow-mechanism", G_CALLBACK(OnAllowMechanism), this);
    g_signal_connect(auth_, "authorize-authenticated-peer", G_CALLBACK(OnAuthorizePeer), this);
    g_autofree char *escaped = g_dbus_address_escape_value(path.c_str());
    g_autofree char *address = g_strdup_printf("unix:path=%s", escaped);
    g_autofree char *guid = g_dbus_generate_guid();
    g_autoptr(GError) error = nullptr;
    /* Born with no access for anyone else: nobody may connect before the chmod below. */
    mode_t old_umask = umask(0177);
    server_ = g_dbus_server_new_sync(address, G_DBUS_SERVER_FLAGS_NONE, guid, auth_, nullptr,
                                     &error);
    umask(old_umask);
    if (!server_)
        return Status::Error(ErrorCode::kIoError,
                             Printf(_("cannot listen on %s: %s; check the directory's "
                                      "permissions, or choose another socket path"),
                                    path.c_str(), error->message));
    if (!config_.socket_group.empty() &&
        (chown(path.c_str(), static_cast<uid_t>(-1), group) != 0 || chmod(path.c_str(), 0660) != 0))
        return Status::FromErrno(errno, Printf(_("cannot give socket %s to group %s"),
                                               path.c_str(), config_.socket_group.c_str()));
    g_signal_connect(server_, "new-connection", G_CALLBACK(OnNewConnection), this);
    g_dbus_server_start(server_);
    return Status::Ok();
}

void Service::Stop(std::chrono::milliseconds grace, std::function<void(bool clean)> done)
{
    stopping_ = true;
    stopped_ = std::move(done);
    if (gc_timer_)
        g_source_remove(gc_timer_);
    gc_timer_ = 0;
    if (server_) {
        g_dbus_server_stop(server_);
        if (unlink(config_.socket.c_str()) != 0 && errno != ENOENT)
            Log(LogLevel::kWarning, _("cannot remove socket %s: %s"), config_.socket.c_str(),
                strerror(errno));
    }
    int running = 0;
    for (const auto &job : jobs_.List()) {
        if (!dbus::IsFinished(job.state) && jobs_.Cancel(job.id).ok())
            running++;
    }
    Log(LogLevel::kInfo, _("stopping: %d jobs to cancel"), running);
    stop_timer_ = g_timeout_add(
        static_cast<guint>(grace.count()),
        [](gpointer self) -> gboolean {
            auto *service = static_cast<Service *>(self);
            service->stop_timer_ = 0;
            Log(LogLevel::kWarning,
                _("jobs are still running after the stop grace period; exiting without "
                  "them (the garbage collector sweeps what they leave)"));
            service->stopped_(false);
            return G_SOURCE_REMOVE;
        },
        this);
    CheckStopped();
}

void Service::CheckStopped()
{
    if (!stopping_ || !stop_timer_ || worker_calls_ > 0 || leaving_ >= 0)
        return;
    for (const auto &[id, record] : records_) {
        if (!record->settled)
            return;
    }
    /* Last, the lockspaces, waited for: sanlock drops a lockspace a moment after it is
     * asked to, and an sdmd started meanwhile would find it joined, then lose it. */
    leaving_ = 0;
    for (const auto &[uuid, entry] : domains_) {
        if (!entry->sanlock)
            continue;
        leaving_++;
        OffMainLoop(
            [entry] {
                {
                    std::lock_guard lock(entry->open_mu);
                    entry->domain.reset();
                }
                Status left = entry->sanlock->Leave();
                if (!left.ok())
                    Log(LogLevel::kInfo, _("domain %s: staying in its lockspace: %s"),
                        entry->info.uuid.c_str(), left.ToString().c_str());
            },
            [this] {
                if (--leaving_ == 0)
                    FinishStop(true);
            });
    }
    if (leaving_ == 0)
        FinishStop(true);
}

void Service::FinishStop(bool clean)
{
    if (!stop_timer_)
        return;
    g_source_remove(stop_timer_);
    stop_timer_ = 0;
    stopped_(clean);
}

/* --- connections and who may connect --- */

gboolean Service::OnAllowMechanism(GDBusAuthObserver *, const char *mechanism, gpointer)
{
    /* EXTERNAL: the kernel vouches for the peer's uid; nothing else is trusted. */
    return g_strcmp0(mechanism, "EXTERNAL") == 0;
}

gboolean Service::OnAuthorizePeer(GDBusAuthObserver *, GIOStream *, GCredentials *credentials,
                                  gpointer self)
{
    return static_cast<Service *>(self)->PeerAllowed(credentials);
}

/* Runs on a GDBus worker thread: only reentrant lookups. */
bool Service::PeerAllowed(GCredentials *credentials) const
{
    if (!credentials)
        return false;
    g_autoptr(GError) error = nullptr;
    uid_t uid = g_credentials_get_unix_user(credentials, &error);
    if (uid == static_cast<uid_t>(-1))
        return false;
    if (uid == 0 || uid == geteuid())
        return true;
    if (!config_.socket_group.empty()) {
        std::vector<char> buf(16384);
        struct group grp, *g = nullptr;
        struct passwd pwd, *p = nullptr;
        if (getgrnam_r(config_.socket_group.c_str(), &grp, buf.data(), buf.size() / 2, &g) == 0 &&
            g &&
            getpwuid_r(uid, &pwd, buf.data() + buf.size() / 2, buf.size() / 2, &p) == 0 && p) {
            gid_t wanted = g->gr_gid;
            int count = 64;
            std::vector<gid_t> groups(count);
            if (getgrouplist(p->pw_name, p->pw_gid, groups.data(), &count) < 0) {
                groups.resize(count);
                getgrouplist(p->pw_name, p->pw_gid, groups.data(), &count);
            }
            groups.resize(std::min<size_t>(groups.size(), count));
            if (std::find(groups.begin(), groups.end(), wanted) != groups.end())
                return true;
        }
    }
    if (config_.socket_group.empty())
        Log(LogLevel::kWarning,
            _("refused a client with uid %u: only root may use sdmd; set socket_group in "
              "sdmd.conf to let a group in"),
            static_cast<unsigned>(uid));
    else
        Log(LogLevel::kWarning,
            _("refused a client with uid %u: only root and members of group %s may use sdmd"),
            static_cast<unsigned>(uid), config_.socket_group.c_str());
    return false;
}

gboolean Service::OnNewConnection(GDBusServer *, GDBusConnection *connection, gpointer self)
{
    auto *service = static_cast<Service *>(self);
    if (service->stopping_)
        return FALSE;
    g_autoptr(GError) error = nullptr;
    if (!g_dbus_interface_skeleton_export(G_DBUS_INTERFACE_SKELETON(service->skeleton_),
                                          connection, dbus::kObjectPath, &error)) {
        Log(LogLevel::kError, _("cannot serve a new client: %s"), error->message);
        return FALSE;
    }
    g_object_ref(connection);
    service->connections_.push_back(connection);
    g_signal_connect(connection, "closed", G_CALLBACK(OnConnectionClosed), service);
    GCredentials *credentials = g_dbus_connection_get_peer_credentials(connection);
    Log(LogLevel::kDebug, "client connected (uid %d, pid %d)",
        credentials ? static_cast<int>(g_credentials_get_unix_user(credentials, nullptr)) : -1,
        credentials ? static_cast<int>(g_credentials_get_unix_pid(credentials, nullptr)) : -1);
    return TRUE;
}

void Service::OnConnectionClosed(GDBusConnection *connection, gboolean, GError *, gpointer self)
{
    auto *service = static_cast<Service *>(self);
    auto it = std::find(service->connections_.begin(), service->connections_.end(), connection);
    if (it == service->connections_.end())
        return;
    service->connections_.erase(it);
    if (service->subscribers_.erase(connection))
        service->subscriber_count_--;
    g_dbus_interface_skeleton_unexport_from_connection(
        G_DBUS_INTERFACE_SKELETON(service->skeleton_), connection);
    g_signal_handlers_disconnect_by_data(connection, service);
    g_object_unref(connection);
    Log(LogLevel::kDebug, "client disconnected");
}

/* --- domains --- */

/* The one place that decides which LeaseManager protects a domain's transactions. */
Result<DomainOptions> Service::DomainOptionsFor(const DomainInfo &info) const
{
    DomainOptions options;
    options.host_id = config_.host_id;
    switch (config_.lease_backend) {
    case LeaseBackend::kLocal:
        options.leases = nullptr; /* the engine's OFD leases on <domain>/leases */
        break;
    case LeaseBackend::kSanlock: {
        auto sanlock = std::make_shared<SanlockLeaseManager>(SanlockGeometryOf(info),
                                                             config_.host_id);
        /* Asynchronous: the join takes seconds; operations wait for it (Ready). */
        SDM_RETURN_IF_ERROR(sanlock->Join());
        options.leases = std::move(sanlock);
        break;
    }
    }
    Log(LogLevel::kDebug, "domain %s: %s leases, host id %u", info.path.c_str(),
        LeaseBackendName(config_.lease_backend), options.host_id);
    return options;
}

Service::Found Service::Probe(const std::string &path)
{
    /* The uuid and the lockspace's name are in the domain's metadata: read it without
     * attaching (an attachment takes leases). */
    auto info = Domain::Inspect(path);
    return {info, RealPath(path)};
}

Result<std::shared_ptr<Service::AttachedDomain>> Service::OpenEntry(const std::string &path,
                                                                    const DomainInfo &info) const
{
    SDM_RETURN_IF_ERROR(Domain::Usable(info));
    auto entry = std::make_shared<AttachedDomain>();
    entry->info = info;
    entry->path = path;
    /* sanlock refuses to join a lockspace while this host is leaving it (kBusy): the sdmd
     * before this one leaves it as it stops, and a join right after would fail, or,
     * asked a moment earlier, find it joined and lose it when the leave ends. */
    const auto deadline = std::chrono::steady_clock::now() + DomainOptions().lock_timeout;
    auto options = DomainOptionsFor(entry->info);
    while (!options.ok() && options.status().code() == ErrorCode::kBusy &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        options = DomainOptionsFor(entry->info);
    }
    if (!options.ok())
        return options.status();
    entry->options = *options;
    entry->sanlock = std::dynamic_pointer_cast<SanlockLeaseManager>(options->leases);
    if (!entry->sanlock) {
        auto ready = entry->Ready();
        if (!ready.ok())
            return ready.status();
    }
    return entry;
}

Result<std::shared_ptr<Service::AttachedDomain>> Service::Find(const std::string &domain) const
{
    if (domain.empty())
        return Status::Error(ErrorCode::kInvalidArgument,
                             _("no domain given; name it by its uuid or by the path it was "
                               "attached from (sdm domains lists them)"));
    auto it = domains_.find(domain);
    if (it != domains_.end())
        return it->second;
    std::string canonical = domain[0] == '/' ? CanonicalPath(domain) : domain;
    for (const auto &[uuid, entry] : domains_) {
        if (entry->paths.count(domain) || entry->paths.count(canonical))
            return entry;
    }
    if (auto doing = HeldBy(domain))
        return Status::Error(ErrorCode::kNotFound,
                             Printf(_("domain '%s' is not attached now: sdmd is %s it (as it "
                                      "does for a pool that starts, or after a restart); "
                                      "retry once that ends, in a few seconds"),
                                    domain.c_str(), doing->c_str()));
    return Status::Error(ErrorCode::kNotFound,
                         Printf(_("no attached domain '%s'; attach it first (sdm attach PATH) "
                                  "or see the attached ones (sdm domains)"),
                                domain.c_str()));
}

std::shared_ptr<Service::AttachedDomain> Service::Adopt(std::shared_ptr<AttachedDomain> entry)
{
    const DomainInfo &info = entry->info;
    entry->paths.insert(info.path);
    entry->paths.insert(CanonicalPath(info.path));
    Log(LogLevel::kInfo, _("attached domain %s at %s (durability %s, %s leases)"),
        info.uuid.c_str(), info.path.c_str(), info.durability.c_str(),
        LeaseBackendName(config_.lease_backend));
    domains_[info.uuid] = entry;
    /* A sweep as soon as the domain can be opened (for sanlock, once the join ends): it
     * opens the engine's Domain, so that `joined` turns true and the attachment's leases
     * are taken without waiting for the first operation, and it collects at once what an
     * earlier sdmd of this host left (its owner lease is this one's now). */
    SubmitSweep(entry, false, nullptr);
    return entry;
}

void Service::ForgetStalePaths(const std::string &path, const Found &found)
{
    if (!found.info.ok() && found.info.status().code() != ErrorCode::kNotFound)
        return; /* unreadable now (storage trouble): nothing is known to have changed */
    const std::string uuid = found.info.ok() ? found.info->uuid : "";
    std::set<std::string> names = {CanonicalPath(path)};
    if (found.real)
        names.insert(*found.real);
    for (auto &[known, entry] : domains_) {
        if (known == uuid)
            continue;
        size_t before = entry->paths.size();
        std::erase_if(entry->paths,
                      [&](const std::string &p) { return names.count(CanonicalPath(p)) > 0; });
        if (entry->paths.size() == before)
            continue;
        if (uuid.empty())
            Log(LogLevel::kWarning,
                _("domain %s is no longer at %s: the directory holds no domain now; the domain "
                  "stays attached under its uuid, detach it (sdm detach UUID) if it is gone"),
                known.c_str(), path.c_str());
        else
            Log(LogLevel::kWarning,
                _("domain %s is no longer at %s: domain %s is there now; the old one stays "
                  "attached under its uuid, detach it (sdm detach UUID) if it is gone"),
                known.c_str(), path.c_str(), uuid.c_str());
    }
}

/* --- the life cycle --- */

void Service::Serialize(std::vector<std::string> keys, const char *doing,
                        std::function<void(HoldPtr)> run)
{
    queued_.push_back({std::move(keys), doing, std::move(run)});
    StartQueued();
}

void Service::StartQueued()
{
    for (auto it = queued_.begin(); it != queued_.end();) {
        if (std::any_of(it->keys.begin(), it->keys.end(),
                        [this](const std::string &key) { return held_.count(key) > 0; })) {
            ++it;
            continue;
        }
        Queued call = std::move(*it);
        queued_.erase(it);
        for (const auto &key : call.keys)
            held_[key] = call.doing;
        call.run(std::make_shared<Hold>(this, std::move(call.keys)));
        it = queued_.begin(); /* the call may have changed the queue */
    }
}

std::optional<std::string> Service::HeldBy(const std::string &domain) const
{
    auto it = held_.find(!domain.empty() && domain[0] == '/' ? CanonicalPath(domain) : domain);
    if (it == held_.end())
        return std::nullopt;
    return it->second;
}

GVariant *Service::DomainDict(const AttachedDomain &entry) const
{
    /* The open domain's space and change token (two stat calls; fine on the main loop). */
    std::optional<DomainUsage> usage;
    std::shared_ptr<Domain> domain;
    {
        std::lock_guard<std::mutex> lock(entry.open_mu);
        domain = entry.domain;
    }
    if (domain) {
        auto read = domain->Usage();
        if (read.ok())
            usage = *read;
    }
    if (!entry.sanlock)
        return dbus::DomainToDict({entry.info, config_.host_id, true, usage});
    auto state = entry.sanlock->state();
    using State = SanlockLeaseManager::LockspaceState;
    bool joined = entry.sanlock->generation() != 0 &&
                  (state == State::kJoined || state == State::kFailing);
    /* DomainToDict's keys plus this host's standing in the lockspace. */
    g_autoptr(GVariant) base =
        g_variant_ref_sink(dbus::DomainToDict({entry.info, config_.host_id, joined,
                                               usage}));
    GVariantBuilder dict;
    g_variant_builder_init(&dict, G_VARIANT_TYPE_VARDICT);
    GVariantIter iter;
    g_variant_iter_init(&iter, base);
    while (GVariant *item = g_variant_iter_next_value(&iter)) {
        g_variant_builder_add_value(&dict, item);
        g_variant_unref(item);
    }
    g_variant_builder_add(&dict, "{sv}", "lockspace_state",
                          g_variant_new_string(SanlockLeaseManager::StateName(state)));
    return g_variant_builder_end(&dict);
}

/* --- jobs --- */

std::string Service::Submit(const std::string &type, const std::string &object,
                            const std::shared_ptr<AttachedDomain> &entry, Work work)
{
    PruneRecords();
    auto record = std::make_shared<JobRecord>();
    record->entry = entry;
    record->gc = type == "gc";
    entry->jobs++;
    if (record->gc)
        entry->sweeps++;
    std::string id = jobs_.Submit(type, object,
                                  [record, work = std::move(work)](OpObserver &observer) {
                                      return work(observer, *record);
                                  });
    records_[id] = record;
    return id;
}

Status Service::KeepVolume(Result<VolumeInfo> volume, JobRecord &record)
{
    if (!volume.ok())
        return volume.status();
    std::lock_guard lock(record.mu);
    record.volume = std::move(*volume);
    return Status::Ok();
}

void Service::PruneRecords()
{
    std::set<std::string> known;
    for (const auto &job : jobs_.List())
        known.insert(job.id);
    for (auto it = records_.begin(); it != records_.end();) {
        if (it->second->settled && !known.count(it->first))
            it = records_.erase(it);
        else
            ++it;
    }
}

GVariant *Service::JobDict(const JobSnapshot &job)
{
    dbus::JobView view{job, "", std::nullopt, std::nullopt};
    auto it = records_.find(job.id);
    if (it != records_.end()) {
        JobRecord &record = *it->second;
        view.domain = record.entry->info.uuid;
        std::lock_guard lock(record.mu);
        view.volume = record.volume;
        view.gc_report = record.report;
    }
    return dbus::JobToDict(view);
}

void Service::OnJobEvent(const JobEvent &event)
{
    /* A step or progress report is for subscribers and the debug log only; nobody to tell
     * means no need to wake the main loop (a create has a dozen steps). */
    if (event.kind == JobEventKind::kProgress && subscriber_count_.load() == 0 &&
        !LogEnabled(LogLevel::kDebug))
        return;
    std::lock_guard lock(events_mu_);
    events_.push_back(event);
    if (!drain_source_)
        drain_source_ = g_idle_add(DrainEvents, this);
}

gboolean Service::DrainEvents(gpointer self)
{
    auto *service = static_cast<Service *>(self);
    std::vector<JobEvent> batch;
    {
        std::lock_guard lock(service->events_mu_);
        batch.swap(service->events_);
        service->drain_source_ = 0;
    }
    for (const auto &event : batch)
        service->HandleEvent(event);
    return G_SOURCE_REMOVE;
}

void Service::HandleEvent(const JobEvent &event)
{
    const JobSnapshot &job = event.job;
    auto it = records_.find(job.id);
    JobRecord *record = it == records_.end() ? nullptr : it->second.get();
    LogLevel routine = record && record->quiet ? LogLevel::kDebug : LogLevel::kInfo;
    std::string label = JobLabel(job);

    if (event.kind == JobEventKind::kProgress) {
        if (record && job.step != record->last_step) {
            record->last_step = job.step;
            /* A create has a dozen steps: at info level their log lines were a measurable
             * share of a create through sdmd (docs/benchmarks.md). Starts and ends stay info. */
            Log(LogLevel::kDebug, "%s: step %s", label.c_str(), job.step.c_str());
        } else {
            Log(LogLevel::kDebug, "%s: %llu of %llu", label.c_str(),
                static_cast<unsigned long long>(job.done),
                static_cast<unsigned long long>(job.total));
        }
        EmitJobSignal("JobProgress", g_variant_new("(sstt)", job.id.c_str(), job.step.c_str(),
                                                   static_cast<guint64>(job.done),
                                                   static_cast<guint64>(job.total)));
        return;
    }

    if (job.state == JobState::kFailed || job.state == JobState::kAborted) {
        Log(job.state == JobState::kFailed ? LogLevel::kWarning : LogLevel::kInfo,
            "%s: %s: %s: %s", label.c_str(), JobStateName(job.state),
            ErrorCodeName(job.error.code()), job.error.ToString().c_str());
    } else if (job.state == JobState::kDone && record && record->gc) {
        std::optional<GcReport> report;
        {
            std::lock_guard lock(record->mu);
            report = record->report;
        }
        if (report)
            Log(report->collected || report->errors ? LogLevel::kInfo : routine,
                "%s: done: %u seen, %u collected (%u completed), %u live, %u errors",
                label.c_str(), report->markers_seen, report->collected,
                report->rolled_forward, report->skipped_live, report->errors);
    } else {
        Log(routine, "%s: %s", label.c_str(), JobStateName(job.state));
    }
    if (!subscribers_.empty()) {
        GVariant *dict = JobDict(job);
        EmitJobSignal("JobChanged", g_variant_new_tuple(&dict, 1));
    }
    if (record && dbus::IsFinished(job.state))
        Settle(job, *record);
}

void Service::Settle(const JobSnapshot &job, JobRecord &record)
{
    record.settled = true;
    record.entry->jobs--;
    if (record.gc)
        record.entry->sweeps--;
    if (record.quiet)
        record.entry->quiet--;
    auto waiters = std::move(record.waiters);
    record.waiters.clear();
    for (auto &waiter : waiters)
        CompleteWaiter(*waiter, job, record);
    CheckStopped();
}

void Service::CompleteWaiter(Waiter &waiter, const JobSnapshot &job, JobRecord &record)
{
    if (waiter.timer)
        g_source_remove(waiter.timer);
    waiter.timer = 0;
    if (!waiter.wants_report) {
        ReturnDict(waiter.invocation, JobDict(job));
        return;
    }
    std::optional<GcReport> report;
    {
        std::lock_guard lock(record.mu);
        report = record.report;
    }
    if (job.state == JobState::kDone && report)
        ReturnDict(waiter.invocation, dbus::GcReportToDict(*report));
    else
        dbus::ReturnError(waiter.invocation,
                          job.error.ok() ? Status::Error(ErrorCode::kInternal,
                                                         _("the sweep ended without a report; "
                                                           "please report this bug"))
                                         : job.error);
}

gboolean Service::OnWaitTimeout(gpointer data)
{
    auto *waiter = static_cast<Waiter *>(data);
    Service *service = waiter->service;
    waiter->timer = 0;
    auto it = service->records_.find(waiter->job);
    if (it == service->records_.end())
        return G_SOURCE_REMOVE;
    auto &waiters = it->second->waiters;
    auto mine = std::find_if(waiters.begin(), waiters.end(),
                             [waiter](const auto &w) { return w.get() == waiter; });
    if (mine == waiters.end())
        return G_SOURCE_REMOVE;
    std::optional<JobSnapshot> job = service->jobs_.Get(waiter->job);
    if (job)
        ReturnDict(waiter->invocation, service->JobDict(*job));
    else
        dbus::ReturnError(waiter->invocation,
                          Status::Error(ErrorCode::kNotFound,
                                        Printf(_("job %s expired while waiting"),
                                               waiter->job.c_str())));
    waiters.erase(mine);
    return G_SOURCE_REMOVE;
}

void Service::SubmitSweep(const std::shared_ptr<AttachedDomain> &entry, bool dry_run,
                          GDBusMethodInvocation *invocation)
{
    std::string id = Submit("gc", entry->info.uuid, entry,
                            [dry_run](OpObserver &, JobRecord &record) {
                                std::lock_guard sweep(record.entry->sweep_mu);
                                {
                                    /* Detached while this sweep waited: nothing to do. */
                                    std::lock_guard open(record.entry->open_mu);
                                    if (record.entry->closed)
                                        return Status::Ok();
                                }
                                GcOptions options;
                                options.dry_run = dry_run;
                                auto report = record.entry->With(
                                    [&](Domain &d) { return d.CollectGarbage(options); });
                                if (!report.ok())
                                    return report.status();
                                std::lock_guard lock(record.mu);
                                record.report = *report;
                                return Status::Ok();
                            });
    JobRecord &record = *records_.at(id);
    if (!invocation) {
        record.quiet = true;
        entry->quiet++;
        return;
    }
    record.waiters.push_back(
        std::make_unique<Waiter>(Waiter{this, id, invocation, true}));
}

gboolean Service::OnGcTimer(gpointer self)
{
    auto *service = static_cast<Service *>(self);
    if (service->stopping_)
        return G_SOURCE_CONTINUE;
    for (auto &[uuid, entry] : service->domains_) {
        /* A lost lockspace is reported once, not by a failed sweep a minute. */
        if (entry->sweeps == 0 && (!entry->sanlock || entry->sanlock->Unusable().ok()))
            service->SubmitSweep(entry, false, nullptr);
    }
    return G_SOURCE_CONTINUE;
}

gboolean Service::OnLockspaceTimer(gpointer self)
{
    using State = SanlockLeaseManager::LockspaceState;
    auto *service = static_cast<Service *>(self);
    for (auto &[uuid, entry] : service->domains_) {
        if (!entry->sanlock)
            continue;
        State state = entry->sanlock->state();
        if (state == entry->reported)
            continue;
        State was = std::exchange(entry->reported, state);
        if (state == State::kJoined && was == State::kFailing) {
            Log(LogLevel::kWarning,
                _("domain %s: this host's lease renewals in its lockspace resumed; metadata "
                  "operations are accepted again"),
                uuid.c_str());
            continue;
        }
        if (state != State::kFailing && state != State::kLost)
            continue;
        /* Running jobs are left alone: cancelling them would release their leases and
         * dodge the fencing that must stop this process from writing. */
        Log(LogLevel::kError, _("domain %s: %s"), uuid.c_str(),
            entry->sanlock->Unusable().message().c_str());
    }
    return G_SOURCE_CONTINUE;
}

bool Service::LockspaceFailed() const
{
    using State = SanlockLeaseManager::LockspaceState;
    return std::any_of(domains_.begin(), domains_.end(), [](const auto &item) {
        const auto &sanlock = item.second->sanlock;
        return sanlock && (sanlock->state() == State::kFailing ||
                           sanlock->state() == State::kLost);
    });
}

void Service::OffMainLoop(std::function<void()> work, std::function<void()> done)
{
    struct Call {
        Service *service;
        std::function<void()> work;
        std::function<void()> done;
    };
    auto *call = new Call{this, std::move(work), std::move(done)};
    worker_calls_++;
    GTask *task = g_task_new(
        nullptr, nullptr,
        [](GObject *, GAsyncResult *, gpointer data) {
            std::unique_ptr<Call> call(static_cast<Call *>(data));
            call->done();
            call->service->worker_calls_--;
            call->service->CheckStopped();
        },
        call);
    g_task_set_task_data(task, call, nullptr);
    g_task_run_in_thread(task, [](GTask *t, gpointer, gpointer data, GCancellable *) {
        static_cast<Call *>(data)->work();
        g_task_return_boolean(t, TRUE);
    });
    g_object_unref(task);
}

/* --- D-Bus methods --- */

void Service::GetStatus(GDBusMethodInvocation *invocation)
{
    uint32_t unfinished = 0;
    for (const auto &job : jobs_.List())
        unfinished += dbus::IsFinished(job.state) ? 0 : 1;
    auto uptime = std::chrono::duration_cast<std::chrono::seconds>(
        std::chrono::steady_clock::now() - started_);
    ReturnDict(invocation, dbus::DictBuilder()
                               .Str("version", SDM_VERSION)
                               .U32("host_id", config_.host_id)
                               .U32("domains", static_cast<uint32_t>(domains_.size()))
                               .U32("jobs", unfinished)
                               .U64("uptime", static_cast<uint64_t>(uptime.count()))
                               .Finish());
}

void Service::FormatDomain(GDBusMethodInvocation *invocation, const char *path,
                           GVariant *options)
{
    auto decoded = dbus::DecodeFormatDomain(path, options);
    if (!decoded.ok())
        return dbus::ReturnError(invocation, decoded.status());
    std::string where = path;
    Serialize({CanonicalPath(where)}, "formatting",
              [this, invocation, where, params = *decoded](HoldPtr hold) {
                  FormatHeld(invocation, where, params, std::move(hold));
              });
}

void Service::FormatHeld(GDBusMethodInvocation *invocation, const std::string &where,
                         const FormatParams &params, HoldPtr hold)
{
    auto result = std::make_shared<std::optional<Result<DomainInfo>>>();
    auto real = std::make_shared<std::optional<std::string>>();
    bool sanlock = config_.lease_backend == LeaseBackend::kSanlock;
    /* The areas are written before the format's commit: a domain.meta on storage means
     * its lockspace and domain lease are there too. */
    FormatParams with_areas = params;
    if (sanlock)
        with_areas.write_lease_areas = [](const DomainInfo &info) {
            return SanlockLeaseManager::FormatAreas(SanlockGeometryOf(info));
        };
    OffMainLoop([result, real, where, with_areas] {
                    *result = Domain::Format(where, with_areas);
                    *real = RealPath(where);
                },
                [this, result, real, invocation, where, hold] {
                    const Result<DomainInfo> &info = **result;
                    if (!info.ok())
                        return dbus::ReturnError(invocation, info.status());
                    Log(LogLevel::kInfo, _("formatted domain %s at %s"), info->uuid.c_str(),
                        info->path.c_str());
                    ForgetStalePaths(where, {info, *real});
                    ReturnDict(invocation, dbus::DomainToDict({*info, config_.host_id, false}));
                });
}

void Service::AttachDomain(GDBusMethodInvocation *invocation, const char *path)
{
    Status status = dbus::CheckAbsolutePath(path, _("domain path"));
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string where = path;
    Serialize({CanonicalPath(where)}, "attaching", [this, invocation, where](HoldPtr hold) {
        AttachHeld(invocation, where, std::move(hold));
    });
}

/* A path already known still names the domain it was attached from only if that domain
 * is the one there now: one removed and formatted anew at the same path is another. */
void Service::AttachHeld(GDBusMethodInvocation *invocation, const std::string &where,
                         HoldPtr path_hold)
{
    auto found = std::make_shared<std::optional<Found>>();
    OffMainLoop([found, where] { found->emplace(Probe(where)); }, [this, found, where,
                                                                   invocation, path_hold] {
        const Found &there = **found;
        ForgetStalePaths(where, there);
        if (!there.info.ok()) {
            if (auto known = Find(where); known.ok())
                /* Unreadable now (storage trouble): the handle stays what it was. */
                return ReturnDict(invocation, DomainDict(**known));
            return dbus::ReturnError(invocation, there.info.status());
        }
        Serialize({there.info->uuid}, "attaching",
                  [this, invocation, where, there, path_hold](HoldPtr uuid_hold) {
            auto known = domains_.find(there.info->uuid);
            if (known != domains_.end()) {
                /* Attached already, maybe under another path. */
                known->second->paths.insert(where);
                if (there.real)
                    known->second->paths.insert(*there.real);
                return ReturnDict(invocation, DomainDict(*known->second));
            }
            auto opened =
                std::make_shared<std::optional<Result<std::shared_ptr<AttachedDomain>>>>();
            OffMainLoop(
                [this, opened, where, info = *there.info] {
                    opened->emplace(OpenEntry(where, info));
                },
                [this, opened, where, real = there.real, invocation, path_hold, uuid_hold] {
                    auto &fresh = **opened;
                    if (!fresh.ok())
                        return dbus::ReturnError(invocation, fresh.status());
                    auto entry = Adopt(std::move(*fresh));
                    entry->paths.insert(where);
                    if (real)
                        entry->paths.insert(*real);
                    ReturnDict(invocation, DomainDict(*entry));
                });
        });
    });
}

void Service::DetachDomain(GDBusMethodInvocation *invocation, const char *domain)
{
    auto entry = Find(domain);
    if (!entry.ok())
        return dbus::ReturnError(invocation, entry.status());
    std::vector<std::string> keys = {(*entry)->info.uuid};
    for (const auto &path : (*entry)->paths)
        keys.push_back(CanonicalPath(path));
    Serialize(std::move(keys), "detaching", [this, invocation, target = *entry](HoldPtr hold) {
        const std::string uuid = target->info.uuid;
        auto again = Find(uuid); /* a detach queued before this one may have ended it */
        if (!again.ok() || *again != target)
            return dbus::ReturnError(
                invocation, again.ok() ? Status::Error(ErrorCode::kNotFound,
                                                       Printf(_("domain %s was detached "
                                                                "meanwhile"),
                                                              uuid.c_str()))
                                       : again.status());
        /* The daemon's own sweeps (at attach, on the timer) do not hold a detach up: it
         * waits for the running one, and the queued ones find the domain closed. */
        if (int mine = target->jobs - target->quiet; mine > 0)
            return dbus::ReturnError(
                invocation,
                Status::Error(ErrorCode::kBusy,
                              Printf(_("domain %s has %d unfinished jobs; wait for them or "
                                       "cancel them (sdm jobs, sdm cancel JOB), then detach"),
                                     uuid.c_str(), mine)));
        domains_.erase(uuid);
        Log(LogLevel::kInfo, _("detached domain %s"), uuid.c_str());
        /* The keys stay held until the lockspace is left: an attach that came now would
         * join a lockspace that is about to go. */
        auto left = std::make_shared<Status>();
        OffMainLoop(
            [target, left] {
                {
                    /* The attachment's domain and owner leases go with the engine's Domain;
                     * job records that outlive the detach keep only the entry. */
                    std::lock_guard sweep(target->sweep_mu);
                    std::lock_guard lock(target->open_mu);
                    target->closed = true;
                    target->domain.reset();
                }
                if (target->sanlock)
                    *left = target->sanlock->Leave();
            },
            [this, left, uuid, invocation, hold] {
                if (!left->ok())
                    Log(LogLevel::kWarning,
                        _("domain %s is detached but this host is still in its lockspace: %s"),
                        uuid.c_str(), left->ToString().c_str());
                sdm_manager_complete_detach_domain(skeleton_, invocation);
            });
    });
}

void Service::ListDomains(GDBusMethodInvocation *invocation)
{
    GVariantBuilder list;
    g_variant_builder_init(&list, G_VARIANT_TYPE("aa{sv}"));
    for (const auto &[uuid, entry] : domains_)
        g_variant_builder_add_value(&list, DomainDict(*entry));
    sdm_manager_complete_list_domains(skeleton_, invocation, g_variant_builder_end(&list));
}

void Service::GetDomain(GDBusMethodInvocation *invocation, const char *domain)
{
    auto entry = Find(domain);
    if (!entry.ok())
        return dbus::ReturnError(invocation, entry.status());
    ReturnDict(invocation, DomainDict(**entry));
}

std::optional<std::string> Service::StartCreate(GDBusMethodInvocation *invocation,
                                                 const char *domain, const char *name,
                                                 guint64 capacity, GVariant *options)
{
    auto entry = Find(domain);
    auto decoded = dbus::DecodeCreateVolume(name, capacity, options);
    Status status = entry.ok() ? decoded.status() : entry.status();
    if (!status.ok()) {
        dbus::ReturnError(invocation, status);
        return std::nullopt;
    }
    CreateParams params = *decoded;
    return Submit("create", name, *entry, [params](OpObserver &observer, JobRecord &record) {
        return KeepVolume(
            record.entry->With([&](Domain &d) { return d.CreateVolume(params, &observer); }),
            record);
    });
}

void Service::CreateVolume(GDBusMethodInvocation *invocation, const char *domain,
                           const char *name, guint64 capacity, GVariant *options)
{
    if (auto id = StartCreate(invocation, domain, name, capacity, options))
        sdm_manager_complete_create_volume(skeleton_, invocation, id->c_str());
}

void Service::CreateVolumeAndWait(GDBusMethodInvocation *invocation, const char *domain,
                                  const char *name, guint64 capacity, GVariant *options)
{
    if (auto id = StartCreate(invocation, domain, name, capacity, options))
        AnswerWhenEnded(invocation, *id, 0);
}

void Service::CloneVolume(GDBusMethodInvocation *invocation, const char *domain,
                          const char *source, const char *name, GVariant *options)
{
    auto entry = Find(domain);
    auto decoded = dbus::DecodeCloneVolume(source, name, options);
    Status status = entry.ok() ? decoded.status() : entry.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    CloneParams params = *decoded;
    std::string id = Submit("clone", name, *entry,
                            [params](OpObserver &observer, JobRecord &record) {
                                return KeepVolume(record.entry->With([&](Domain &d) {
                                    return d.CloneVolume(params, &observer);
                                }),
                                                  record);
                            });
    sdm_manager_complete_clone_volume(skeleton_, invocation, id.c_str());
}

void Service::DeleteVolume(GDBusMethodInvocation *invocation, const char *domain,
                           const char *name)
{
    auto entry = Find(domain);
    Status status = entry.ok() ? layout::ValidateVolumeName(name) : entry.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string volume = name;
    std::string id = Submit("delete", volume, *entry,
                            [volume](OpObserver &observer, JobRecord &record) {
                                return record.entry->With(
                                    [&](Domain &d) { return d.DeleteVolume(volume, &observer); });
                            });
    sdm_manager_complete_delete_volume(skeleton_, invocation, id.c_str());
}

void Service::ResizeVolume(GDBusMethodInvocation *invocation, const char *domain,
                           const char *name, guint64 capacity)
{
    auto entry = Find(domain);
    Status status = entry.ok() ? dbus::DecodeResizeVolume(name, capacity) : entry.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string volume = name;
    std::string id = Submit("resize", volume, *entry,
                            [volume, capacity](OpObserver &observer, JobRecord &record) {
                                return KeepVolume(record.entry->With([&](Domain &d) {
                                    return d.ResizeVolume(volume, capacity, &observer);
                                }),
                                                  record);
                            });
    sdm_manager_complete_resize_volume(skeleton_, invocation, id.c_str());
}

void Service::PlanVolume(GDBusMethodInvocation *invocation, const char *domain,
                         const char *name, GVariant *options)
{
    auto entry = Find(domain);
    auto decoded = dbus::DecodePlanVolume(name, options);
    Status status = entry.ok() ? decoded.status() : entry.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    CreateParams params = *decoded;
    const std::string &uuid = (*entry)->info.uuid;
    /* Such a plan touches no storage: answered here it saves a create the two thread
     * hand-offs of the worker pool (docs/benchmarks.md). */
    std::shared_ptr<Domain> open = params.backing.empty() ? (*entry)->OpenNow() : nullptr;
    if (open)
        return ReturnVolume(invocation, open->PlanVolume(params), uuid);
    auto planned = std::make_shared<std::optional<Result<VolumeInfo>>>();
    OffMainLoop([planned, target = *entry, params] {
                    *planned = target->With([&](Domain &d) { return d.PlanVolume(params); });
                },
                [planned, invocation, uuid] { ReturnVolume(invocation, **planned, uuid); });
}

void Service::LookupVolume(GDBusMethodInvocation *invocation, const char *domain,
                           const char *name)
{
    auto entry = Find(domain);
    Status status = entry.ok() ? layout::ValidateVolumeName(name) : entry.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    auto found = std::make_shared<std::optional<Result<VolumeInfo>>>();
    OffMainLoop([found, target = *entry, volume = std::string(name)] {
                    *found = target->With([&](Domain &d) { return d.LookupVolume(volume); });
                },
                [found, invocation, uuid = (*entry)->info.uuid] {
                    ReturnVolume(invocation, **found, uuid);
                });
}

void Service::ReplyWithVolumes(GDBusMethodInvocation *invocation, const char *domain,
                               GVariant *(*reply)(const std::vector<VolumeInfo> &,
                                                  const std::string &domain))
{
    auto entry = Find(domain);
    if (!entry.ok())
        return dbus::ReturnError(invocation, entry.status());
    auto listed = std::make_shared<std::optional<Result<std::vector<VolumeInfo>>>>();
    OffMainLoop([listed, target = *entry] {
                    *listed = target->With([](Domain &d) { return d.ListVolumes(); });
                },
                [listed, invocation, reply, uuid = (*entry)->info.uuid] {
                    const auto &volumes = **listed;
                    if (!volumes.ok())
                        return dbus::ReturnError(invocation, volumes.status());
                    g_dbus_method_invocation_return_value(invocation, reply(*volumes, uuid));
                });
}

void Service::ListVolumes(GDBusMethodInvocation *invocation, const char *domain)
{
    ReplyWithVolumes(invocation, domain,
                     [](const std::vector<VolumeInfo> &volumes, const std::string &uuid) {
        GVariantBuilder list;
        g_variant_builder_init(&list, G_VARIANT_TYPE("aa{sv}"));
        for (const auto &volume : volumes)
            g_variant_builder_add_value(&list, dbus::VolumeToDict(volume, uuid));
        return g_variant_new("(aa{sv})", &list);
    });
}

void Service::ListVolumeTable(GDBusMethodInvocation *invocation, const char *domain)
{
    ReplyWithVolumes(invocation, domain,
                     [](const std::vector<VolumeInfo> &volumes, const std::string &) {
        GVariantBuilder rows;
        g_variant_builder_init(&rows, G_VARIANT_TYPE("a" SDM_VOLUME_ROW_TYPE));
        for (const auto &volume : volumes)
            g_variant_builder_add_value(&rows, dbus::VolumeToRow(volume));
        return g_variant_new("(a" SDM_VOLUME_ROW_TYPE ")", &rows);
    });
}

void Service::GetLeaseXml(GDBusMethodInvocation *invocation, const char *domain,
                          const char *name)
{
    auto entry = Find(domain);
    Status status = entry.ok() ? layout::ValidateVolumeName(name) : entry.status();
    if (status.ok()) {
        switch (config_.lease_backend) {
        case LeaseBackend::kLocal:
            status = Status::Error(
                ErrorCode::kUnsupported,
                Printf(_("domain %s is not attached with sanlock leases (this sdmd uses local "
                         "leases), so there is no lockspace for a <lease> element; set "
                         "lease_backend=sanlock in sdmd.conf for VMs that run on several hosts"),
                       (*entry)->info.uuid.c_str()));
            break;
        case LeaseBackend::kSanlock:
            break;
        }
    }
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    auto xml = std::make_shared<Result<std::string>>(std::string());
    OffMainLoop(
        [xml, target = *entry, volume = std::string(name)] {
            auto found = target->With([&](Domain &d) { return d.LookupVolume(volume); });
            *xml = found.ok() ? Result<std::string>(target->sanlock->LeaseXml(found->slot))
                              : Result<std::string>(found.status());
        },
        [this, xml, invocation] {
            if (!xml->ok())
                return dbus::ReturnError(invocation, xml->status());
            sdm_manager_complete_get_lease_xml(skeleton_, invocation, (*xml)->c_str());
        });
}

void Service::CollectGarbage(GDBusMethodInvocation *invocation, const char *domain,
                             gboolean dry_run)
{
    auto entry = Find(domain);
    if (!entry.ok())
        return dbus::ReturnError(invocation, entry.status());
    SubmitSweep(*entry, dry_run, invocation);
}

void Service::CheckDomain(GDBusMethodInvocation *invocation, const char *domain)
{
    auto entry = Find(domain);
    if (!entry.ok())
        return dbus::ReturnError(invocation, entry.status());
    auto checked = std::make_shared<std::optional<Result<CheckReport>>>();
    OffMainLoop([checked, target = *entry] {
                    *checked = target->With([](Domain &d) { return d.Check(); });
                },
                [checked, invocation] {
                    const Result<CheckReport> &report = **checked;
                    if (!report.ok())
                        return dbus::ReturnError(invocation, report.status());
                    ReturnDict(invocation, dbus::CheckReportToDict(*report));
                });
}

void Service::ListHosts(GDBusMethodInvocation *invocation, const char *domain)
{
    auto entry = Find(domain);
    if (!entry.ok())
        return dbus::ReturnError(invocation, entry.status());
    using Hosts = std::vector<SanlockLeaseManager::Host>;
    auto hosts = std::make_shared<Result<Hosts>>(Hosts());
    auto reply = [this, hosts, invocation] {
        if (!hosts->ok())
            return dbus::ReturnError(invocation, hosts->status());
        GVariantBuilder list;
        g_variant_builder_init(&list, G_VARIANT_TYPE("a(ttst)"));
        for (const auto &host : **hosts) {
            /* The same spelling for both backends: sanlock's state names, upper case. */
            g_autofree char *state = g_ascii_strup(host.state.c_str(), -1);
            g_variant_builder_add(&list, "(ttst)", static_cast<guint64>(host.host_id),
                                  static_cast<guint64>(host.generation), state,
                                  static_cast<guint64>(host.timestamp));
        }
        sdm_manager_complete_list_hosts(skeleton_, invocation, g_variant_builder_end(&list));
    };
    switch (config_.lease_backend) {
    case LeaseBackend::kLocal: {
        /* Local leases know one host: this one, alive since it answers. Its timestamp is
         * what sanlock's would be: now, in seconds of the host's monotonic clock. */
        **hosts = {{config_.host_id, 0, kHostLive,
                    static_cast<uint64_t>(g_get_monotonic_time() / G_USEC_PER_SEC)}};
        return reply();
    }
    case LeaseBackend::kSanlock:
        OffMainLoop([hosts, target = *entry] { *hosts = target->sanlock->Hosts(); }, reply);
        return;
    }
}

void Service::ListJobs(GDBusMethodInvocation *invocation)
{
    PruneRecords();
    GVariantBuilder list;
    g_variant_builder_init(&list, G_VARIANT_TYPE("aa{sv}"));
    for (const auto &job : jobs_.List())
        g_variant_builder_add_value(&list, JobDict(job));
    sdm_manager_complete_list_jobs(skeleton_, invocation, g_variant_builder_end(&list));
}

void Service::GetJob(GDBusMethodInvocation *invocation, const char *id)
{
    std::optional<JobSnapshot> job = jobs_.Get(id);
    if (!job)
        return dbus::ReturnError(invocation, NoSuchJob(id));
    ReturnDict(invocation, JobDict(*job));
}

void Service::WaitJob(GDBusMethodInvocation *invocation, const char *id, guint timeout_ms)
{
    if (timeout_ms > 0)
        return AnswerWhenEnded(invocation, id, timeout_ms);
    std::optional<JobSnapshot> job = jobs_.Get(id);
    if (!job)
        return dbus::ReturnError(invocation, NoSuchJob(id));
    ReturnDict(invocation, JobDict(*job));
}

void Service::AnswerWhenEnded(GDBusMethodInvocation *invocation, const std::string &id,
                              guint timeout_ms)
{
    std::optional<JobSnapshot> job = jobs_.Get(id);
    auto it = records_.find(id);
    if (!job || dbus::IsFinished(job->state) || it == records_.end() || it->second->settled)
        return job ? ReturnDict(invocation, JobDict(*job))
                   : dbus::ReturnError(invocation, NoSuchJob(id.c_str()));
    auto waiter = std::make_unique<Waiter>(Waiter{this, id, invocation, false});
    if (timeout_ms)
        waiter->timer = g_timeout_add(timeout_ms, OnWaitTimeout, waiter.get());
    it->second->waiters.push_back(std::move(waiter));
}

void Service::SubscribeJobs(GDBusMethodInvocation *invocation)
{
    if (subscribers_.insert(g_dbus_method_invocation_get_connection(invocation)).second)
        subscriber_count_++;
    sdm_manager_complete_subscribe_jobs(skeleton_, invocation);
}

void Service::EmitJobSignal(const char *signal, GVariant *args)
{
    g_variant_ref_sink(args);
    for (GDBusConnection *connection : subscribers_) {
        g_autoptr(GError) error = nullptr;
        if (!g_dbus_connection_emit_signal(connection, nullptr, dbus::kObjectPath,
                                           dbus::kInterface, signal, args, &error))
            Log(LogLevel::kDebug, "cannot send %s to a client: %s", signal, error->message);
    }
    g_variant_unref(args);
}

void Service::CancelJob(GDBusMethodInvocation *invocation, const char *id)
{
    Status status = jobs_.Cancel(id);
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    Log(LogLevel::kInfo, "%s: cancel requested", id);
    sdm_manager_complete_cancel_job(skeleton_, invocation);
}


/* --- volume data and domain removal --- */

/* A descriptor a method's 'h' argument names in the message's fd list, duplicated and
 * owned (shared: job work is copied), or why there is none. */
static Result<std::shared_ptr<fileio::Fd>> TakeFd(GDBusMethodInvocation *invocation,
                                                  GVariant *handle, const char *what)
{
    GUnixFDList *list =
        g_dbus_message_get_unix_fd_list(g_dbus_method_invocation_get_message(invocation));
    gint index = g_variant_get_handle(handle);
    if (!list || index < 0 || index >= g_unix_fd_list_get_length(list))
        return Status::Error(ErrorCode::kInvalidArgument,
                             Printf(_("the call carries no file descriptor for %s (handle %d); "
                                      "pass it in the message's unix fd list"),
                                    what, index));
    g_autoptr(GError) error = nullptr;
    int fd = g_unix_fd_list_get(list, index, &error);
    if (fd < 0)
        return Status::Error(ErrorCode::kIoError,
                             Printf(_("cannot take the file descriptor for %s: %s"), what,
                                    error->message));
    return std::make_shared<fileio::Fd>(fd);
}

/* An upload's end as its producer confirms it: one byte on `control`, which a producer
 * that aborts or dies never writes (its descriptor just closes). */
static Status ConfirmEnd(int control, OpObserver *observer)
{
    for (;;) {
        struct pollfd p = {control, POLLIN, 0};
        int ready = poll(&p, 1, 250);
        if (ready < 0 && errno != EINTR)
            return Status::FromErrno(errno, _("waiting for the upload's confirmation"));
        if (ready > 0) {
            char byte;
            ssize_t got = read(control, &byte, 1);
            if (got == 1)
                return Status::Ok();
            if (got == 0)
                return Status::Error(ErrorCode::kCancelled,
                                     _("the upload stream ended without its producer's "
                                       "confirmation: it was aborted, or the process feeding "
                                       "it died"));
            if (errno != EINTR && errno != EAGAIN)
                return Status::FromErrno(errno, _("reading the upload's confirmation"));
        }
        if (observer && observer->CancelRequested())
            return Status::Error(ErrorCode::kCancelled, _("the operation was cancelled"));
    }
}

void Service::RemoveDomain(GDBusMethodInvocation *invocation, const char *path)
{
    Status status = dbus::CheckAbsolutePath(path, _("domain path"));
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string where = path;
    Serialize({CanonicalPath(where)}, "removing", [this, invocation, where](HoldPtr hold) {
        RemoveHeld(invocation, where, std::move(hold));
    });
}

void Service::RemoveHeld(GDBusMethodInvocation *invocation, const std::string &where,
                         HoldPtr path_hold)
{
    auto found = std::make_shared<std::optional<Found>>();
    OffMainLoop([found, where] { found->emplace(Probe(where)); }, [this, found, where,
                                                                   invocation, path_hold] {
        const Found &there = **found;
        ForgetStalePaths(where, there);
        if (!there.info.ok())
            return dbus::ReturnError(invocation, there.info.status());
        Serialize({there.info->uuid}, "removing", [this, invocation, where, read = *there.info,
                                                   path_hold](HoldPtr uuid_hold) {
            if (domains_.count(read.uuid))
                return dbus::ReturnError(
                    invocation,
                    Status::Error(ErrorCode::kBusy,
                                  Printf(_("domain %s at %s is attached on this host; detach "
                                           "it first (sdm detach, or virsh pool-destroy)"),
                                         read.uuid.c_str(), where.c_str())));
            auto removed = std::make_shared<Status>();
            OffMainLoop(
                [this, removed, where, read] {
                    auto entry = OpenEntry(where, read);
                    if (!entry.ok()) {
                        *removed = entry.status();
                        return;
                    }
                    *removed = RemoveOpened(**entry);
                },
                [this, removed, where, invocation, path_hold, uuid_hold] {
                    if (!removed->ok())
                        return dbus::ReturnError(invocation, *removed);
                    Log(LogLevel::kInfo, _("removed the domain at %s"), where.c_str());
                    sdm_manager_complete_remove_domain(skeleton_, invocation);
                });
        });
    });
}

void Service::UpgradeDomain(GDBusMethodInvocation *invocation, const char *path)
{
    Status status = dbus::CheckAbsolutePath(path, _("domain path"));
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string where = path;
    /* One at a time with attach, detach, format and remove of the same path. */
    Serialize({CanonicalPath(where)}, "upgrading", [this, invocation, where](HoldPtr hold) {
        if (auto attached = Find(where); attached.ok())
            return dbus::ReturnError(
                invocation,
                Status::Error(ErrorCode::kBusy,
                              Printf(_("domain %s at %s is attached on this host; detach it "
                                       "on every host first (sdm detach, or virsh "
                                       "pool-destroy), then upgrade"),
                                     (*attached)->info.uuid.c_str(), where.c_str())));
        auto result = std::make_shared<std::optional<Result<UpgradeReport>>>();
        OffMainLoop(
            [this, result, where] {
                auto info = Domain::Inspect(where);
                auto options =
                    info.ok() ? DomainOptionsFor(*info) : Result<DomainOptions>(info.status());
                if (!options.ok()) {
                    *result = options.status();
                    return;
                }
                /* The upgrade takes the domain lease exclusively: this host joins the
                 * lockspace for it, and leaves again. */
                auto sanlock = std::dynamic_pointer_cast<SanlockLeaseManager>(options->leases);
                if (sanlock) {
                    Status joined = sanlock->WaitJoined(options->lock_timeout);
                    if (!joined.ok()) {
                        (void)sanlock->Leave();
                        *result = joined;
                        return;
                    }
                    options->generation = sanlock->generation();
                }
                *result = Domain::Upgrade(where, *options);
                if (sanlock)
                    (void)sanlock->Leave();
            },
            [result, where, invocation, hold] {
                const Result<UpgradeReport> &report = **result;
                if (!report.ok())
                    return dbus::ReturnError(invocation, report.status());
                Log(LogLevel::kInfo, _("upgraded the domain at %s from format %u to %u"),
                    where.c_str(), report->from_version, report->to_version);
                ReturnDict(invocation, dbus::UpgradeReportToDict(*report));
            });
    });
}

/* Removes a domain opened for that alone; with sanlock, only while no other host is live
 * in its lockspace. Leaves the lockspace afterwards either way. */
Status Service::RemoveOpened(AttachedDomain &entry) const
{
    Status status = entry.With([&](Domain &d) -> Status {
        if (entry.sanlock) {
            auto hosts = entry.sanlock->Hosts();
            if (!hosts.ok())
                return hosts.status();
            for (const auto &host : *hosts) {
                if (host.host_id != config_.host_id && host.state == "live")
                    return Status::Error(
                        ErrorCode::kBusy,
                        Printf(_("host %llu is live in the lockspace of domain %s; stop the "
                                 "pool (detach the domain) on every other host first"),
                               static_cast<unsigned long long>(host.host_id),
                               entry.info.uuid.c_str()));
            }
        }
        return d.Remove();
    });
    {
        std::lock_guard lock(entry.open_mu);
        entry.domain.reset();
    }
    if (entry.sanlock) {
        Status left = entry.sanlock->Leave();
        if (!left.ok())
            Log(LogLevel::kWarning, _("domain %s: leaving its lockspace failed: %s"),
                entry.info.uuid.c_str(), left.ToString().c_str());
    }
    return status;
}

void Service::UploadVolume(GDBusMethodInvocation *invocation, const char *domain,
                           const char *name, guint64 offset, guint64 length, GVariant *data,
                           GVariant *control, GVariant *options)
{
    auto entry = Find(domain);
    Status status = entry.ok() ? dbus::DecodeDataTransfer(name, options, "UploadVolume")
                               : entry.status();
    auto data_fd = TakeFd(invocation, data, "data");
    auto control_fd = TakeFd(invocation, control, "control");
    if (status.ok())
        status = data_fd.ok() ? control_fd.status() : data_fd.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string volume = name;
    std::string id = Submit(
        "upload", volume, *entry,
        [volume, offset, length, data = *data_fd, control = *control_fd](OpObserver &observer,
                                                                         JobRecord &record) {
            UploadSource source;
            source.fd = data->get();
            source.confirm_end = [control](OpObserver *o) { return ConfirmEnd(control->get(), o); };
            auto result = record.entry->With([&](Domain &d) {
                return d.UploadVolume(volume, source, offset, length, &observer);
            });
            /* The job's work outlives it; the producer must see the pipe closed now. */
            *data = fileio::Fd();
            *control = fileio::Fd();
            return KeepVolume(std::move(result), record);
        });
    sdm_manager_complete_upload_volume(skeleton_, invocation, id.c_str());
}

void Service::DownloadVolume(GDBusMethodInvocation *invocation, const char *domain,
                             const char *name, guint64 offset, guint64 length, GVariant *data,
                             GVariant *options)
{
    auto entry = Find(domain);
    Status status = entry.ok() ? dbus::DecodeDataTransfer(name, options, "DownloadVolume")
                               : entry.status();
    auto data_fd = TakeFd(invocation, data, "data");
    if (status.ok())
        status = data_fd.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string volume = name;
    std::string id = Submit("download", volume, *entry,
                            [volume, offset, length, data = *data_fd](OpObserver &observer,
                                                                      JobRecord &record) {
                                Status done = record.entry->With([&](Domain &d) {
                                    return d.DownloadVolume(volume, data->get(), offset, length,
                                                            &observer);
                                });
                                /* The reader sees the end only once this is closed. */
                                *data = fileio::Fd();
                                return done;
                            });
    sdm_manager_complete_download_volume(skeleton_, invocation, id.c_str());
}

void Service::WipeVolume(GDBusMethodInvocation *invocation, const char *domain,
                         const char *name, GVariant *options)
{
    auto entry = Find(domain);
    Status status = entry.ok() ? dbus::DecodeWipeVolume(name, options) : entry.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string volume = name;
    std::string id = Submit("wipe", volume, *entry,
                            [volume](OpObserver &observer, JobRecord &record) {
                                return KeepVolume(record.entry->With([&](Domain &d) {
                                    return d.WipeVolume(volume, &observer);
                                }),
                                                  record);
                            });
    sdm_manager_complete_wipe_volume(skeleton_, invocation, id.c_str());
}

void Service::ImportVolume(GDBusMethodInvocation *invocation, const char *domain,
                           const char *name, GVariant *source, GVariant *options)
{
    auto entry = Find(domain);
    auto decoded = dbus::DecodeImportVolume(name, options);
    Status status = entry.ok() ? decoded.status() : entry.status();
    auto source_fd = TakeFd(invocation, source, "source");
    if (status.ok())
        status = source_fd.status();
    if (!status.ok())
        return dbus::ReturnError(invocation, status);
    std::string id = Submit("import", name, *entry,
                            [params = *decoded, source = *source_fd](OpObserver &observer,
                                                          JobRecord &record) mutable {
                                params.source_fd = source->get();
                                auto made = record.entry->With([&](Domain &d) {
                                    return d.ImportVolume(params, &observer);
                                });
                                *source = fileio::Fd();
                                return KeepVolume(std::move(made), record);
                            });
    sdm_manager_complete_import_volume(skeleton_, invocation, id.c_str());
}

}  // namespace sdm::daemon
