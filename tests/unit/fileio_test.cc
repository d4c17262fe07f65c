/* Tests of the defensive file I/O layer: atomic writes, bounded reads that refuse
 * symlinks and special files, and tree removal that never leaves the tree. */
#include "backend/engine/fileio.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <gtest/gtest.h>

#include "tests/support/test_support.h"

namespace sdm::fileio {
namespace {

using sdm::testing::Exists;
using sdm::testing::ReadFile;
using sdm::testing::TempDir;
using sdm::testing::WriteFile;

class FileioTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto fd = OpenDirPath(dir_.path());
        ASSERT_TRUE(fd.ok()) << fd.status().ToString();
        dirfd_ = std::move(*fd);
    }

    int dirfd() const { return dirfd_.get(); }

    TempDir dir_;
    Fd dirfd_;
};

TEST(FdTest, MoveTransfersOwnershipAndDestructorCloses)
{
    int raw = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(raw, 0);
    {
        Fd a(raw);
        Fd b(std::move(a));
        EXPECT_FALSE(a.valid());
        EXPECT_EQ(b.get(), raw);
        Fd c;
        c = std::move(b);
        EXPECT_FALSE(b.valid());
        EXPECT_EQ(c.get(), raw);
        EXPECT_GE(fcntl(raw, F_GETFD), 0);
    }
    EXPECT_EQ(fcntl(raw, F_GETFD), -1);
    EXPECT_EQ(errno, EBADF);
}

TEST(FdTest, MoveAssignmentClosesThePreviousDescriptor)
{
    int first = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int second = open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(first, 0);
    ASSERT_GE(second, 0);
    Fd a(first);
    a = Fd(second);
    EXPECT_EQ(fcntl(first, F_GETFD), -1);
    EXPECT_EQ(a.get(), second);
    EXPECT_EQ(a.release(), second);
    EXPECT_FALSE(a.valid());
    close(second);
}

TEST_F(FileioTest, AtomicWriteCreatesAndReplacesWithoutLeavingTemp)
{
    ASSERT_TRUE(AtomicWriteAt(dirfd(), "f.meta", "first\n").ok());
    EXPECT_EQ(ReadFile(dir_.Sub("f.meta")), "first\n");
    ASSERT_TRUE(AtomicWriteAt(dirfd(), "f.meta", "second, longer\n", false).ok());
    EXPECT_EQ(ReadFile(dir_.Sub("f.meta")), "second, longer\n");
    ASSERT_TRUE(AtomicWriteAt(dirfd(), "f.meta", "").ok());
    EXPECT_EQ(ReadFile(dir_.Sub("f.meta")), "");
    EXPECT_FALSE(Exists(dir_.Sub("f.meta.tmp")));
    auto names = ListDirAt(dirfd(), ".");
    ASSERT_TRUE(names.ok());
    EXPECT_EQ(*names, std::vector<std::string>{"f.meta"});
    struct stat st;
    ASSERT_EQ(stat(dir_.Sub("f.meta").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777 & ~0022u, 0644u & ~0022u);
}

TEST_F(FileioTest, AtomicWriteHandlesLargeContent)
{
    std::string big(3 << 20, 'x');
    for (size_t i = 0; i < big.size(); i += 4093)
        big[i] = static_cast<char>(i);
    ASSERT_TRUE(AtomicWriteAt(dirfd(), "big", big).ok());
    EXPECT_EQ(ReadFile(dir_.Sub("big")), big);
}

TEST_F(FileioTest, AtomicWriteDoesNotWriteThroughAStaleTempHardLink)
{
    WriteFile(dir_.Sub("victim"), "precious");
    ASSERT_EQ(link(dir_.Sub("victim").c_str(), dir_.Sub("f.tmp").c_str()), 0);
    ASSERT_TRUE(AtomicWriteAt(dirfd(), "f", "new").ok());
    EXPECT_EQ(ReadFile(dir_.Sub("victim")), "precious");
    EXPECT_EQ(ReadFile(dir_.Sub("f")), "new");
}

TEST_F(FileioTest, AtomicWriteDoesNotWriteThroughAStaleTempSymlink)
{
    TempDir outside;
    WriteFile(outside.Sub("victim"), "precious");
    ASSERT_EQ(symlink(outside.Sub("victim").c_str(), dir_.Sub("f.tmp").c_str()), 0);
    ASSERT_TRUE(AtomicWriteAt(dirfd(), "f", "new").ok());
    EXPECT_EQ(ReadFile(outside.Sub("victim")), "precious");
    EXPECT_EQ(ReadFile(dir_.Sub("f")), "new");
}

TEST_F(FileioTest, AtomicWriteFailureLeavesTargetAndNoTemp)
{
    WriteFile(dir_.Sub("f"), "old");
    ASSERT_EQ(mkdir(dir_.Sub("d").c_str(), 0755), 0);
    WriteFile(dir_.Sub("d/x"), "");
    /* Renaming a file over a non-empty directory fails after the temp was written. */
    Status status = AtomicWriteAt(dirfd(), "d", "content");
    EXPECT_FALSE(status.ok());
    EXPECT_FALSE(Exists(dir_.Sub("d.tmp")));
    EXPECT_EQ(ReadFile(dir_.Sub("f")), "old");
    EXPECT_EQ(AtomicWriteAt(dirfd(), "a/b", "x").code(), ErrorCode::kInvalidArgument);
}

TEST_F(FileioTest, WriteFileAtCreatesButNeverReplaces)
{
    ASSERT_TRUE(WriteFileAt(dirfd(), "new", "content").ok());
    EXPECT_EQ(ReadFile(dir_.Sub("new")), "content");
    Status again = WriteFileAt(dirfd(), "new", "other");
    EXPECT_EQ(again.code(), ErrorCode::kAlreadyExists) << again.ToString();
    EXPECT_EQ(ReadFile(dir_.Sub("new")), "content");

    TempDir outside;
    ASSERT_EQ(symlink(outside.Sub("made").c_str(), dir_.Sub("link").c_str()), 0);
    EXPECT_FALSE(WriteFileAt(dirfd(), "link", "x").ok());
    EXPECT_FALSE(Exists(outside.Sub("made")));
    EXPECT_EQ(WriteFileAt(dirfd(), "a/b", "x").code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(WriteFileAt(dirfd(), ".", "x").code(), ErrorCode::kInvalidArgument);
}

TEST_F(FileioTest, ReadSmallFileReadsExactContent)
{
    std::string content("a\0b\nc", 5);
    WriteFile(dir_.Sub("f"), content);
    auto read = ReadSmallFileAt(dirfd(), "f", 5);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(*read, content);
    WriteFile(dir_.Sub("empty"), "");
    auto empty = ReadSmallFileAt(dirfd(), "empty", 0);
    ASSERT_TRUE(empty.ok());
    EXPECT_EQ(*empty, "");
}

TEST_F(FileioTest, ReadSmallFileRefusesOversized)
{
    WriteFile(dir_.Sub("f"), std::string(4097, 'x'));
    auto read = ReadSmallFileAt(dirfd(), "f", 4096);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.status().code(), ErrorCode::kCorrupt);
    EXPECT_NE(read.status().message().find("4097 bytes"), std::string::npos)
        << read.status().message();
    EXPECT_NE(read.status().message().find("4096"), std::string::npos);
    EXPECT_NE(read.status().message().find(dir_.Sub("f")), std::string::npos);
}

TEST_F(FileioTest, ReadSmallFileRefusesSymlinkEvenToARegularFile)
{
    WriteFile(dir_.Sub("target"), "data");
    ASSERT_EQ(symlink("target", dir_.Sub("link").c_str()), 0);
    auto read = ReadSmallFileAt(dirfd(), "link", 100);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.status().code(), ErrorCode::kCorrupt);
    EXPECT_NE(read.status().message().find("symlink"), std::string::npos)
        << read.status().message();
}

TEST_F(FileioTest, ReadSmallFileRefusesFifoWithoutBlockingAndDirectory)
{
    ASSERT_EQ(mkfifo(dir_.Sub("fifo").c_str(), 0644), 0);
    auto fifo = ReadSmallFileAt(dirfd(), "fifo", 100);
    ASSERT_FALSE(fifo.ok());
    EXPECT_EQ(fifo.status().code(), ErrorCode::kCorrupt);
    EXPECT_NE(fifo.status().message().find("not a regular file"), std::string::npos);

    ASSERT_EQ(mkdir(dir_.Sub("dir").c_str(), 0755), 0);
    auto dir = ReadSmallFileAt(dirfd(), "dir", 100);
    ASSERT_FALSE(dir.ok());
    EXPECT_EQ(dir.status().code(), ErrorCode::kCorrupt);
}

TEST_F(FileioTest, ReadSmallFileMissingIsNotFound)
{
    auto read = ReadSmallFileAt(dirfd(), "missing", 100);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.status().code(), ErrorCode::kNotFound);
}

TEST_F(FileioTest, OpenAtRefusesPathsAndDotDot)
{
    WriteFile(dir_.Sub("f"), "");
    for (const char *name : {"a/b", "", "/etc/passwd", "..", "f/"}) {
        auto fd = OpenAt(dirfd(), name, O_RDONLY);
        ASSERT_FALSE(fd.ok()) << name;
        EXPECT_EQ(fd.status().code(), ErrorCode::kInvalidArgument) << name;
    }
    EXPECT_EQ(OpenAt(dirfd(), std::string("f\0x", 3), O_RDONLY).status().code(),
              ErrorCode::kInvalidArgument);
    EXPECT_TRUE(OpenAt(dirfd(), "f", O_RDONLY).ok());
}

TEST_F(FileioTest, OpenAtRefusesSymlinksToFilesAndDirectories)
{
    TempDir outside;
    ASSERT_EQ(symlink(outside.path().c_str(), dir_.Sub("dirlink").c_str()), 0);
    ASSERT_EQ(symlink("nowhere", dir_.Sub("dangling").c_str()), 0);
    for (const char *name : {"dirlink", "dangling"}) {
        auto file = OpenAt(dirfd(), name, O_RDONLY);
        ASSERT_FALSE(file.ok()) << name;
        EXPECT_EQ(file.status().code(), ErrorCode::kCorrupt) << name;
        EXPECT_NE(file.status().message().find("must not contain symlinks"), std::string::npos);
    }
    auto dir = OpenDirAt(dirfd(), "dirlink");
    ASSERT_FALSE(dir.ok());
    EXPECT_EQ(dir.status().code(), ErrorCode::kCorrupt) << dir.status().ToString();
    auto created = OpenAt(dirfd(), "dangling", O_WRONLY | O_CREAT);
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.status().code(), ErrorCode::kCorrupt);
    EXPECT_FALSE(Exists(dir_.Sub("nowhere")));
}

TEST_F(FileioTest, OpenDirAtDotAndMissing)
{
    auto self = OpenDirAt(dirfd(), ".");
    ASSERT_TRUE(self.ok());
    auto missing = OpenDirAt(dirfd(), "missing");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
}

TEST_F(FileioTest, OpenDirPathFollowsAnAdministratorsSymlink)
{
    ASSERT_EQ(mkdir(dir_.Sub("real").c_str(), 0755), 0);
    ASSERT_EQ(symlink("real", dir_.Sub("root").c_str()), 0);
    auto fd = OpenDirPath(dir_.Sub("root"));
    ASSERT_TRUE(fd.ok()) << fd.status().ToString();
    EXPECT_EQ(OpenDirPath(dir_.Sub("missing")).status().code(), ErrorCode::kNotFound);
}

TEST_F(FileioTest, ListDirAtNamesEntriesWithoutDots)
{
    ASSERT_EQ(mkdir(dir_.Sub("d").c_str(), 0755), 0);
    auto empty = ListDirAt(dirfd(), "d");
    ASSERT_TRUE(empty.ok());
    EXPECT_TRUE(empty->empty());
    WriteFile(dir_.Sub("d/a"), "");
    ASSERT_EQ(mkdir(dir_.Sub("d/b").c_str(), 0755), 0);
    ASSERT_EQ(symlink("x", dir_.Sub("d/c c").c_str()), 0);
    auto names = ListDirAt(dirfd(), "d");
    ASSERT_TRUE(names.ok());
    std::sort(names->begin(), names->end());
    EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c c"}));
    EXPECT_EQ(ListDirAt(dirfd(), "missing").status().code(), ErrorCode::kNotFound);
}

TEST_F(FileioTest, RemoveTreeRemovesNestedTreeButNotSymlinkTargetsOutside)
{
    TempDir outside;
    WriteFile(outside.Sub("keep"), "outside data");
    ASSERT_EQ(mkdir(outside.Sub("sub").c_str(), 0755), 0);
    WriteFile(outside.Sub("sub/keep2"), "more");

    ASSERT_EQ(mkdir(dir_.Sub("t").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir_.Sub("t/a").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir_.Sub("t/a/b").c_str(), 0755), 0);
    WriteFile(dir_.Sub("t/a/b/file"), "x");
    WriteFile(dir_.Sub("t/top"), "y");
    ASSERT_EQ(symlink(outside.path().c_str(), dir_.Sub("t/a/out").c_str()), 0);
    ASSERT_EQ(symlink(outside.path().c_str(), dir_.Sub("t/a/b/out2").c_str()), 0);
    ASSERT_EQ(mkfifo(dir_.Sub("t/fifo").c_str(), 0644), 0);

    Status status = RemoveTreeAt(dirfd(), "t");
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_FALSE(Exists(dir_.Sub("t")));
    EXPECT_EQ(ReadFile(outside.Sub("keep")), "outside data");
    EXPECT_EQ(ReadFile(outside.Sub("sub/keep2")), "more");
}

TEST_F(FileioTest, RemoveTreeOfASymlinkRemovesOnlyTheLink)
{
    TempDir outside;
    WriteFile(outside.Sub("keep"), "outside data");
    ASSERT_EQ(symlink(outside.path().c_str(), dir_.Sub("link").c_str()), 0);
    ASSERT_TRUE(RemoveTreeAt(dirfd(), "link").ok());
    EXPECT_FALSE(Exists(dir_.Sub("link")));
    EXPECT_EQ(ReadFile(outside.Sub("keep")), "outside data");
}

TEST_F(FileioTest, RemoveTreeOfMissingOrFileSucceeds)
{
    EXPECT_TRUE(RemoveTreeAt(dirfd(), "missing").ok());
    WriteFile(dir_.Sub("f"), "x");
    EXPECT_TRUE(RemoveTreeAt(dirfd(), "f").ok());
    EXPECT_FALSE(Exists(dir_.Sub("f")));
    EXPECT_EQ(RemoveTreeAt(dirfd(), "..").code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(RemoveTreeAt(dirfd(), ".").code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(RemoveTreeAt(dirfd(), "a/b").code(), ErrorCode::kInvalidArgument);
}

TEST_F(FileioTest, RemoveTreeRefusesAHostilelyDeepTree)
{
    std::string path = dir_.Sub("deep");
    ASSERT_EQ(mkdir(path.c_str(), 0755), 0);
    auto fd = OpenDirAt(dirfd(), "deep");
    ASSERT_TRUE(fd.ok());
    Fd level = std::move(*fd);
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(mkdirat(level.get(), "d", 0755), 0);
        auto next = OpenDirAt(level.get(), "d");
        ASSERT_TRUE(next.ok());
        level = std::move(*next);
    }
    Status status = RemoveTreeAt(dirfd(), "deep");
    EXPECT_EQ(status.code(), ErrorCode::kCorrupt) << status.ToString();
    EXPECT_TRUE(Exists(path));
}

TEST_F(FileioTest, RenameAtNoReplaceRefusesExistingTarget)
{
    WriteFile(dir_.Sub("a"), "A");
    WriteFile(dir_.Sub("b"), "B");
    Status status = RenameAt(dirfd(), "a", dirfd(), "b", true);
    EXPECT_EQ(status.code(), ErrorCode::kAlreadyExists) << status.ToString();
    EXPECT_EQ(ReadFile(dir_.Sub("a")), "A");
    EXPECT_EQ(ReadFile(dir_.Sub("b")), "B");

    ASSERT_TRUE(RenameAt(dirfd(), "a", dirfd(), "c", true).ok());
    EXPECT_FALSE(Exists(dir_.Sub("a")));
    EXPECT_EQ(ReadFile(dir_.Sub("c")), "A");

    ASSERT_TRUE(RenameAt(dirfd(), "c", dirfd(), "b", false).ok());
    EXPECT_EQ(ReadFile(dir_.Sub("b")), "A");
    EXPECT_FALSE(Exists(dir_.Sub("c")));

    EXPECT_EQ(RenameAt(dirfd(), "missing", dirfd(), "x", true).code(), ErrorCode::kNotFound);
    EXPECT_EQ(RenameAt(dirfd(), "b", dirfd(), "x/y", true).code(),
              ErrorCode::kInvalidArgument);
}

TEST_F(FileioTest, RenameAtMovesDirectoriesAcrossDirectories)
{
    ASSERT_EQ(mkdir(dir_.Sub("from").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir_.Sub("to").c_str(), 0755), 0);
    ASSERT_EQ(mkdir(dir_.Sub("from/tx").c_str(), 0755), 0);
    auto from = OpenDirAt(dirfd(), "from");
    auto to = OpenDirAt(dirfd(), "to");
    ASSERT_TRUE(from.ok() && to.ok());
    ASSERT_TRUE(RenameAt(from->get(), "tx", to->get(), "tx2", true).ok());
    EXPECT_TRUE(Exists(dir_.Sub("to/tx2")));
    EXPECT_FALSE(Exists(dir_.Sub("from/tx")));
}

TEST_F(FileioTest, FsyncDirAtAndFsyncFd)
{
    EXPECT_TRUE(FsyncDirAt(dirfd(), ".").ok());
    EXPECT_EQ(FsyncDirAt(dirfd(), "missing").code(), ErrorCode::kNotFound);
    EXPECT_FALSE(FsyncFd(-1, "nothing").ok());
}

}  // namespace
}  // namespace sdm::fileio
