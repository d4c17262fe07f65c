/* Jobs: every running operation, polled or followed through events.
 *
 * A JobManager runs each submitted operation on a thread of its own, tracks its state
 * (pending, running, done, failed, aborted), progress and current step, and on failure
 * the error code with its context. Subscribers get an event on every state change and on
 * progress (throttled). Finished jobs are kept for a while and then expire: results are
 * not persistent, storage is the record. All methods are thread-safe; subscriber
 * callbacks run on the job's thread and must not call back into the manager. */
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm {

enum class JobState { kPending, kRunning, kDone, kFailed, kAborted };
const char *JobStateName(JobState state); /* "pending", "running", "done", "failed", "aborted" */

struct JobSnapshot {
    std::string id;
    std::string type;     /* "create", "clone", "delete", "resize", "gc", ... */
    std::string object;   /* what it works on, e.g. the volume name */
    JobState state = JobState::kPending;
    std::string step;     /* last named step reached */
    uint64_t done = 0;    /* progress, in units of `total` (bytes for copies) */
    uint64_t total = 0;
    Status error;         /* set when state is kFailed or kAborted */
    std::chrono::system_clock::time_point started;
    std::optional<std::chrono::system_clock::time_point> finished;
};

enum class JobEventKind { kStateChanged, kProgress };

struct JobEvent {
    JobEventKind kind;
    JobSnapshot job;
};

class JobManager {
public:
    using Work = std::function<Status(OpObserver &observer)>;
    using Listener = std::function<void(const JobEvent &event)>;

    /* Finished jobs are forgotten `expiry` after they finish. */
    explicit JobManager(std::chrono::milliseconds expiry = std::chrono::minutes(10));
    ~JobManager(); /* requests cancellation of running jobs and joins their threads */

    JobManager(const JobManager &) = delete;
    JobManager &operator=(const JobManager &) = delete;

    /* Starts `work` on a new thread; returns the job id at once. */
    std::string Submit(const std::string &type, const std::string &object, Work work);

    std::optional<JobSnapshot> Get(const std::string &id);
    std::vector<JobSnapshot> List();
    /* Asks a pending or running job to stop at its next step; kNotFound for an unknown
     * id, kInvalidArgument for a finished one. */
    Status Cancel(const std::string &id);
    /* Blocks until the job finishes or `timeout` passes; the snapshot at that moment. */
    std::optional<JobSnapshot> Wait(const std::string &id, std::chrono::milliseconds timeout);

    uint64_t Subscribe(Listener listener);
    void Unsubscribe(uint64_t subscription);

    /* Drops finished jobs whose expiry has passed; called on every Submit and List too. */
    void ExpireFinished();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sdm
