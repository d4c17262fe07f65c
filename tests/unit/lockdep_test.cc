/* Tests of the lock-order checker: the talk's clone order passes, each rule's violation
 * is reported with its rule named, threads are checked independently, and the default
 * handler aborts. Single-threaded except where a test starts threads itself. */
#include "backend/engine/lockdep.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace sdm::lockdep {
namespace {

using ::testing::HasSubstr;

Key MakeKey(Level level, Kind kind, Role role, const std::string &id)
{
    return Key{level, kind, role, id};
}

void Take(const Key &key)
{
    WillAcquire(key);
    Acquired(key);
}

class LockdepTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        previous_ = SetViolationHandler(
            [this](const std::string &message) { violations_.push_back(message); });
    }
    void TearDown() override
    {
        SetViolationHandler(previous_);
        EXPECT_EQ(HeldByThisThread(), "") << "a test left keys held";
    }

    std::vector<std::string> violations_;
    ViolationHandler previous_;
};

TEST_F(LockdepTest, IsOnByDefault)
{
    ASSERT_EQ(getenv("SDM_LOCKDEP"), nullptr) << "run the tests without SDM_LOCKDEP";
    EXPECT_TRUE(Enabled());
}

TEST_F(LockdepTest, KeysReadWell)
{
    EXPECT_EQ(MakeKey(Level::kVolume, Kind::kLease, Role::kSource, "3").ToString(),
              "volume lease (source) 3");
    EXPECT_EQ(MakeKey(Level::kImage, Kind::kLock, Role::kDestination, "b").ToString(),
              "image lock (destination) b");
    EXPECT_EQ((Key{Level::kDomain, Kind::kLock}).ToString(), "domain lock");
    EXPECT_EQ((Key{Level::kAllocator, Kind::kLock, Role::kNone, "x"}).ToString(),
              "allocator lock x");
}

TEST_F(LockdepTest, CompareIsLevelThenKindThenRoleThenId)
{
    /* Each key is smaller than the next even where a later field says otherwise. */
    std::vector<Key> ordered = {
        MakeKey(Level::kDomain, Kind::kLock, Role::kDestination, "z"),
        MakeKey(Level::kImage, Kind::kLease, Role::kDestination, "z"),
        MakeKey(Level::kImage, Kind::kLock, Role::kNone, "z"),
        MakeKey(Level::kImage, Kind::kLock, Role::kSource, "z"),
        MakeKey(Level::kImage, Kind::kLock, Role::kDestination, "a"),
        MakeKey(Level::kImage, Kind::kLock, Role::kDestination, "b"),
        MakeKey(Level::kVolume, Kind::kLease, Role::kNone, "a"),
        MakeKey(Level::kAllocator, Kind::kLease, Role::kNone, ""),
    };
    for (size_t i = 0; i < ordered.size(); i++) {
        EXPECT_EQ(Compare(ordered[i], ordered[i]), 0) << ordered[i].ToString();
        for (size_t j = i + 1; j < ordered.size(); j++) {
            EXPECT_EQ(Compare(ordered[i], ordered[j]), -1)
                << ordered[i].ToString() << " vs " << ordered[j].ToString();
            EXPECT_EQ(Compare(ordered[j], ordered[i]), 1)
                << ordered[j].ToString() << " vs " << ordered[i].ToString();
        }
    }
}

TEST_F(LockdepTest, CloneOrderFromTheTalkPasses)
{
    /* Source ids sort after destination ids on purpose: role decides before id. */
    std::vector<Key> clone = {
        MakeKey(Level::kDomain, Kind::kLease, Role::kNone, "dom"),
        MakeKey(Level::kDomain, Kind::kLock, Role::kNone, "dom"),
        MakeKey(Level::kImage, Kind::kLock, Role::kSource, "src-image"),
        MakeKey(Level::kImage, Kind::kLock, Role::kDestination, "dst-image"),
        MakeKey(Level::kVolume, Kind::kLease, Role::kSource, "7"),
        MakeKey(Level::kVolume, Kind::kLease, Role::kDestination, "3"),
        MakeKey(Level::kAllocator, Kind::kLock, Role::kNone, "dom"),
    };
    for (const Key &key : clone)
        Take(key);
    EXPECT_EQ(HeldByThisThread(),
              "domain lease dom, domain lock dom, image lock (source) src-image, "
              "image lock (destination) dst-image, volume lease (source) 7, "
              "volume lease (destination) 3, allocator lock dom");
    for (auto it = clone.rbegin(); it != clone.rend(); ++it)
        Released(*it);
    EXPECT_TRUE(violations_.empty()) << violations_.front();
}

struct Violation {
    const char *name;
    Key held;
    Key wanted;
    const char *rule;
};

class LockdepRuleTest : public LockdepTest,
                        public ::testing::WithParamInterface<Violation> {};

TEST_P(LockdepRuleTest, ViolationNamesBothKeysTheRuleAndTheHeldList)
{
    const Violation &v = GetParam();
    Key domain = MakeKey(Level::kDomain, Kind::kLease, Role::kNone, "dom");
    Take(domain);
    Take(v.held);
    WillAcquire(v.wanted);
    ASSERT_EQ(violations_.size(), 1u);
    const std::string &message = violations_[0];
    EXPECT_THAT(message, HasSubstr("acquiring " + v.wanted.ToString()));
    EXPECT_THAT(message, HasSubstr("while holding " + v.held.ToString()));
    EXPECT_THAT(message, HasSubstr(v.rule));
    EXPECT_THAT(message, HasSubstr(domain.ToString() + ", " + v.held.ToString()));
    Released(v.held);
    Released(domain);
    EXPECT_EQ(violations_.size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Rules, LockdepRuleTest,
    ::testing::Values(
        Violation{"ImageBeforeDomain", MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i"),
                  MakeKey(Level::kDomain, Kind::kLock, Role::kNone, "dom"),
                  "big containers before small: domain -> owner -> image -> volume"},
        Violation{"VolumeBeforeImage",
                  MakeKey(Level::kVolume, Kind::kLease, Role::kNone, "1"),
                  MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i"),
                  "big containers before small"},
        Violation{"LockBeforeLease", MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i"),
                  MakeKey(Level::kImage, Kind::kLease, Role::kNone, "i"),
                  "storage leases before local locks at the same level"},
        Violation{"DestinationBeforeSource",
                  MakeKey(Level::kImage, Kind::kLock, Role::kDestination, "a"),
                  MakeKey(Level::kImage, Kind::kLock, Role::kSource, "b"),
                  "source before destination"},
        Violation{"IdsOutOfOrder", MakeKey(Level::kImage, Kind::kLock, Role::kNone, "b"),
                  MakeKey(Level::kImage, Kind::kLock, Role::kNone, "a"), "in id order"},
        Violation{"SameKeyTwice", MakeKey(Level::kVolume, Kind::kLease, Role::kSource, "4"),
                  MakeKey(Level::kVolume, Kind::kLease, Role::kSource, "4"),
                  "same lock taken twice"}),
    [](const ::testing::TestParamInfo<Violation> &info) { return info.param.name; });

TEST_F(LockdepTest, OutOfOrderReleaseIsReportedOnce)
{
    Key image = MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i");
    Key volume = MakeKey(Level::kVolume, Kind::kLease, Role::kNone, "1");
    Take(image);
    Take(volume);
    Released(image);
    ASSERT_EQ(violations_.size(), 1u);
    EXPECT_THAT(violations_[0], HasSubstr("release the newest lock first"));
    EXPECT_THAT(violations_[0], HasSubstr("releasing image lock i while volume lease 1"));
    /* The released key is forgotten: the rest unwinds without a second report. */
    EXPECT_EQ(HeldByThisThread(), "volume lease 1");
    Released(volume);
    EXPECT_EQ(violations_.size(), 1u);
}

TEST_F(LockdepTest, ReleasingAKeyNotHeldIsReported)
{
    Key image = MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i");
    Take(image);
    Released(MakeKey(Level::kImage, Kind::kLock, Role::kNone, "other"));
    ASSERT_EQ(violations_.size(), 1u);
    EXPECT_THAT(violations_[0], HasSubstr("which this thread does not hold"));
    EXPECT_THAT(violations_[0], HasSubstr("image lock i"));
    Released(image);
    EXPECT_EQ(violations_.size(), 1u);
}

TEST_F(LockdepTest, ThreadsAreCheckedIndependently)
{
    /* Another thread holds an image lock while this one takes a domain lock: fine,
     * lock order is a per-thread property. */
    Key image = MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i");
    Key domain = MakeKey(Level::kDomain, Kind::kLock, Role::kNone, "dom");
    std::promise<void> holding;
    std::promise<void> done;
    std::string other_held;
    std::thread other([&] {
        Take(image);
        other_held = HeldByThisThread();
        holding.set_value();
        done.get_future().wait();
        Released(image);
    });
    holding.get_future().wait();
    EXPECT_EQ(HeldByThisThread(), "");
    Take(domain);
    EXPECT_EQ(HeldByThisThread(), "domain lock dom");
    done.set_value();
    other.join();
    Released(domain);
    EXPECT_EQ(other_held, "image lock i");
    EXPECT_TRUE(violations_.empty()) << violations_.front();
}

TEST_F(LockdepTest, SharedLeaseIsRecordedPerThread)
{
    /* The process-wide domain lease: each thread records its own use of it. */
    Key lease = MakeKey(Level::kDomain, Kind::kLease, Role::kNone, "dom");
    Take(lease);
    std::thread other([&] {
        Take(lease);
        Take(MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i"));
        Released(MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i"));
        Released(lease);
    });
    other.join();
    Released(lease);
    EXPECT_TRUE(violations_.empty()) << violations_.front();
}

TEST(LockdepDeathTest, DefaultHandlerAbortsWithTheMessage)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    Key image = MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i");
    EXPECT_DEATH(
        {
            SetViolationHandler(nullptr);
            Take(image);
            WillAcquire(image);
        },
        "same lock taken twice");
}

TEST(LockdepDeathTest, DisabledByEnvironment)
{
    /* The re-executed child reads SDM_LOCKDEP on its first check; this process never
     * checks in this test, so its cached answer is untouched. */
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    ASSERT_EQ(setenv("SDM_LOCKDEP", "0", 1), 0);
    Key image = MakeKey(Level::kImage, Kind::kLock, Role::kNone, "i");
    EXPECT_EXIT(
        {
            SetViolationHandler(nullptr);
            Take(image);
            WillAcquire(image);
            Released(MakeKey(Level::kVolume, Kind::kLock, Role::kNone, "v"));
            fprintf(stderr, "enabled=%d held=[%s]\n", Enabled(), HeldByThisThread().c_str());
            _exit(0);
        },
        ::testing::ExitedWithCode(0), "enabled=0 held=\\[\\]");
    ASSERT_EQ(unsetenv("SDM_LOCKDEP"), 0);
}

}  // namespace
}  // namespace sdm::lockdep
