/* The job manager: one thread per submitted operation, its state and progress, and the
 * events subscribers follow it by.
 *
 * Every method is thread-safe; one mutex guards the job table and the subscriber table.
 * A job's events are all delivered on the job's own thread, in order: kStateChanged for
 * pending, running and the final state, and kProgress in between for every new named
 * step and for progress (at most one per 1% of the total or per 200 ms, plus the one that
 * reaches done == total). Listeners are called without the manager's mutex held, each
 * under a mutex of its own, so one listener is never called concurrently with itself and
 * Unsubscribe, which takes that mutex, returns only once no call is in flight. A job
 * counts as settled once its final event is delivered: Wait returns then, and only
 * settled jobs expire, so the thread that expires a job never joins itself. */
#include "sdm/job.h"

#include <glib.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "backend/engine/i18n.h"

namespace sdm {

namespace {

constexpr std::chrono::milliseconds kProgressInterval(200);
constexpr uint64_t kProgressSteps = 100; /* one event per 1% of the total */
/* wait_for adds the timeout to now() in nanoseconds: cap it well below overflow. */
constexpr std::chrono::milliseconds kLongestWait = std::chrono::hours(24 * 365 * 100);

bool IsFinished(JobState state)
{
    return state == JobState::kDone || state == JobState::kFailed ||
           state == JobState::kAborted;
}

}  // namespace

const char *JobStateName(JobState state)
{
    switch (state) {
    case JobState::kPending: return "pending";
    case JobState::kRunning: return "running";
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kAborted: return "aborted";
    }
    return "unknown";
}

struct JobManager::Impl {
    /* Guarded by `mu`, except `cancel`; `thread` is set under `mu` before the job runs. */
    struct Record {
        uint64_t seq = 0;
        JobSnapshot snapshot;
        bool settled = false;
        std::chrono::steady_clock::time_point finished_at; /* immune to clock changes */
        /* The last progress event sent, for throttling. */
        bool progress_sent = false;
        uint64_t sent_done = 0;
        uint64_t sent_total = 0;
        std::chrono::steady_clock::time_point sent_at;
        std::atomic<bool> cancel{false}; /* polled without the mutex by the copy loop */
        std::thread thread;
    };

    class Observer;

    struct Subscriber {
        Listener listener;
        std::mutex call_mu;
        bool active = true; /* guarded by call_mu */
    };

    explicit Impl(std::chrono::milliseconds expiry_in) : expiry(expiry_in) {}

    void Run(Record &record, const Work &work);
    void Finish(Record &record, Status status);
    void Deliver(const JobEvent &event);
    static bool ProgressDue(const Record &record, std::chrono::steady_clock::time_point now);
    /* Removes expired jobs from the table; the caller joins them after unlocking. */
    std::vector<std::shared_ptr<Record>> TakeExpired();
    static void Join(std::vector<std::shared_ptr<Record>> &records);

    const std::chrono::milliseconds expiry;
    std::mutex mu;
    std::condition_variable settled_cv;
    std::map<std::string, std::shared_ptr<Record>> jobs;
    std::map<uint64_t, std::shared_ptr<Subscriber>> subscribers;
    uint64_t next_job = 1;
    uint64_t next_subscription = 1;
};

/* What a job's work reports to; bound to the job's record for the work's lifetime. */
class JobManager::Impl::Observer : public OpObserver {
public:
    Observer(Impl &impl, Record &record) : impl_(impl), record_(record) {}

    void OnStep(const std::string &step) override
    {
        JobEvent event{JobEventKind::kProgress, {}};
        {
            std::lock_guard lock(impl_.mu);
            record_.snapshot.step = step;
            event.job = record_.snapshot;
        }
        impl_.Deliver(event);
    }

    void OnProgress(uint64_t done, uint64_t total) override
    {
        JobEvent event{JobEventKind::kProgress, {}};
        {
            std::lock_guard lock(impl_.mu);
            record_.snapshot.done = done;
            record_.snapshot.total = total;
            auto now = std::chrono::steady_clock::now();
            if (!ProgressDue(record_, now))
                return;
            record_.progress_sent = true;
            record_.sent_done = done;
            record_.sent_total = total;
            record_.sent_at = now;
            event.job = record_.snapshot;
        }
        impl_.Deliver(event);
    }

    bool CancelRequested() override { return record_.cancel.load(); }

private:
    Impl &impl_;
    Record &record_;
};

bool JobManager::Impl::ProgressDue(const Record &record,
                                   std::chrono::steady_clock::time_point now)
{
    uint64_t done = record.snapshot.done;
    uint64_t total = record.snapshot.total;
    /* A first report, a new total or a step backwards starts a new phase. */
    if (!record.progress_sent || total != record.sent_total || done < record.sent_done)
        return true;
    if (done == record.sent_done)
        return false;
    if (done == total)
        return true;
    uint64_t step = std::max<uint64_t>(1, total / kProgressSteps);
    return done - record.sent_done >= step || now - record.sent_at >= kProgressInterval;
}

void JobManager::Impl::Deliver(const JobEvent &event)
{
    std::vector<std::shared_ptr<Subscriber>> targets;
    {
        std::lock_guard lock(mu);
        for (auto &[id, subscriber] : subscribers)
            targets.push_back(subscriber);
    }
    for (auto &subscriber : targets) {
        std::lock_guard call(subscriber->call_mu);
        if (subscriber->active)
            subscriber->listener(event);
    }
}

void JobManager::Impl::Run(Record &record, const Work &work)
{
    JobEvent event{JobEventKind::kStateChanged, {}};
    {
        std::lock_guard lock(mu);
        event.job = record.snapshot;
    }
    Deliver(event);

    /* A job cancelled while pending never starts its work. */
    bool cancelled;
    {
        std::lock_guard lock(mu);
        cancelled = record.cancel.load();
        if (!cancelled) {
            record.snapshot.state = JobState::kRunning;
            event.job = record.snapshot;
        }
    }
    if (cancelled) {
        Finish(record, Status::Error(ErrorCode::kCancelled,
                                     Printf(_("job %s was cancelled before it started; "
                                              "submit the operation again if it is still needed"),
                                            event.job.id.c_str())));
        return;
    }
    Deliver(event);

    Observer observer(*this, record);
    Status status;
    /* An exception must not escape the thread (it would end the daemon); it is a bug
     * in the operation, reported as such. */
    try {
        status = work(observer);
    } catch (const std::exception &e) {
        status = Status::Error(ErrorCode::kInternal,
                               Printf(_("job %s stopped on an unexpected error: %s; "
                                        "please report this bug"),
                                      event.job.id.c_str(), e.what()));
    }
    Finish(record, std::move(status));
}

void JobManager::Impl::Finish(Record &record, Status status)
{
    JobEvent event{JobEventKind::kStateChanged, {}};
    {
        std::lock_guard lock(mu);
        JobSnapshot &snapshot = record.snapshot;
        if (status.ok()) {
            snapshot.state = JobState::kDone;
        } else {
            /* An error that does not name its step arose after the last one reached. */
            if (!snapshot.step.empty())
                status.WithStep(snapshot.step);
            bool aborted = status.code() == ErrorCode::kCancelled || record.cancel.load();
            snapshot.state = aborted ? JobState::kAborted : JobState::kFailed;
            snapshot.error = std::move(status);
        }
        snapshot.finished = std::chrono::system_clock::now();
        record.finished_at = std::chrono::steady_clock::now();
        event.job = snapshot;
    }
    Deliver(event);
    {
        std::lock_guard lock(mu);
        record.settled = true;
    }
    settled_cv.notify_all();
}

std::vector<std::shared_ptr<JobManager::Impl::Record>> JobManager::Impl::TakeExpired()
{
    std::vector<std::shared_ptr<Record>> expired;
    auto now = std::chrono::steady_clock::now();
    for (auto it = jobs.begin(); it != jobs.end();) {
        const Record &record = *it->second;
        if (record.settled && record.finished_at + expiry < now) {
            expired.push_back(std::move(it->second));
            it = jobs.erase(it);
        } else {
            ++it;
        }
    }
    return expired;
}

void JobManager::Impl::Join(std::vector<std::shared_ptr<Record>> &records)
{
    for (auto &record : records) {
        if (record->thread.joinable())
            record->thread.join();
    }
}

JobManager::JobManager(std::chrono::milliseconds expiry)
    : impl_(std::make_unique<Impl>(expiry)) {}

JobManager::~JobManager()
{
    /* A job's work may submit more jobs while we wait: repeat until none is left. */
    for (;;) {
        std::vector<std::shared_ptr<Impl::Record>> records;
        {
            std::lock_guard lock(impl_->mu);
            if (impl_->jobs.empty())
                break;
            for (auto &[id, record] : impl_->jobs) {
                record->cancel = true;
                records.push_back(std::move(record));
            }
            impl_->jobs.clear();
        }
        Impl::Join(records);
    }
}

std::string JobManager::Submit(const std::string &type, const std::string &object, Work work)
{
    auto record = std::make_shared<Impl::Record>();
    std::vector<std::shared_ptr<Impl::Record>> expired;
    std::string id;
    int thread_error = 0;
    {
        std::lock_guard lock(impl_->mu);
        expired = impl_->TakeExpired();
        record->seq = impl_->next_job++;
        id = "job-" + std::to_string(record->seq);
        record->snapshot.id = id;
        record->snapshot.type = type;
        record->snapshot.object = object;
        record->snapshot.started = std::chrono::system_clock::now();
        impl_->jobs.emplace(id, record);
        /* Started under the lock: nobody may see the job settled before `thread` is set. */
        try {
            record->thread = std::thread(
                [impl = impl_.get(), job = record.get(), work = std::move(work)] {
                    impl->Run(*job, work);
                });
        } catch (const std::system_error &e) {
            thread_error = e.code().value();
        }
    }
    Impl::Join(expired);
    if (thread_error != 0) {
        /* Without a thread the job fails at once; its one event comes on this thread. */
        impl_->Finish(*record,
                      Status::Error(ErrorCode::kIoError,
                                    Printf(_("cannot start a thread for job %s: %s; retry when "
                                             "fewer operations are running"),
                                           id.c_str(), strerror(thread_error))));
    }
    return id;
}

std::optional<JobSnapshot> JobManager::Get(const std::string &id)
{
    std::lock_guard lock(impl_->mu);
    auto it = impl_->jobs.find(id);
    if (it == impl_->jobs.end())
        return std::nullopt;
    return it->second->snapshot;
}

std::vector<JobSnapshot> JobManager::List()
{
    std::vector<std::shared_ptr<Impl::Record>> expired;
    std::vector<std::pair<uint64_t, JobSnapshot>> ordered;
    {
        std::lock_guard lock(impl_->mu);
        expired = impl_->TakeExpired();
        for (auto &[id, record] : impl_->jobs)
            ordered.emplace_back(record->seq, record->snapshot);
    }
    Impl::Join(expired);
    std::sort(ordered.begin(), ordered.end(),
              [](const auto &a, const auto &b) { return a.first < b.first; });
    std::vector<JobSnapshot> result;
    result.reserve(ordered.size());
    for (auto &[seq, snapshot] : ordered)
        result.push_back(std::move(snapshot));
    return result;
}

Status JobManager::Cancel(const std::string &id)
{
    std::lock_guard lock(impl_->mu);
    auto it = impl_->jobs.find(id);
    if (it == impl_->jobs.end())
        return Status::Error(ErrorCode::kNotFound,
                             Printf(_("no job %s; it may have finished and expired, list the "
                                      "jobs to see the current ids"),
                                    id.c_str()));
    Impl::Record &record = *it->second;
    if (IsFinished(record.snapshot.state))
        return Status::Error(ErrorCode::kInvalidArgument,
                             Printf(_("job %s already finished (%s); there is nothing to cancel"),
                                    id.c_str(), JobStateName(record.snapshot.state)));
    record.cancel = true;
    return Status::Ok();
}

std::optional<JobSnapshot> JobManager::Wait(const std::string &id,
                                            std::chrono::milliseconds timeout)
{
    std::unique_lock lock(impl_->mu);
    auto it = impl_->jobs.find(id);
    if (it == impl_->jobs.end())
        return std::nullopt;
    /* Held so that the job may expire while we wait without freeing what we read. */
    std::shared_ptr<Impl::Record> record = it->second;
    timeout = std::clamp(timeout, std::chrono::milliseconds::zero(), kLongestWait);
    impl_->settled_cv.wait_for(lock, timeout, [&record] { return record->settled; });
    return record->snapshot;
}

uint64_t JobManager::Subscribe(Listener listener)
{
    auto subscriber = std::make_shared<Impl::Subscriber>();
    subscriber->listener = std::move(listener);
    std::lock_guard lock(impl_->mu);
    uint64_t subscription = impl_->next_subscription++;
    impl_->subscribers.emplace(subscription, std::move(subscriber));
    return subscription;
}

void JobManager::Unsubscribe(uint64_t subscription)
{
    std::shared_ptr<Impl::Subscriber> subscriber;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->subscribers.find(subscription);
        if (it == impl_->subscribers.end())
            return;
        subscriber = std::move(it->second);
        impl_->subscribers.erase(it);
    }
    /* Waits out a call in flight on a job's thread; later deliveries see it inactive. */
    std::lock_guard call(subscriber->call_mu);
    subscriber->active = false;
}

void JobManager::ExpireFinished()
{
    std::vector<std::shared_ptr<Impl::Record>> expired;
    {
        std::lock_guard lock(impl_->mu);
        expired = impl_->TakeExpired();
    }
    Impl::Join(expired);
}

}  // namespace sdm
