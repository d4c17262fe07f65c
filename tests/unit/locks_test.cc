/* Tests of the process RW locks: exclusion between threads, waking of waiters, writer
 * preference, guard moves, that idle locks leave no trace, and that every acquire goes
 * through lockdep. Conflicting acquires run on other threads, because one thread taking
 * one key twice is itself a lock-order violation. */
#include "backend/engine/locks.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <future>
#include <new>
#include <string>
#include <thread>
#include <vector>

/* Counts live operator-new blocks, so a test can see that the table forgets idle locks
 * without the table exposing its size. */
static std::atomic<long> live_blocks{0};

void *operator new(size_t size)
{
    void *block = malloc(size == 0 ? 1 : size);
    if (block == nullptr)
        throw std::bad_alloc();
    live_blocks++;
    return block;
}

void operator delete(void *block) noexcept
{
    if (block == nullptr)
        return;
    live_blocks--;
    free(block);
}

void operator delete(void *block, size_t) noexcept { operator delete(block); }

namespace sdm {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kLong = 60s; /* a wait that must end by a release, never by the timeout */

lockdep::Key ImageLock(const std::string &id, lockdep::Role role = lockdep::Role::kNone)
{
    return lockdep::Key{lockdep::Level::kImage, lockdep::Kind::kLock, role, id};
}

lockdep::Key DomainLock(const std::string &id)
{
    return lockdep::Key{lockdep::Level::kDomain, lockdep::Kind::kLock, lockdep::Role::kNone,
                        id};
}

class LocksTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        previous_ = lockdep::SetViolationHandler([this](const std::string &message) {
            std::lock_guard<std::mutex> lock(mutex_);
            violations_.push_back(message);
        });
    }
    void TearDown() override
    {
        lockdep::SetViolationHandler(previous_);
        if (!expect_violations_) {
            EXPECT_TRUE(violations_.empty()) << violations_.front();
        }
    }

    /* Lock() on a thread of its own, returning the status and releasing at once. */
    Status LockOnOtherThread(const lockdep::Key &key, LockMode mode,
                             std::chrono::milliseconds timeout)
    {
        return std::async(std::launch::async, [&] {
                   Result<LockGuard> guard = table_.Lock(key, mode, timeout);
                   return guard.ok() ? Status::Ok() : guard.status();
               })
            .get();
    }

    LockTable table_;
    std::mutex mutex_;
    std::vector<std::string> violations_;
    bool expect_violations_ = false;
    lockdep::ViolationHandler previous_;
};

TEST_F(LocksTest, ExclusiveExcludesExclusiveAndShared)
{
    Result<LockGuard> held = table_.Lock(ImageLock("a"), LockMode::kExclusive, 0ms);
    ASSERT_TRUE(held.ok()) << held.status().ToString();

    Status exclusive = LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 20ms);
    EXPECT_EQ(exclusive.code(), ErrorCode::kBusy);
    EXPECT_THAT(exclusive.message(), HasSubstr("image lock a"));
    EXPECT_THAT(exclusive.message(), HasSubstr("another operation on this host"));
    EXPECT_THAT(exclusive.message(), HasSubstr("try again when that operation finishes"));
    EXPECT_EQ(exclusive.context().image, "a");

    Status shared = LockOnOtherThread(ImageLock("a"), LockMode::kShared, 20ms);
    EXPECT_EQ(shared.code(), ErrorCode::kBusy);
    EXPECT_THAT(shared.message(), HasSubstr("for reading"));
}

TEST_F(LocksTest, SharedAdmitsSharedButNotExclusive)
{
    Result<LockGuard> held = table_.Lock(ImageLock("a"), LockMode::kShared, 0ms);
    ASSERT_TRUE(held.ok()) << held.status().ToString();
    EXPECT_TRUE(LockOnOtherThread(ImageLock("a"), LockMode::kShared, 0ms).ok());
    EXPECT_EQ(LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 0ms).code(),
              ErrorCode::kBusy);
}

TEST_F(LocksTest, DistinctNamesAreIndependent)
{
    Result<LockGuard> held = table_.Lock(ImageLock("a"), LockMode::kExclusive, 0ms);
    ASSERT_TRUE(held.ok());
    EXPECT_TRUE(LockOnOtherThread(ImageLock("b"), LockMode::kExclusive, 0ms).ok());
    /* A domain and an image may share an id; they are still different locks. */
    EXPECT_TRUE(LockOnOtherThread(DomainLock("a"), LockMode::kExclusive, 0ms).ok());
}

TEST_F(LocksTest, RoleDoesNotNameADifferentLock)
{
    /* A clone's source image is the same image another clone writes as destination. */
    Result<LockGuard> held =
        table_.Lock(ImageLock("a", lockdep::Role::kSource), LockMode::kShared, 0ms);
    ASSERT_TRUE(held.ok());
    EXPECT_EQ(LockOnOtherThread(ImageLock("a", lockdep::Role::kDestination),
                                LockMode::kExclusive, 0ms)
                  .code(),
              ErrorCode::kBusy);
}

TEST_F(LocksTest, ReleaseWakesAWaitingWriterAndWritersGoFirst)
{
    Result<LockGuard> reader = table_.Lock(ImageLock("a"), LockMode::kShared, 0ms);
    ASSERT_TRUE(reader.ok());

    auto writer = std::async(std::launch::async, [&] {
        Result<LockGuard> guard = table_.Lock(ImageLock("a"), LockMode::kExclusive, kLong);
        return guard.ok() ? Status::Ok() : guard.status();
    });
    /* New readers get in until the writer waits; from then on they are held back
     * (writer preference), which is how this test knows the writer is waiting. */
    for (int tries = 0; LockOnOtherThread(ImageLock("a"), LockMode::kShared, 0ms).ok();
         tries++) {
        ASSERT_LT(tries, 5000) << "readers still get in past a waiting writer";
        std::this_thread::sleep_for(1ms);
    }

    reader->Release();
    Status woken = writer.get();
    EXPECT_TRUE(woken.ok()) << woken.ToString();
    EXPECT_TRUE(LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 0ms).ok());
}

TEST_F(LocksTest, WriterThatGivesUpLetsReadersIn)
{
    Result<LockGuard> reader = table_.Lock(ImageLock("a"), LockMode::kShared, 0ms);
    ASSERT_TRUE(reader.ok());
    EXPECT_EQ(LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 10ms).code(),
              ErrorCode::kBusy);
    EXPECT_TRUE(LockOnOtherThread(ImageLock("a"), LockMode::kShared, 0ms).ok());
}

TEST_F(LocksTest, TimedOutWaiterLeavesTheLockUsable)
{
    Result<LockGuard> held = table_.Lock(ImageLock("a"), LockMode::kExclusive, 0ms);
    ASSERT_TRUE(held.ok());
    EXPECT_EQ(LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 10ms).code(),
              ErrorCode::kBusy);
    held->Release();
    EXPECT_FALSE(held->held());
    EXPECT_TRUE(LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 0ms).ok());
}

TEST_F(LocksTest, GuardMoves)
{
    Result<LockGuard> first = table_.Lock(ImageLock("a"), LockMode::kExclusive, 0ms);
    ASSERT_TRUE(first.ok());
    LockGuard moved(std::move(*first));
    EXPECT_FALSE(first->held());
    EXPECT_TRUE(moved.held());
    EXPECT_EQ(LockOnOtherThread(ImageLock("a"), LockMode::kShared, 0ms).code(),
              ErrorCode::kBusy);

    /* Assigning over a held guard releases what it held. */
    Result<LockGuard> third = table_.Lock(ImageLock("b"), LockMode::kExclusive, 0ms);
    ASSERT_TRUE(third.ok());
    LockGuard target;
    EXPECT_FALSE(target.held());
    target = std::move(*third);
    EXPECT_TRUE(target.held());
    target = std::move(moved);
    EXPECT_TRUE(target.held());
    EXPECT_TRUE(LockOnOtherThread(ImageLock("b"), LockMode::kExclusive, 0ms).ok());
    EXPECT_EQ(LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 0ms).code(),
              ErrorCode::kBusy);

    target.Release();
    target.Release(); /* a second release is a no-op, not a lockdep complaint */
    EXPECT_TRUE(LockOnOtherThread(ImageLock("a"), LockMode::kExclusive, 0ms).ok());
    EXPECT_EQ(lockdep::HeldByThisThread(), "");
}

TEST_F(LocksTest, IdleLocksLeaveNoEntries)
{
    auto cycle = [this](int count) {
        for (int i = 0; i < count; i++) {
            std::string id = "image-with-a-name-too-long-for-small-string-" +
                             std::to_string(i);
            Result<LockGuard> guard = table_.Lock(ImageLock(id), LockMode::kShared, 0ms);
            ASSERT_TRUE(guard.ok());
        }
    };
    cycle(1); /* lets lazily allocated state (lockdep's per-thread list) settle */
    long before = live_blocks.load();
    cycle(1000);
    EXPECT_LT(live_blocks.load() - before, 10) << "the table keeps entries of idle locks";
}

TEST_F(LocksTest, LeaseKeyIsRefused)
{
    lockdep::Key lease{lockdep::Level::kImage, lockdep::Kind::kLease, lockdep::Role::kNone,
                       "a"};
    Result<LockGuard> guard = table_.Lock(lease, LockMode::kShared, 0ms);
    ASSERT_FALSE(guard.ok());
    EXPECT_EQ(guard.status().code(), ErrorCode::kInternal);
    EXPECT_THAT(guard.status().message(), HasSubstr("LeaseManager"));
    EXPECT_EQ(lockdep::HeldByThisThread(), "");
}

TEST_F(LocksTest, LocksAreRecordedWithLockdep)
{
    expect_violations_ = true;
    {
        Result<LockGuard> image = table_.Lock(ImageLock("a"), LockMode::kShared, 0ms);
        ASSERT_TRUE(image.ok());
        EXPECT_EQ(lockdep::HeldByThisThread(), "image lock a");
        Result<LockGuard> domain = table_.Lock(DomainLock("d"), LockMode::kShared, 0ms);
        ASSERT_TRUE(domain.ok());
        ASSERT_EQ(violations_.size(), 1u);
        EXPECT_THAT(violations_[0], HasSubstr("big containers before small"));
        EXPECT_THAT(violations_[0], HasSubstr("acquiring domain lock d"));
    }
    /* The guards went out of scope newest first: no release complaint. */
    EXPECT_EQ(violations_.size(), 1u);
    EXPECT_EQ(lockdep::HeldByThisThread(), "");
}

TEST_F(LocksTest, BusyLockIsNotRecordedAsHeld)
{
    Result<LockGuard> held = table_.Lock(ImageLock("a"), LockMode::kExclusive, 0ms);
    ASSERT_TRUE(held.ok());
    std::string held_by_other = std::async(std::launch::async, [&] {
                                    Result<LockGuard> busy =
                                        table_.Lock(ImageLock("a"), LockMode::kShared, 0ms);
                                    EXPECT_FALSE(busy.ok());
                                    return lockdep::HeldByThisThread();
                                }).get();
    EXPECT_EQ(held_by_other, "");
}

}  // namespace
}  // namespace sdm
