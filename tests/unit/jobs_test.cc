/* Tests of the job manager: states, errors, cancellation, events, expiry and shutdown.
 * Jobs that must stay put while a test looks at them block on a Gate the test opens;
 * nothing here asserts on timing. */
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "sdm/job.h"

namespace sdm {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kForever = std::chrono::minutes(5);

/* A one-shot signal between the test and a job's thread. */
class Gate {
public:
    void Open()
    {
        std::lock_guard lock(mu_);
        open_ = true;
        cv_.notify_all();
    }
    void WaitOpen()
    {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return open_; });
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool open_ = false;
};

/* Records every event a manager delivers. */
class EventLog {
public:
    JobManager::Listener Listener()
    {
        return [this](const JobEvent &event) {
            std::lock_guard lock(mu_);
            events_.push_back(event);
        };
    }
    std::vector<JobEvent> For(const std::string &id)
    {
        std::lock_guard lock(mu_);
        std::vector<JobEvent> result;
        for (const auto &event : events_) {
            if (event.job.id == id)
                result.push_back(event);
        }
        return result;
    }
    size_t Size()
    {
        std::lock_guard lock(mu_);
        return events_.size();
    }

private:
    std::mutex mu_;
    std::vector<JobEvent> events_;
};

/* Runs until cancelled, then reports the cancellation as an operation would. */
Status UntilCancelled(OpObserver &observer, Gate *started)
{
    observer.OnStep("copy");
    if (started)
        started->Open();
    while (!observer.CancelRequested())
        std::this_thread::sleep_for(milliseconds(1));
    return Status::Error(ErrorCode::kCancelled, "copy cancelled");
}

std::vector<JobState> StateChanges(const std::vector<JobEvent> &events)
{
    std::vector<JobState> states;
    for (const auto &event : events) {
        if (event.kind == JobEventKind::kStateChanged)
            states.push_back(event.job.state);
    }
    return states;
}

TEST(JobStateName, SpellsEveryState)
{
    EXPECT_STREQ(JobStateName(JobState::kPending), "pending");
    EXPECT_STREQ(JobStateName(JobState::kRunning), "running");
    EXPECT_STREQ(JobStateName(JobState::kDone), "done");
    EXPECT_STREQ(JobStateName(JobState::kFailed), "failed");
    EXPECT_STREQ(JobStateName(JobState::kAborted), "aborted");
}

TEST(JobManager, RunsToDoneWithFullProgress)
{
    JobManager manager;
    std::string id = manager.Submit("create", "vm1-disk", [](OpObserver &observer) {
        observer.OnStep("write-data");
        for (uint64_t done = 0; done <= 10; done++)
            observer.OnProgress(done, 10);
        return Status::Ok();
    });
    EXPECT_FALSE(id.empty());
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->id, id);
    EXPECT_EQ(snapshot->type, "create");
    EXPECT_EQ(snapshot->object, "vm1-disk");
    EXPECT_EQ(snapshot->state, JobState::kDone);
    EXPECT_EQ(snapshot->step, "write-data");
    EXPECT_EQ(snapshot->done, 10u);
    EXPECT_EQ(snapshot->total, 10u);
    EXPECT_TRUE(snapshot->error.ok());
    ASSERT_TRUE(snapshot->finished.has_value());
    EXPECT_GE(*snapshot->finished, snapshot->started);

    auto got = manager.Get(id);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->state, JobState::kDone);
    EXPECT_EQ(got->done, 10u);
}

TEST(JobManager, FailureKeepsCodeMessageAndContext)
{
    JobManager manager;
    std::string id = manager.Submit("clone", "base", [](OpObserver &observer) {
        observer.OnStep("copy");
        return Status::Error(ErrorCode::kNoSpace, "no space left for the clone",
                             {"dom-1", "img-2", "vol-3", "sync-data"});
    });
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kFailed);
    EXPECT_EQ(snapshot->error.code(), ErrorCode::kNoSpace);
    EXPECT_EQ(snapshot->error.message(), "no space left for the clone");
    EXPECT_EQ(snapshot->error.context().domain, "dom-1");
    EXPECT_EQ(snapshot->error.context().image, "img-2");
    EXPECT_EQ(snapshot->error.context().volume, "vol-3");
    EXPECT_EQ(snapshot->error.context().step, "sync-data");
    EXPECT_TRUE(snapshot->finished.has_value());
}

TEST(JobManager, FailureWithoutStepNamesTheLastStepReached)
{
    JobManager manager;
    std::string id = manager.Submit("delete", "old", [](OpObserver &observer) {
        observer.OnStep("write-marker");
        observer.OnStep("remove-data");
        return Status::Error(ErrorCode::kIoError, "unlink failed", {"dom-1", "", "vol-9", ""});
    });
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kFailed);
    EXPECT_EQ(snapshot->error.context().step, "remove-data");
    EXPECT_EQ(snapshot->error.context().volume, "vol-9");
    EXPECT_EQ(snapshot->error.context().image, "");
}

TEST(JobManager, WorkThatThrowsFailsAsInternalError)
{
    JobManager manager;
    std::string id = manager.Submit("resize", "v", [](OpObserver &) -> Status {
        throw std::runtime_error("boom");
    });
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kFailed);
    EXPECT_EQ(snapshot->error.code(), ErrorCode::kInternal);
    EXPECT_NE(snapshot->error.message().find("boom"), std::string::npos);
    EXPECT_NE(snapshot->error.message().find(id), std::string::npos);
}

TEST(JobManager, CancelStopsARunningJob)
{
    JobManager manager;
    Gate started;
    std::string id = manager.Submit("clone", "big", [&started](OpObserver &observer) {
        return UntilCancelled(observer, &started);
    });
    started.WaitOpen();
    auto running = manager.Get(id);
    ASSERT_TRUE(running.has_value());
    EXPECT_EQ(running->state, JobState::kRunning);

    ASSERT_TRUE(manager.Cancel(id).ok());
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kAborted);
    EXPECT_EQ(snapshot->error.code(), ErrorCode::kCancelled);
    EXPECT_EQ(snapshot->error.context().step, "copy");
}

TEST(JobManager, FailureAfterCancelIsAnAbort)
{
    JobManager manager;
    Gate started;
    std::string id = manager.Submit("clone", "big", [&started](OpObserver &observer) {
        started.Open();
        while (!observer.CancelRequested())
            std::this_thread::sleep_for(milliseconds(1));
        return Status::Error(ErrorCode::kIoError, "read interrupted");
    });
    started.WaitOpen();
    ASSERT_TRUE(manager.Cancel(id).ok());
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kAborted);
    EXPECT_EQ(snapshot->error.code(), ErrorCode::kIoError);
}

TEST(JobManager, WorkThatCompletesDespiteCancelIsDone)
{
    JobManager manager;
    Gate started;
    Gate cancelled;
    std::string id = manager.Submit("create", "v", [&](OpObserver &) {
        started.Open();
        cancelled.WaitOpen();
        return Status::Ok();
    });
    started.WaitOpen();
    ASSERT_TRUE(manager.Cancel(id).ok());
    cancelled.Open();
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kDone);
    EXPECT_TRUE(snapshot->error.ok());
}

TEST(JobManager, CancelledPendingJobNeverRunsItsWork)
{
    JobManager manager;
    /* A listener that holds the job's thread on its pending event keeps it pending. */
    Gate pending_seen;
    Gate release;
    manager.Subscribe([&](const JobEvent &event) {
        if (event.kind == JobEventKind::kStateChanged && event.job.state == JobState::kPending) {
            pending_seen.Open();
            release.WaitOpen();
        }
    });
    std::atomic<bool> ran{false};
    std::string id = manager.Submit("gc", "domain", [&ran](OpObserver &) {
        ran = true;
        return Status::Ok();
    });
    pending_seen.WaitOpen();
    auto pending = manager.Get(id);
    ASSERT_TRUE(pending.has_value());
    EXPECT_EQ(pending->state, JobState::kPending);
    ASSERT_TRUE(manager.Cancel(id).ok());
    release.Open();

    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kAborted);
    EXPECT_EQ(snapshot->error.code(), ErrorCode::kCancelled);
    EXPECT_NE(snapshot->error.message().find(id), std::string::npos);
    EXPECT_FALSE(ran.load());
}

TEST(JobManager, CancelOfUnknownJobIsNotFound)
{
    JobManager manager;
    Status status = manager.Cancel("job-42");
    EXPECT_EQ(status.code(), ErrorCode::kNotFound);
    EXPECT_NE(status.message().find("job-42"), std::string::npos);
    EXPECT_EQ(manager.Cancel("").code(), ErrorCode::kNotFound);
}

TEST(JobManager, CancelOfFinishedJobIsInvalid)
{
    JobManager manager;
    std::string id = manager.Submit("create", "v", [](OpObserver &) { return Status::Ok(); });
    ASSERT_TRUE(manager.Wait(id, kForever).has_value());
    Status status = manager.Cancel(id);
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(status.message().find(id), std::string::npos);
    EXPECT_NE(status.message().find("already finished"), std::string::npos);
    EXPECT_EQ(manager.Get(id)->state, JobState::kDone);
}

TEST(JobManager, UnknownIdsHaveNoSnapshot)
{
    JobManager manager;
    EXPECT_FALSE(manager.Get("job-1").has_value());
    EXPECT_FALSE(manager.Wait("job-1", milliseconds(0)).has_value());
    EXPECT_TRUE(manager.List().empty());
}

TEST(JobManager, WaitReturnsTheRunningSnapshotWhenTheTimeoutPasses)
{
    JobManager manager;
    Gate started;
    Gate finish;
    std::string id = manager.Submit("create", "v", [&](OpObserver &) {
        started.Open();
        finish.WaitOpen();
        return Status::Ok();
    });
    started.WaitOpen();
    auto snapshot = manager.Wait(id, milliseconds(10));
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kRunning);
    EXPECT_FALSE(snapshot->finished.has_value());
    /* Out-of-range timeouts are clamped, not overflowed. */
    snapshot = manager.Wait(id, milliseconds::min());
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kRunning);
    finish.Open();
    snapshot = manager.Wait(id, milliseconds::max());
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->state, JobState::kDone);
}

TEST(JobManager, EventsFollowPendingRunningDone)
{
    JobManager manager;
    EventLog log;
    manager.Subscribe(log.Listener());
    std::string id = manager.Submit("create", "v", [](OpObserver &observer) {
        observer.OnStep("write-marker");
        observer.OnStep("commit");
        return Status::Ok();
    });
    ASSERT_TRUE(manager.Wait(id, kForever).has_value());

    /* Wait returns once the final event is delivered. */
    auto events = log.For(id);
    EXPECT_EQ(StateChanges(events),
              (std::vector<JobState>{JobState::kPending, JobState::kRunning, JobState::kDone}));
    ASSERT_EQ(events.size(), 5u);
    EXPECT_EQ(events[2].kind, JobEventKind::kProgress);
    EXPECT_EQ(events[2].job.step, "write-marker");
    EXPECT_EQ(events[3].kind, JobEventKind::kProgress);
    EXPECT_EQ(events[3].job.step, "commit");
    EXPECT_EQ(events.back().job.state, JobState::kDone);
    EXPECT_TRUE(events.back().job.finished.has_value());
}

TEST(JobManager, FailedJobEventsEndInFailed)
{
    JobManager manager;
    EventLog log;
    manager.Subscribe(log.Listener());
    std::string id = manager.Submit("delete", "v", [](OpObserver &) {
        return Status::Error(ErrorCode::kBusy, "volume in use");
    });
    ASSERT_TRUE(manager.Wait(id, kForever).has_value());
    auto events = log.For(id);
    EXPECT_EQ(StateChanges(events),
              (std::vector<JobState>{JobState::kPending, JobState::kRunning, JobState::kFailed}));
    EXPECT_EQ(events.back().job.error.code(), ErrorCode::kBusy);
}

TEST(JobManager, ProgressEventsAreThrottled)
{
    JobManager manager;
    EventLog log;
    manager.Subscribe(log.Listener());
    constexpr uint64_t kTotal = 1000000;
    std::string id = manager.Submit("clone", "v", [](OpObserver &observer) {
        for (uint64_t done = 1; done <= kTotal; done++)
            observer.OnProgress(done, kTotal);
        return Status::Ok();
    });
    auto snapshot = manager.Wait(id, kForever);
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_EQ(snapshot->done, kTotal);

    std::vector<JobEvent> progress;
    for (const auto &event : log.For(id)) {
        if (event.kind == JobEventKind::kProgress)
            progress.push_back(event);
    }
    ASSERT_FALSE(progress.empty());
    /* 100 for the percents; the 200 ms rule adds a few more on a slow machine. */
    EXPECT_LE(progress.size(), 300u);
    EXPECT_GE(progress.size(), 100u);
    EXPECT_EQ(progress.back().job.done, kTotal);
    EXPECT_EQ(progress.back().job.total, kTotal);
    for (size_t i = 1; i < progress.size(); i++)
        EXPECT_LT(progress[i - 1].job.done, progress[i].job.done);
}

TEST(JobManager, FinalProgressIsReportedEvenWhenSmall)
{
    JobManager manager;
    EventLog log;
    manager.Subscribe(log.Listener());
    std::string id = manager.Submit("clone", "v", [](OpObserver &observer) {
        observer.OnProgress(0, 1000);
        observer.OnProgress(999, 1000);
        observer.OnProgress(1000, 1000);
        observer.OnProgress(1000, 1000);
        return Status::Ok();
    });
    ASSERT_TRUE(manager.Wait(id, kForever).has_value());
    std::vector<uint64_t> dones;
    for (const auto &event : log.For(id)) {
        if (event.kind == JobEventKind::kProgress)
            dones.push_back(event.job.done);
    }
    /* A repeated final report is not sent twice. */
    EXPECT_EQ(dones, (std::vector<uint64_t>{0, 999, 1000}));
}

TEST(JobManager, UnsubscribeStopsDelivery)
{
    JobManager manager;
    EventLog kept;
    EventLog dropped;
    manager.Subscribe(kept.Listener());
    uint64_t subscription = manager.Subscribe(dropped.Listener());
    std::string first = manager.Submit("create", "a", [](OpObserver &) { return Status::Ok(); });
    ASSERT_TRUE(manager.Wait(first, kForever).has_value());
    EXPECT_EQ(dropped.For(first).size(), 3u);

    manager.Unsubscribe(subscription);
    manager.Unsubscribe(subscription); /* a second time is harmless */
    size_t before = dropped.Size();
    std::string second = manager.Submit("create", "b", [](OpObserver &) { return Status::Ok(); });
    ASSERT_TRUE(manager.Wait(second, kForever).has_value());
    EXPECT_EQ(dropped.Size(), before);
    EXPECT_EQ(kept.For(second).size(), 3u);
}

TEST(JobManager, NoCallAfterUnsubscribeReturnsWhileEventsFlow)
{
    JobManager manager;
    std::atomic<uint64_t> calls{0};
    Gate flowing;
    /* Slow calls, so that one is almost always in flight when Unsubscribe runs. */
    uint64_t subscription = manager.Subscribe([&](const JobEvent &event) {
        std::this_thread::sleep_for(milliseconds(1));
        calls++;
        if (event.kind == JobEventKind::kProgress)
            flowing.Open();
    });
    /* Several jobs report steps without pause, each step an event. */
    std::vector<std::string> ids;
    for (int i = 0; i < 4; i++) {
        ids.push_back(manager.Submit("gc", "d", [](OpObserver &observer) {
            while (!observer.CancelRequested())
                observer.OnStep("sweep");
            return Status::Error(ErrorCode::kCancelled, "stopped");
        }));
    }
    flowing.WaitOpen();
    manager.Unsubscribe(subscription);
    uint64_t seen = calls.load();
    std::this_thread::sleep_for(milliseconds(20));
    for (const auto &id : ids)
        ASSERT_TRUE(manager.Cancel(id).ok());
    for (const auto &id : ids)
        EXPECT_EQ(manager.Wait(id, kForever)->state, JobState::kAborted);
    EXPECT_EQ(calls.load(), seen);
}

TEST(JobManager, FinishedJobsExpire)
{
    JobManager manager(milliseconds(50));
    std::string id = manager.Submit("create", "v", [](OpObserver &) { return Status::Ok(); });
    ASSERT_TRUE(manager.Wait(id, kForever).has_value());
    ASSERT_TRUE(manager.Get(id).has_value());
    std::this_thread::sleep_for(milliseconds(100));
    manager.ExpireFinished();
    EXPECT_FALSE(manager.Get(id).has_value());
    EXPECT_TRUE(manager.List().empty());
    EXPECT_EQ(manager.Cancel(id).code(), ErrorCode::kNotFound);
}

TEST(JobManager, ListExpiresToo)
{
    JobManager manager(milliseconds(50));
    std::string id = manager.Submit("create", "v", [](OpObserver &) { return Status::Ok(); });
    ASSERT_TRUE(manager.Wait(id, kForever).has_value());
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_TRUE(manager.List().empty());
    EXPECT_FALSE(manager.Get(id).has_value());
}

TEST(JobManager, RunningJobsNeverExpire)
{
    JobManager manager(milliseconds(0));
    Gate started;
    std::string id = manager.Submit("clone", "v", [&started](OpObserver &observer) {
        return UntilCancelled(observer, &started);
    });
    started.WaitOpen();
    std::this_thread::sleep_for(milliseconds(10));
    manager.ExpireFinished();
    ASSERT_TRUE(manager.Get(id).has_value());
    EXPECT_EQ(manager.List().size(), 1u);
    ASSERT_TRUE(manager.Cancel(id).ok());
    EXPECT_EQ(manager.Wait(id, kForever)->state, JobState::kAborted);
}

TEST(JobManager, UnexpiredJobsStay)
{
    JobManager manager;
    std::string id = manager.Submit("create", "v", [](OpObserver &) { return Status::Ok(); });
    ASSERT_TRUE(manager.Wait(id, kForever).has_value());
    manager.ExpireFinished();
    EXPECT_TRUE(manager.Get(id).has_value());
    EXPECT_EQ(manager.List().size(), 1u);
}

TEST(JobManager, ManyConcurrentJobsAllFinish)
{
    JobManager manager;
    constexpr int kJobs = 50;
    Gate go;
    std::vector<std::string> ids;
    for (int i = 0; i < kJobs; i++) {
        ids.push_back(manager.Submit("create", "vol-" + std::to_string(i),
                                     [&go, i](OpObserver &observer) {
                                         go.WaitOpen();
                                         for (int done = 0; done <= 100; done++)
                                             observer.OnProgress(done, 100);
                                         if (i % 10 == 9)
                                             return Status::Error(ErrorCode::kBusy, "busy");
                                         return Status::Ok();
                                     }));
    }
    /* All of them are in flight at once before any may finish. */
    EXPECT_EQ(manager.List().size(), static_cast<size_t>(kJobs));
    go.Open();
    for (const auto &id : ids)
        ASSERT_TRUE(manager.Wait(id, kForever).has_value());

    auto list = manager.List();
    ASSERT_EQ(list.size(), static_cast<size_t>(kJobs));
    std::set<std::string> unique;
    int failed = 0;
    for (int i = 0; i < kJobs; i++) {
        /* Listed in the order they were submitted. */
        EXPECT_EQ(list[i].id, ids[i]);
        EXPECT_EQ(list[i].object, "vol-" + std::to_string(i));
        EXPECT_EQ(list[i].done, 100u);
        EXPECT_TRUE(list[i].finished.has_value());
        failed += list[i].state == JobState::kFailed;
        EXPECT_NE(list[i].state, JobState::kAborted);
        unique.insert(list[i].id);
    }
    EXPECT_EQ(unique.size(), static_cast<size_t>(kJobs));
    EXPECT_EQ(failed, kJobs / 10);
}

TEST(JobManager, DestructorCancelsAndJoinsRunningJobs)
{
    std::atomic<bool> saw_cancel{false};
    Gate started;
    {
        JobManager manager;
        manager.Submit("clone", "v", [&](OpObserver &observer) {
            Status status = UntilCancelled(observer, &started);
            saw_cancel = true;
            return status;
        });
        started.WaitOpen();
    }
    /* Joined, not detached: the work has returned by the time the destructor does. */
    EXPECT_TRUE(saw_cancel.load());
}

TEST(JobManager, DestructorJoinsJobsSubmittedByJobs)
{
    std::atomic<int> finished{0};
    Gate child_started;
    Gate started;
    {
        JobManager manager;
        manager.Submit("gc", "d", [&](OpObserver &observer) {
            manager.Submit("delete", "child", [&](OpObserver &child) {
                Status status = UntilCancelled(child, &child_started);
                finished++;
                return status;
            });
            child_started.WaitOpen();
            Status status = UntilCancelled(observer, &started);
            finished++;
            return status;
        });
        started.WaitOpen();
    }
    EXPECT_EQ(finished.load(), 2);
}

}  // namespace
}  // namespace sdm
