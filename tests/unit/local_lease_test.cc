/* Tests of the OFD-lock leases: conflicts between handles of one process and between
 * processes, release by destroying the handle or by the holder's death, timeouts, the
 * slot layout, the two areas, and an area that is missing or not a file. */
#include "backend/engine/local_lease.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "backend/engine/layout.h"
#include "tests/support/test_support.h"

namespace sdm {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr uint64_t kAlignment = 1 << 20;

class LocalLeaseTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        testing::WriteFile(path_, "");
        testing::WriteFile(owners_, "");
    }

    Status TryAcquire(uint64_t slot, LeaseMode mode, std::chrono::milliseconds timeout = 0ms,
                      LeaseArea area = LeaseArea::kLeases)
    {
        Result<std::unique_ptr<LeaseHandle>> lease = leases_.Acquire(area, slot, mode, timeout);
        return lease.ok() ? Status::Ok() : lease.status();
    }

    std::unique_ptr<LeaseHandle> MustAcquire(uint64_t slot, LeaseMode mode,
                                             LeaseArea area = LeaseArea::kLeases)
    {
        Result<std::unique_ptr<LeaseHandle>> lease = leases_.Acquire(area, slot, mode, 0ms);
        EXPECT_TRUE(lease.ok()) << lease.status().ToString();
        return lease.ok() ? std::move(*lease) : nullptr;
    }

    testing::TempDir dir_;
    std::string path_ = dir_.Sub("leases");
    std::string owners_ = dir_.Sub("owners");
    LocalLeaseManager leases_{dir_.path(), kAlignment};
};

/* A child process that holds a lock on one byte of `path` until it is killed. */
class Holder {
public:
    /* `take` runs in the child and returns whether it got the lock. */
    template <typename Take>
    explicit Holder(Take take)
    {
        int fds[2];
        if (pipe(fds) != 0)
            return;
        pid_ = fork();
        if (pid_ == 0) {
            close(fds[0]);
            char ok = take() ? '1' : '0';
            if (write(fds[1], &ok, 1) != 1)
                _exit(1);
            for (;;)
                pause();
        }
        close(fds[1]);
        char ok = '0';
        holding_ = pid_ > 0 && read(fds[0], &ok, 1) == 1 && ok == '1';
        close(fds[0]);
    }
    ~Holder() { Kill(); }

    bool holding() const { return holding_; }
    pid_t pid() const { return pid_; }

    /* SIGKILL, as a crash or the fencing of a host would: no cleanup runs. */
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
    bool holding_ = false;
};

TEST_F(LocalLeaseTest, ExclusiveConflictsWithinOneProcess)
{
    auto held = MustAcquire(1, LeaseMode::kExclusive);
    Status second = TryAcquire(1, LeaseMode::kExclusive);
    EXPECT_EQ(second.code(), ErrorCode::kBusy);
    EXPECT_THAT(second.message(), HasSubstr("lease slot 1 of " + path_));
    EXPECT_THAT(second.message(), HasSubstr("another process or thread"));
    EXPECT_THAT(second.message(), HasSubstr("try again"));

    /* A second manager on the same file is no different. */
    LocalLeaseManager other(dir_.path(), kAlignment);
    Result<std::unique_ptr<LeaseHandle>> lease =
        other.Acquire(LeaseArea::kLeases, 1, LeaseMode::kExclusive, 0ms);
    EXPECT_EQ(lease.status().code(), ErrorCode::kBusy);
}

TEST_F(LocalLeaseTest, SharedAdmitsSharedButNotExclusive)
{
    auto first = MustAcquire(2, LeaseMode::kShared);
    auto second = MustAcquire(2, LeaseMode::kShared);
    EXPECT_EQ(TryAcquire(2, LeaseMode::kExclusive).code(), ErrorCode::kBusy);
    first.reset();
    EXPECT_EQ(TryAcquire(2, LeaseMode::kExclusive).code(), ErrorCode::kBusy);
    second.reset();
    EXPECT_TRUE(TryAcquire(2, LeaseMode::kExclusive).ok());
}

TEST_F(LocalLeaseTest, ExclusiveExcludesShared)
{
    auto held = MustAcquire(2, LeaseMode::kExclusive);
    EXPECT_EQ(TryAcquire(2, LeaseMode::kShared).code(), ErrorCode::kBusy);
}

TEST_F(LocalLeaseTest, DestroyingTheHandleReleases)
{
    auto held = MustAcquire(0, LeaseMode::kExclusive);
    ASSERT_EQ(TryAcquire(0, LeaseMode::kExclusive).code(), ErrorCode::kBusy);
    held.reset();
    EXPECT_TRUE(TryAcquire(0, LeaseMode::kExclusive).ok());
}

TEST_F(LocalLeaseTest, SlotsAreIndependent)
{
    auto domain = MustAcquire(layout::kDomainLeaseSlot, LeaseMode::kExclusive);
    auto first = MustAcquire(layout::kFirstVolumeSlot, LeaseMode::kExclusive);
    auto second = MustAcquire(layout::kFirstVolumeSlot + 1, LeaseMode::kExclusive);
    auto last = MustAcquire(layout::kMaxSlot, LeaseMode::kExclusive);
    EXPECT_NE(domain, nullptr);
    EXPECT_NE(first, nullptr);
    EXPECT_NE(second, nullptr);
    EXPECT_NE(last, nullptr);
}

TEST_F(LocalLeaseTest, WaiterGetsTheLeaseWhenReleased)
{
    auto held = MustAcquire(1, LeaseMode::kExclusive);
    auto waiter = std::async(std::launch::async, [this] {
        return TryAcquire(1, LeaseMode::kExclusive, 60s);
    });
    /* Not a timing assertion: the waiter succeeds whether it polled once or many times. */
    std::this_thread::sleep_for(30ms);
    held.reset();
    Status status = waiter.get();
    EXPECT_TRUE(status.ok()) << status.ToString();
}

TEST_F(LocalLeaseTest, TimeoutEndsTheWait)
{
    auto held = MustAcquire(1, LeaseMode::kExclusive);
    Status status = TryAcquire(1, LeaseMode::kShared, 50ms);
    EXPECT_EQ(status.code(), ErrorCode::kBusy);
    EXPECT_THAT(status.message(), HasSubstr("waited 50 ms"));
}

TEST_F(LocalLeaseTest, DeadHolderLosesTheLease)
{
    /* How the garbage collector tells an abandoned transaction from a running one. */
    Holder holder([this] {
        LocalLeaseManager child(dir_.path(), kAlignment);
        auto lease = child.Acquire(LeaseArea::kLeases, 3, LeaseMode::kExclusive, 0ms);
        bool ok = lease.ok();
        if (ok)
            (void)lease->release(); /* keep holding: the process dies with it */
        return ok;
    });
    ASSERT_TRUE(holder.holding());
    EXPECT_EQ(TryAcquire(3, LeaseMode::kExclusive).code(), ErrorCode::kBusy);
    EXPECT_EQ(TryAcquire(3, LeaseMode::kShared).code(), ErrorCode::kBusy);
    EXPECT_TRUE(TryAcquire(4, LeaseMode::kExclusive).ok());
    holder.Kill();
    EXPECT_TRUE(TryAcquire(3, LeaseMode::kExclusive).ok());
}

TEST_F(LocalLeaseTest, SlotIsTheByteAtSlotTimesAlignmentAndAKnownHolderIsNamed)
{
    /* A classic POSIX lock on byte 2 * alignment, held by another process: F_OFD_GETLK
     * reports its pid, and only slot 2 is taken. */
    Holder holder([this] {
        int fd = open(path_.c_str(), O_RDWR);
        struct flock range = {};
        range.l_type = F_WRLCK;
        range.l_whence = SEEK_SET;
        range.l_start = 2 * kAlignment;
        range.l_len = 1;
        return fd >= 0 && fcntl(fd, F_SETLK, &range) == 0;
    });
    ASSERT_TRUE(holder.holding());
    Status status = TryAcquire(2, LeaseMode::kShared);
    EXPECT_EQ(status.code(), ErrorCode::kBusy);
    EXPECT_THAT(status.message(), HasSubstr("held by process " + std::to_string(holder.pid())));
    EXPECT_TRUE(TryAcquire(1, LeaseMode::kExclusive).ok());
    EXPECT_TRUE(TryAcquire(3, LeaseMode::kExclusive).ok());
}

TEST_F(LocalLeaseTest, MissingLeaseAreaIsNotFoundAndNotCreated)
{
    ASSERT_EQ(unlink(path_.c_str()), 0);
    for (Status status : {TryAcquire(1, LeaseMode::kExclusive), leases_.InitChunk(0)}) {
        EXPECT_EQ(status.code(), ErrorCode::kNotFound);
        EXPECT_THAT(status.message(), HasSubstr("lease area " + path_ + " is missing"));
        EXPECT_THAT(status.message(), HasSubstr("not formatted or is damaged"));
        EXPECT_THAT(status.message(), HasSubstr("sdm-local check"));
    }
    EXPECT_FALSE(testing::Exists(path_));
}

TEST_F(LocalLeaseTest, LeaseAreaThatIsNotAFileIsCorrupt)
{
    ASSERT_EQ(unlink(path_.c_str()), 0);
    ASSERT_EQ(mkdir(path_.c_str(), 0755), 0);
    Status dir = TryAcquire(1, LeaseMode::kExclusive);
    EXPECT_EQ(dir.code(), ErrorCode::kCorrupt);
    EXPECT_THAT(dir.message(), HasSubstr("not a regular file"));
    ASSERT_EQ(rmdir(path_.c_str()), 0);

    testing::WriteFile(dir_.Sub("elsewhere"), "");
    ASSERT_EQ(symlink(dir_.Sub("elsewhere").c_str(), path_.c_str()), 0);
    Status link = TryAcquire(1, LeaseMode::kExclusive);
    EXPECT_EQ(link.code(), ErrorCode::kCorrupt);
    EXPECT_THAT(link.message(), HasSubstr("symlink"));
}

TEST_F(LocalLeaseTest, InitWritesNothingAndSlotsAreChecked)
{
    EXPECT_TRUE(leases_.InitChunk(0).ok());
    EXPECT_TRUE(leases_.InitChunk(layout::kMaxChunk).ok());
    EXPECT_TRUE(leases_.InitOwner(layout::kMaxOwner).ok());
    EXPECT_EQ(TryAcquire(layout::kMaxSlot + 1, LeaseMode::kShared).code(),
              ErrorCode::kInvalidArgument);
    /* Nothing was written: local leases need no bytes on disk. */
    EXPECT_EQ(testing::ReadFile(path_), "");
    EXPECT_EQ(testing::ReadFile(owners_), "");
    ASSERT_EQ(unlink(owners_.c_str()), 0);
    EXPECT_EQ(leases_.InitOwner(1).code(), ErrorCode::kNotFound);
}

TEST_F(LocalLeaseTest, TheTwoAreasAreIndependentAndEveryOwnerSlotIsOffered)
{
    auto owner = MustAcquire(1, LeaseMode::kExclusive, LeaseArea::kOwners);
    EXPECT_TRUE(TryAcquire(1, LeaseMode::kExclusive).ok()) << "volume slot 1 is another lease";
    EXPECT_EQ(TryAcquire(1, LeaseMode::kShared, 0ms, LeaseArea::kOwners).code(),
              ErrorCode::kBusy);
    EXPECT_EQ(leases_.FirstOwner(), layout::kFirstOwner);
    EXPECT_EQ(leases_.LastOwner(), layout::kMaxOwner);
}

TEST_F(LocalLeaseTest, AlignmentThatCannotPlaceTheSlotIsRefused)
{
    LocalLeaseManager zero(dir_.path(), 0);
    EXPECT_EQ(zero.Acquire(LeaseArea::kLeases, 1, LeaseMode::kShared, 0ms).status().code(),
              ErrorCode::kInvalidArgument);
    LocalLeaseManager huge(dir_.path(), UINT64_MAX / 2);
    Result<std::unique_ptr<LeaseHandle>> lease =
        huge.Acquire(LeaseArea::kLeases, 3, LeaseMode::kShared, 0ms);
    EXPECT_EQ(lease.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_THAT(lease.status().message(), HasSubstr("alignment"));
}

TEST_F(LocalLeaseTest, NameIsLocal) { EXPECT_EQ(leases_.Name(), "local"); }

}  // namespace
}  // namespace sdm
