/* faultfs itself (tests/support/faultfs): the mount mirrors its source both ways, every
 * rule type fires on the operations and paths it names and on no others, clearing a rule
 * gives service back (hung operations included), bad commands are refused, and sanlock
 * formats, joins and takes a lease through it with O_DIRECT and aio. Needs root (FUSE
 * mounts, sanlock daemons); skipped otherwise. Single-threaded, but for the one thread
 * that a hang test blocks on purpose. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "backend/sanlock/sanlock_lease.h"
#include "tests/support/faultfs_harness.h"
#include "tests/support/sanlock_harness.h"

namespace sdm::testing {
namespace {

constexpr size_t kBlock = 4096;

class FaultFsTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "FUSE mounts need root";
        source_ = tmp_.Sub("source");
        view_ = tmp_.Sub("view");
        ASSERT_EQ(mkdir(source_.c_str(), 0755), 0);
        ASSERT_EQ(mkdir(view_.c_str(), 0755), 0);
        WriteFile(source_ + "/a", "hello from a\n");
        WriteFile(source_ + "/b", "hello from b\n");
        try {
            fs_ = std::make_unique<FaultFs>(source_, view_);
        } catch (const std::exception &e) {
            FAIL() << e.what();
        }
    }

    std::string View(const std::string &name) const { return view_ + "/" + name; }
    std::string Source(const std::string &name) const { return source_ + "/" + name; }

    /* read(2) of a whole small file through the mount: its bytes, or -errno. */
    static std::string ReadOrErrno(const std::string &path)
    {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return "open: " + std::string(strerror(errno));
        char buf[256];
        ssize_t n = read(fd, buf, sizeof(buf));
        std::string out = n < 0 ? "read: " + std::string(strerror(errno))
                                : std::string(buf, static_cast<size_t>(n));
        close(fd);
        return out;
    }

    /* pwrite(2) of `data` at 0: bytes written, or -errno. */
    static ssize_t WriteOrErrno(const std::string &path, const std::string &data)
    {
        int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        ssize_t n = pwrite(fd, data.data(), data.size(), 0);
        if (n < 0)
            n = -errno;
        close(fd);
        return n;
    }

    TempDir tmp_;
    std::string source_;
    std::string view_;
    std::unique_ptr<FaultFs> fs_;
};

TEST_F(FaultFsTest, MirrorsItsSourceBothWays)
{
    EXPECT_EQ(ReadFile(View("a")), "hello from a\n");
    WriteFile(View("new"), "made through the mount");
    EXPECT_EQ(ReadFile(Source("new")), "made through the mount");
    WriteFile(Source("a"), "changed underneath\n");
    EXPECT_EQ(ReadFile(View("a")), "changed underneath\n") << "no stale cache";
    ASSERT_EQ(unlink(Source("b").c_str()), 0);
    EXPECT_FALSE(Exists(View("b"))) << "no stale name";

    ASSERT_EQ(mkdir(View("dir").c_str(), 0750), 0) << strerror(errno);
    struct stat st;
    ASSERT_EQ(stat(Source("dir").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0750u);
    ASSERT_EQ(rename(View("new").c_str(), View("dir/moved").c_str()), 0) << strerror(errno);
    EXPECT_EQ(ReadFile(Source("dir/moved")), "made through the mount");
    ASSERT_EQ(symlink("dir/moved", View("link").c_str()), 0) << strerror(errno);
    char target[64] = {};
    ASSERT_GT(readlink(View("link").c_str(), target, sizeof(target) - 1), 0);
    EXPECT_STREQ(target, "dir/moved");
    ASSERT_EQ(link(View("dir/moved").c_str(), View("hard").c_str()), 0) << strerror(errno);
    ASSERT_EQ(stat(Source("hard").c_str(), &st), 0);
    EXPECT_EQ(st.st_nlink, 2u);
    ASSERT_EQ(truncate(View("hard").c_str(), 4), 0) << strerror(errno);
    EXPECT_EQ(ReadFile(Source("dir/moved")), "made");
    ASSERT_EQ(chmod(View("hard").c_str(), 0600), 0) << strerror(errno);
    struct timespec times[2] = {{1000, 0}, {2000, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, View("hard").c_str(), times, 0), 0) << strerror(errno);
    ASSERT_EQ(stat(Source("hard").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(st.st_mtim.tv_sec, 2000);

    int fd = open(View("sparse").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    ASSERT_EQ(fallocate(fd, 0, 0, 1 << 20), 0) << strerror(errno);
    ASSERT_EQ(ftruncate(fd, 8 << 20), 0);
    ASSERT_EQ(pwrite(fd, "x", 1, 4 << 20), 1);
    EXPECT_EQ(lseek(fd, 2 << 20, SEEK_DATA), 4 << 20) << "SEEK_DATA passes through";
    EXPECT_EQ(fsync(fd), 0) << strerror(errno);
    EXPECT_EQ(fdatasync(fd), 0) << strerror(errno);
    int copy = open(View("copy").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(copy, 0) << strerror(errno);
    loff_t in = 4 << 20, out = 0;
    EXPECT_EQ(copy_file_range(fd, &in, copy, &out, 1, 0), 1) << strerror(errno);
    close(copy);
    close(fd);
    EXPECT_EQ(ReadFile(Source("copy")), "x");
    EXPECT_EQ(AllocatedBytes(Source("sparse")), static_cast<uint64_t>(1 << 20) + kBlock);

    struct statvfs through, direct;
    ASSERT_EQ(statvfs(view_.c_str(), &through), 0);
    ASSERT_EQ(statvfs(source_.c_str(), &direct), 0);
    EXPECT_EQ(through.f_blocks, direct.f_blocks);

    ASSERT_EQ(unlink(View("link").c_str()), 0);
    ASSERT_EQ(unlink(View("hard").c_str()), 0);
    ASSERT_EQ(unlink(View("dir/moved").c_str()), 0);
    ASSERT_EQ(rmdir(View("dir").c_str()), 0) << strerror(errno);
    EXPECT_FALSE(Exists(Source("dir")));
}

/* An open file unlinked through the mount is still usable and leaves no trace in the
 * source (other hosts and consistency checks look there). */
TEST_F(FaultFsTest, UnlinkedOpenFileLeavesNothingBehind)
{
    int fd = open(View("a").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(unlink(View("a").c_str()), 0);
    EXPECT_EQ(pwrite(fd, "H", 1, 0), 1) << strerror(errno);
    char buf[5] = {};
    EXPECT_EQ(pread(fd, buf, 4, 0), 4) << strerror(errno);
    EXPECT_STREQ(buf, "Hell");
    close(fd);
    CommandResult ls = sdm::testing::Run({"ls", "-A", source_});
    EXPECT_EQ(ls.out, "b\n");
}

TEST_F(FaultFsTest, MountsOverItsOwnSource)
{
    fs_.reset();
    FaultFs over(source_, source_);
    EXPECT_EQ(over.Add("fail-a", "read", "/a", "error=EIO"), "");
    EXPECT_EQ(ReadOrErrno(Source("a")), "read: " + std::string(strerror(EIO)))
        << "the path itself goes through faultfs";
    WriteFile(Source("c"), "written while covered");
    over.Unmount();
    EXPECT_EQ(ReadFile(Source("a")), "hello from a\n");
    EXPECT_EQ(ReadFile(Source("c")), "written while covered");
}

TEST_F(FaultFsTest, ErrorRuleFailsOnlyWhatItNames)
{
    ASSERT_EQ(fs_->Add("eio", "read", "/a", "error=EIO"), "");
    ASSERT_EQ(fs_->Add("full", "write,fallocate", "*b", "error=ENOSPC"), "");
    EXPECT_EQ(ReadOrErrno(View("a")), "read: " + std::string(strerror(EIO)));
    EXPECT_EQ(WriteOrErrno(View("b"), "data"), -ENOSPC);
    EXPECT_EQ(ReadOrErrno(View("b")), "hello from b\n") << "reads of b are not named";
    EXPECT_EQ(WriteOrErrno(View("a"), "HELLO"), 5) << "writes of a are not named";
    auto rules = fs_->Rules();
    EXPECT_EQ(rules["eio"].hits, 1u);
    EXPECT_EQ(rules["full"].hits, 1u);

    EXPECT_EQ(fs_->Clear("eio"), "");
    EXPECT_EQ(ReadOrErrno(View("a")), "HELLO from a\n");
    EXPECT_EQ(fs_->ClearAll(), "");
    EXPECT_EQ(WriteOrErrno(View("b"), "data"), 4);
    EXPECT_TRUE(fs_->Rules().empty());
}

/* after=N lets N matching operations through; times=N fires N times, then lets go. */
TEST_F(FaultFsTest, AfterAndTimesCountMatchingOperations)
{
    ASSERT_EQ(fs_->Add("third", "write", "/a", "error=EIO", 2, 1), "");
    EXPECT_EQ(WriteOrErrno(View("a"), "1"), 1);
    EXPECT_EQ(WriteOrErrno(View("b"), "not counted"), 11);
    EXPECT_EQ(WriteOrErrno(View("a"), "2"), 1);
    EXPECT_EQ(WriteOrErrno(View("a"), "3"), -EIO);
    EXPECT_EQ(WriteOrErrno(View("a"), "4"), 1);
    auto rules = fs_->Rules();
    EXPECT_EQ(rules["third"].seen, 4u);
    EXPECT_EQ(rules["third"].hits, 1u);
    EXPECT_EQ(ReadFile(Source("a"))[0], '4');
}

TEST_F(FaultFsTest, ShortRuleCutsTransfers)
{
    ASSERT_EQ(fs_->Add("cut", "io", "/a", "short=5"), "");
    EXPECT_EQ(WriteOrErrno(View("a"), "0123456789"), 5);
    EXPECT_EQ(ReadOrErrno(View("a")), "01234");
    EXPECT_EQ(fs_->Clear("cut"), "");
    EXPECT_EQ(ReadOrErrno(View("a")), "01234 from a\n");
}

/* A hung read stays hung while its rule stands (faultfs says it holds it), and finishes
 * with the right data once the rule is cleared. */
TEST_F(FaultFsTest, HangHoldsUntilCleared)
{
    ASSERT_EQ(fs_->Add("stall", "read", "/a", "hang"), "");
    std::atomic<bool> done{false};
    std::string got;
    std::thread reader([&] {
        got = ReadOrErrno(View("a"));
        done = true;
    });
    ASSERT_TRUE(fs_->WaitHung("stall")) << fs_->Output();
    EXPECT_EQ(ReadOrErrno(View("b")), "hello from b\n") << "other files are served";
    EXPECT_FALSE(done) << "the read finished while its rule stands";
    EXPECT_EQ(fs_->Clear("stall"), "");
    reader.join();
    EXPECT_EQ(got, "hello from a\n");
}

TEST_F(FaultFsTest, RefusesBadCommands)
{
    EXPECT_EQ(fs_->Command("ping"), "ok\n");
    EXPECT_NE(fs_->Add("r", "reed", "/a", "hang").find("unknown operation 'reed'"),
              std::string::npos);
    EXPECT_NE(fs_->Add("r", "read", "/a", "error=EWHAT").find("is not an action"),
              std::string::npos);
    EXPECT_NE(fs_->Add("r", "read", "/a", "short=lots").find("is not short=<bytes>"),
              std::string::npos);
    EXPECT_NE(fs_->Command("add r read /a hang later=3").find("is not after=N or times=N"),
              std::string::npos);
    EXPECT_NE(fs_->Command("add r read").find("usage: add"), std::string::npos);
    ASSERT_EQ(fs_->Add("r", "read", "/a", "hang"), "");
    EXPECT_NE(fs_->Add("r", "write", "/a", "hang").find("clear it first"), std::string::npos);
    EXPECT_NE(fs_->Clear("nosuch").find("no rule named 'nosuch'"), std::string::npos);
    EXPECT_NE(fs_->Command("frobnicate").find("unknown command"), std::string::npos);
    EXPECT_EQ(fs_->Rules().size(), 1u);
}

TEST_F(FaultFsTest, DirectIoPassesThrough)
{
    int fd = open(View("direct").c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0) << strerror(errno);
    void *out = nullptr;
    void *in = nullptr;
    ASSERT_EQ(posix_memalign(&out, kBlock, kBlock), 0);
    ASSERT_EQ(posix_memalign(&in, kBlock, kBlock), 0);
    memset(out, 0x5a, kBlock);
    EXPECT_EQ(pwrite(fd, out, kBlock, kBlock), static_cast<ssize_t>(kBlock)) << strerror(errno);
    EXPECT_EQ(pread(fd, in, kBlock, kBlock), static_cast<ssize_t>(kBlock)) << strerror(errno);
    EXPECT_EQ(memcmp(in, out, kBlock), 0);
    ASSERT_EQ(fs_->Add("eio", "read", "/direct", "error=EIO"), "");
    EXPECT_EQ(pread(fd, in, kBlock, 0), -1);
    EXPECT_EQ(errno, EIO);
    close(fd);
    free(out);
    free(in);
    EXPECT_EQ(FileSha256(Source("direct")).size(), 64u);
    EXPECT_EQ(AllocatedBytes(Source("direct")), kBlock);
}

/* sanlock formats a lockspace through the mount (O_DIRECT), a private daemon started after
 * the mount joins it and takes a lease (aio through FUSE), and the daemon's reads of
 * `ids` are seen by a rule that only counts them. */
TEST_F(FaultFsTest, SanlockWorksThroughIt)
{
    SanlockGeometry g;
    g.lockspace = "faultfs-test";
    g.ids_path = View("ids");
    g.leases_path = View("leases");
    g.owners_path = View("owners");
    /* Not 1: the suite runs beside others, and an aio through the mount that outlasts
     * io_timeout fails the join. The join takes about 2 x io_timeout. */
    g.io_timeout = 3;
    WriteFile(g.ids_path, "");
    WriteFile(g.leases_path, "");
    ASSERT_EQ(fs_->Add("count-ids", "read", "/ids", "error=EIO", UINT32_MAX), "");
    ASSERT_TRUE(SanlockLeaseManager::FormatAreas(g).ok());

    std::unique_ptr<SanlockDaemon> daemon;
    try {
        daemon = std::make_unique<SanlockDaemon>("faultfs-host");
    } catch (const std::exception &e) {
        FAIL() << e.what();
    }
    daemon->UseInThisProcess();
    {
        SanlockLeaseManager leases(g, 1);
        ASSERT_TRUE(leases.Join().ok());
        Status joined = leases.WaitJoined(std::chrono::seconds(60));
        ASSERT_TRUE(joined.ok()) << joined.ToString() << daemon->OutputTail();
        ASSERT_TRUE(leases.InitChunk(0).ok());
        auto lease = leases.Acquire(LeaseArea::kLeases, 1, LeaseMode::kExclusive,
                                    std::chrono::seconds(10));
        ASSERT_TRUE(lease.ok()) << lease.status().ToString() << daemon->OutputTail();
        lease->reset();
        EXPECT_TRUE(leases.Leave().ok());
    }
    auto rules = fs_->Rules();
    EXPECT_GT(rules["count-ids"].seen, 1u) << "sanlock's ids reads did not go through faultfs";
    EXPECT_EQ(rules["count-ids"].hits, 0u);
}

}  // namespace
}  // namespace sdm::testing
