/* sdmd's service: the engine served over D-Bus, peer to peer on a unix socket.
 *
 * The Service owns the attached domains, one JobManager and the GDBusServer, and exports
 * the org.libvirt.Sdm1.Manager skeleton on every accepted connection. Operations that
 * change storage run as jobs on their own threads; reads that touch storage run on GLib's
 * worker pool; nothing that may wait on storage or a lock runs on the main loop.
 *
 * Threading: every method and all state of the Service belong to the thread running the
 * default GMainContext, except the job-event queue (its own mutex) and the per-job results
 * that job threads fill in (JobRecord::mu). Job threads reach the main loop only through
 * that queue. */
#pragma once

#include <gio/gio.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backend/daemon/config.h"
#include "sdm/domain.h"
#include "sdm/job.h"

struct _SdmManager;

namespace sdm::daemon {

class Service {
public:
    explicit Service(Config config);
    ~Service();
    Service(const Service &) = delete;
    Service &operator=(const Service &) = delete;

    /* Attaches the configured domains (a failure is logged, not fatal), then listens on
     * the socket: a stale socket is replaced, a live one (another sdmd) refused. */
    Status Start();

    /* Stops accepting, cancels every job and returns at once; `done` runs on the main
     * loop when all jobs and worker calls have ended and the lockspaces this sdmd joined
     * are left, or with false when `grace` passes first. */
    void Stop(std::chrono::milliseconds grace, std::function<void(bool clean)> done);

    /* Whether this host's lockspace of some attached domain is failing or lost: then
     * sanlock is about to end (or has fenced) sdmd's leases, and a stop must not touch
     * storage. Reads state the monitors keep; does not block. */
    bool LockspaceFailed() const;

private:
    struct AttachedDomain;
    struct JobRecord;
    struct Waiter;
    template <typename T> struct Handler;

    /* --- server and connections --- */
    Status Listen();
    static gboolean OnNewConnection(GDBusServer *server, GDBusConnection *connection,
                                    gpointer self);
    static void OnConnectionClosed(GDBusConnection *connection, gboolean remote_peer_vanished,
                                   GError *error, gpointer self);
    static gboolean OnAllowMechanism(GDBusAuthObserver *observer, const char *mechanism,
                                     gpointer self);
    static gboolean OnAuthorizePeer(GDBusAuthObserver *observer, GIOStream *stream,
                                    GCredentials *credentials, gpointer self);
    bool PeerAllowed(GCredentials *credentials) const;
    template <auto Method> void Connect(const char *signal);

    /* --- domains --- */
    Result<DomainOptions> DomainOptionsFor(const DomainInfo &info) const;
    /* What is at a path now: the domain there (its metadata), and the path resolved. */
    struct Found {
        Result<DomainInfo> info;
        std::optional<std::string> real;
    };
    /* Reads what is at `path`. Blocks on storage: off the main loop. */
    static Found Probe(const std::string &path);
    /* Prepares the entry of the domain `info`, read at `path` (joining its lockspace with
     * sanlock leases). A lockspace this host is still leaving (sdmd restarted, say) is
     * waited for, up to the lock timeout, and then joined again. Blocks, so off the main
     * loop except at Start. */
    Result<std::shared_ptr<AttachedDomain>> OpenEntry(const std::string &path,
                                                      const DomainInfo &info) const;
    Result<std::shared_ptr<AttachedDomain>> Find(const std::string &domain) const;
    std::shared_ptr<AttachedDomain> Adopt(std::shared_ptr<AttachedDomain> entry);
    /* What `found` read at `path` holds no domain, or another one: an attached domain known
     * by that path (or its resolved form) no longer answers to it. */
    void ForgetStalePaths(const std::string &path, const Found &found);
    GVariant *DomainDict(const AttachedDomain &entry) const;

    /* --- the life cycle: attach, detach, remove and format ---
     * They run one at a time per domain: each holds keys (canonical paths, uuids) from
     * its start until the Hold it was given goes, and one that needs a held key waits for
     * it. A key is taken with all others of a call at once; an attach or remove takes its
     * path first and the uuid found there next, never the other way round, so no two
     * wait for each other. Main loop only. */
    class Hold;
    using HoldPtr = std::shared_ptr<Hold>;
    /* Runs `run` on the main loop as soon as none of `keys` is held; `doing` says what
     * holds them ("attaching", ...), for the messages of calls that find them held. */
    void Serialize(std::vector<std::string> keys, const char *doing,
                   std::function<void(HoldPtr)> run);
    void StartQueued();
    /* Why `domain` (a path or uuid) is not attached now, if a life-cycle call holds it. */
    std::optional<std::string> HeldBy(const std::string &domain) const;
    /* The life-cycle calls, once their path is held. Attach and remove read what is at
     * the path first, then hold its uuid too. */
    void FormatHeld(GDBusMethodInvocation *invocation, const std::string &where,
                    const FormatParams &params, HoldPtr hold);
    void AttachHeld(GDBusMethodInvocation *invocation, const std::string &where,
                    HoldPtr path_hold);
    void RemoveHeld(GDBusMethodInvocation *invocation, const std::string &where,
                    HoldPtr path_hold);

    /* --- jobs --- */
    using Work = std::function<Status(OpObserver &observer, JobRecord &record)>;
    std::string Submit(const std::string &type, const std::string &object,
                       const std::shared_ptr<AttachedDomain> &entry, Work work);
    /* A job's outcome from an operation that makes a volume, kept as the job's result. */
    static Status KeepVolume(Result<VolumeInfo> volume, JobRecord &record);
    GVariant *JobDict(const JobSnapshot &job);
    void OnJobEvent(const JobEvent &event);         /* job threads */
    static gboolean DrainEvents(gpointer self);      /* main loop */
    void HandleEvent(const JobEvent &event);
    void Settle(const JobSnapshot &job, JobRecord &record);
    void CompleteWaiter(Waiter &waiter, const JobSnapshot &job, JobRecord &record);
    static gboolean OnWaitTimeout(gpointer waiter);
    void PruneRecords();
    static gboolean OnGcTimer(gpointer self);
    /* Reports a lockspace that turns failing or lost, or recovers; once a second. */
    static gboolean OnLockspaceTimer(gpointer self);
    void SubmitSweep(const std::shared_ptr<AttachedDomain> &entry, bool dry_run,
                     GDBusMethodInvocation *invocation);

    /* Runs `work` on GLib's worker pool, then `done` on the main loop. */
    void OffMainLoop(std::function<void()> work, std::function<void()> done);
    void CheckStopped();
    void FinishStop(bool clean);

    /* --- D-Bus methods, in the order of xml/org.libvirt.Sdm1.xml --- */
    void GetStatus(GDBusMethodInvocation *invocation);
    void FormatDomain(GDBusMethodInvocation *invocation, const char *path, GVariant *options);
    void AttachDomain(GDBusMethodInvocation *invocation, const char *path);
    void DetachDomain(GDBusMethodInvocation *invocation, const char *domain);
    void ListDomains(GDBusMethodInvocation *invocation);
    void GetDomain(GDBusMethodInvocation *invocation, const char *domain);
    void CreateVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name,
                      guint64 capacity, GVariant *options);
    void CreateVolumeAndWait(GDBusMethodInvocation *invocation, const char *domain,
                             const char *name, guint64 capacity, GVariant *options);
    /* Starts a create job: its id, or nothing once `invocation` is answered with why not. */
    std::optional<std::string> StartCreate(GDBusMethodInvocation *invocation,
                                           const char *domain, const char *name,
                                           guint64 capacity, GVariant *options);
    /* Answers `invocation` with job `id`'s dictionary once the job has ended, or when
     * `timeout_ms` (if not 0) passes. */
    void AnswerWhenEnded(GDBusMethodInvocation *invocation, const std::string &id,
                         guint timeout_ms);
    void CloneVolume(GDBusMethodInvocation *invocation, const char *domain, const char *source,
                     const char *name, GVariant *options);
    void DeleteVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name);
    void ResizeVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name,
                      guint64 capacity);
    void PlanVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name,
                    GVariant *options);
    void LookupVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name);
    void ListVolumes(GDBusMethodInvocation *invocation, const char *domain);
    void ListVolumeTable(GDBusMethodInvocation *invocation, const char *domain);
    /* Lists a domain off the main loop and answers with `reply` made from the volumes. */
    void ReplyWithVolumes(GDBusMethodInvocation *invocation, const char *domain,
                          GVariant *(*reply)(const std::vector<VolumeInfo> &,
                                             const std::string &domain));
    void GetLeaseXml(GDBusMethodInvocation *invocation, const char *domain, const char *name);
    void CollectGarbage(GDBusMethodInvocation *invocation, const char *domain,
                        gboolean dry_run);
    void CheckDomain(GDBusMethodInvocation *invocation, const char *domain);
    void ListHosts(GDBusMethodInvocation *invocation, const char *domain);
    void ListJobs(GDBusMethodInvocation *invocation);
    void GetJob(GDBusMethodInvocation *invocation, const char *id);
    void WaitJob(GDBusMethodInvocation *invocation, const char *id, guint timeout_ms);
    void CancelJob(GDBusMethodInvocation *invocation, const char *id);
    void SubscribeJobs(GDBusMethodInvocation *invocation);
    /* Emits one of the job signals on every subscribed connection; takes `args`. */
    void EmitJobSignal(const char *signal, GVariant *args);
    /* Volume data and domain removal (docs/data-operations.md). */
    void RemoveDomain(GDBusMethodInvocation *invocation, const char *path);
    void UpgradeDomain(GDBusMethodInvocation *invocation, const char *path);
    Status RemoveOpened(AttachedDomain &entry) const;  /* off the main loop */
    void UploadVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name,
                      guint64 offset, guint64 length, GVariant *data, GVariant *control,
                      GVariant *options);
    void DownloadVolume(GDBusMethodInvocation *invocation, const char *domain,
                        const char *name, guint64 offset, guint64 length, GVariant *data,
                        GVariant *options);
    void WipeVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name,
                    GVariant *options);
    void ImportVolume(GDBusMethodInvocation *invocation, const char *domain, const char *name,
                      GVariant *source, GVariant *options);

    const Config config_;
    const std::chrono::steady_clock::time_point started_;
    JobManager jobs_;
    uint64_t subscription_ = 0;

    GDBusServer *server_ = nullptr;
    GDBusAuthObserver *auth_ = nullptr;
    _SdmManager *skeleton_ = nullptr;
    std::vector<GDBusConnection *> connections_;
    std::set<GDBusConnection *> subscribers_;     /* main loop; a subset of connections_ */
    std::atomic<int> subscriber_count_{0};        /* their number, read by job threads */
    guint gc_timer_ = 0;
    guint lockspace_timer_ = 0;

    std::map<std::string, std::shared_ptr<AttachedDomain>> domains_; /* by uuid */
    struct Queued {
        std::vector<std::string> keys;
        std::string doing;
        std::function<void(HoldPtr)> run;
    };
    std::map<std::string, std::string> held_; /* life-cycle key -> what holds it */
    std::list<Queued> queued_;                /* life-cycle calls waiting for keys */
    std::map<std::string, std::shared_ptr<JobRecord>> records_;     /* by job id */
    int worker_calls_ = 0;

    std::mutex events_mu_;
    std::vector<JobEvent> events_;   /* guarded by events_mu_ */
    guint drain_source_ = 0;         /* guarded by events_mu_ */

    bool stopping_ = false;
    int leaving_ = -1;               /* lockspaces a stop still leaves; -1 before it starts */
    guint stop_timer_ = 0;
    std::function<void(bool)> stopped_;
};

}  // namespace sdm::daemon
