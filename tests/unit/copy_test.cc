/* Tests of the sparse volume copy: content, holes, size, progress and cancel, through each
 * copy mechanism this filesystem offers (reflink falls back where it is unsupported). */
#include "backend/engine/copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "backend/engine/copy_internal.h"
#include "tests/support/test_support.h"

namespace sdm::copy {
namespace {

using internal::Method;
using testing::AllocatedBytes;
using testing::FileSha256;
using testing::TempDir;
using testing::WritePattern;

constexpr uint64_t kMiB = 1 << 20;

struct Range {
    uint64_t offset;
    uint64_t length;
    bool operator==(const Range &) const = default;
};

/* The file's data ranges as SEEK_DATA/SEEK_HOLE report them. */
std::vector<Range> DataMap(const std::string &path)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0) << path;
    std::vector<Range> map;
    off_t pos = 0;
    for (;;) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0)
            break;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        map.push_back({static_cast<uint64_t>(data), static_cast<uint64_t>(hole - data)});
        pos = hole;
    }
    close(fd);
    return map;
}

void MakeSparse(const std::string &path, uint64_t size, const std::vector<Range> &data)
{
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    close(fd);
    uint32_t seed = 1;
    for (const Range &r : data)
        WritePattern(path, r.offset, r.length, seed++);
}

uint64_t FileSize(const std::string &path)
{
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0);
    return static_cast<uint64_t>(st.st_size);
}

class RecordingObserver : public OpObserver {
public:
    void OnProgress(uint64_t done, uint64_t total) override { calls.emplace_back(done, total); }
    bool CancelRequested() override { return cancel_after_first && !calls.empty(); }

    bool cancel_after_first = false;
    std::vector<std::pair<uint64_t, uint64_t>> calls;
};

/* Runs the copy of src into a new file dst with `method` tried first. */
Status CopyFile(Method method, const std::string &src, const std::string &dst, uint64_t size,
                OpObserver *observer = nullptr, CopyStats *stats = nullptr)
{
    int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
    int out = open(dst.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    EXPECT_GE(in, 0);
    EXPECT_GE(out, 0);
    Status status = method == Method::kReflink
                        ? CopySparse(in, out, size, observer, stats)
                        : internal::CopySparseStartingWith(method, in, out, size, observer,
                                                           stats);
    close(in);
    close(out);
    return status;
}

class CopyTest : public ::testing::TestWithParam<Method> {
protected:
    TempDir dir_;
};

TEST_P(CopyTest, CopiesDataAndKeepsHoles)
{
    /* A non-block-aligned size, extents of odd lengths, and a trailing hole. */
    const uint64_t size = 64 * kMiB + 1000;
    std::vector<Range> data = {{0, kMiB}, {8 * kMiB, 4096}, {20 * kMiB + 3 * 4096, 3 * kMiB},
                               {40 * kMiB, 5 * kMiB + 4096}};
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    MakeSparse(src, size, data);

    CopyStats stats;
    RecordingObserver observer;
    Status status = CopyFile(GetParam(), src, dst, size, &observer, &stats);
    ASSERT_TRUE(status.ok()) << status.ToString();

    EXPECT_EQ(FileSize(dst), size);
    EXPECT_EQ(FileSha256(dst), FileSha256(src));
    /* As sparse as the source: the same data extents. (Not st_blocks, which counts the
     * filesystem's own extent-tree blocks too: ext4 gave the copy one 4 KiB index block
     * more than the source now and then, with its extents laid out otherwise.) */
    EXPECT_EQ(DataMap(dst), DataMap(src));
    EXPECT_EQ(stats.data_bytes, 9 * kMiB + 2 * 4096);
    EXPECT_EQ(stats.extents, DataMap(src).size());
    if (GetParam() == Method::kReflink)
        EXPECT_TRUE(stats.method == "reflink" || stats.method == "copy_file_range") << stats.method;
    else if (GetParam() == Method::kCopyFileRange)
        EXPECT_EQ(stats.method, "copy_file_range");
    else
        EXPECT_EQ(stats.method, "read-write");
    ASSERT_FALSE(observer.calls.empty());
    EXPECT_EQ(observer.calls.back(), std::make_pair(stats.data_bytes, stats.data_bytes));
}

TEST_P(CopyTest, CopiesUnalignedDataAtTheEnd)
{
    const uint64_t size = 3 * kMiB + 123;
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    MakeSparse(src, size, {{2 * kMiB, kMiB + 123}});

    Status status = CopyFile(GetParam(), src, dst, size);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(FileSize(dst), size);
    EXPECT_EQ(FileSha256(dst), FileSha256(src));
    EXPECT_EQ(DataMap(dst), DataMap(src));
}

TEST_P(CopyTest, AllHoleSourceCopiesToNothingAllocated)
{
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    MakeSparse(src, 16 * kMiB, {});

    CopyStats stats;
    RecordingObserver observer;
    Status status = CopyFile(GetParam(), src, dst, 16 * kMiB, &observer, &stats);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(FileSize(dst), 16 * kMiB);
    EXPECT_EQ(AllocatedBytes(dst), 0u);
    EXPECT_EQ(FileSha256(dst), FileSha256(src));
    EXPECT_EQ(stats.data_bytes, 0u);
    EXPECT_EQ(stats.extents, 0u);
    EXPECT_EQ(stats.method, "");
    ASSERT_FALSE(observer.calls.empty());
    EXPECT_EQ(observer.calls.back(), std::make_pair(uint64_t{0}, uint64_t{0}));
}

TEST_P(CopyTest, SizeSmallerThanSourceCopiesThePrefix)
{
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst"), want = dir_.Sub("want");
    MakeSparse(src, 8 * kMiB, {{0, 2 * kMiB}, {6 * kMiB, 2 * kMiB}});

    Status status = CopyFile(GetParam(), src, dst, 7 * kMiB + 5);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(FileSize(dst), 7 * kMiB + 5);
    testing::WriteFile(want, testing::ReadFile(src).substr(0, 7 * kMiB + 5));
    EXPECT_EQ(FileSha256(dst), FileSha256(want));
    EXPECT_EQ(DataMap(dst), (std::vector<Range>{{0, 2 * kMiB}, {6 * kMiB, kMiB + 5}}));
}

TEST_P(CopyTest, SizeLargerThanSourceEndsInAHole)
{
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    MakeSparse(src, 2 * kMiB, {{0, 2 * kMiB}});

    Status status = CopyFile(GetParam(), src, dst, 10 * kMiB);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(FileSize(dst), 10 * kMiB);
    EXPECT_EQ(DataMap(dst), (std::vector<Range>{{0, 2 * kMiB}}));
}

TEST_P(CopyTest, CancelAfterFirstProgressStopsTheCopy)
{
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    MakeSparse(src, 32 * kMiB, {{0, 16 * kMiB}, {24 * kMiB, 8 * kMiB}});

    RecordingObserver observer;
    observer.cancel_after_first = true;
    Status status = CopyFile(GetParam(), src, dst, 32 * kMiB, &observer);
    EXPECT_EQ(status.code(), ErrorCode::kCancelled) << status.ToString();
    EXPECT_NE(status.message().find("cancelled"), std::string::npos);
    ASSERT_EQ(observer.calls.size(), 1u);
    EXPECT_EQ(observer.calls[0], std::make_pair(uint64_t{0}, 24 * kMiB));
    EXPECT_LT(AllocatedBytes(dst), 24 * kMiB);
}

TEST_P(CopyTest, ProgressIsReportedWhileCopyingAndReachesTheTotal)
{
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    /* More data than one progress interval (64 MiB), so a report falls inside the copy. */
    MakeSparse(src, 96 * kMiB, {{0, 70 * kMiB}, {86 * kMiB, 10 * kMiB}});

    RecordingObserver observer;
    Status status = CopyFile(GetParam(), src, dst, 96 * kMiB, &observer);
    ASSERT_TRUE(status.ok()) << status.ToString();
    ASSERT_GE(observer.calls.size(), 3u);
    for (size_t i = 0; i < observer.calls.size(); i++) {
        EXPECT_EQ(observer.calls[i].second, 80 * kMiB);
        if (i > 0) {
            EXPECT_GE(observer.calls[i].first, observer.calls[i - 1].first);
        }
    }
    EXPECT_EQ(observer.calls.front().first, 0u);
    EXPECT_EQ(observer.calls.back().first, 80 * kMiB);
    EXPECT_EQ(FileSha256(dst), FileSha256(src));
}

TEST_P(CopyTest, NonEmptyDestinationIsRefused)
{
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    MakeSparse(src, kMiB, {{0, kMiB}});
    testing::WriteFile(dst, "precious");
    int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
    int out = open(dst.c_str(), O_RDWR | O_CLOEXEC);
    Status status = internal::CopySparseStartingWith(GetParam(), in, out, kMiB, nullptr, nullptr);
    close(in);
    close(out);
    EXPECT_EQ(status.code(), ErrorCode::kInternal);
    EXPECT_EQ(testing::ReadFile(dst), "precious");
}

TEST_P(CopyTest, BadDescriptorsFail)
{
    std::string src = dir_.Sub("src"), dst = dir_.Sub("dst");
    MakeSparse(src, kMiB, {{0, kMiB}});
    int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
    int out = open(dst.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int read_only = open(dst.c_str(), O_RDONLY | O_CLOEXEC);

    Status bad_src = internal::CopySparseStartingWith(GetParam(), -1, out, kMiB, nullptr, nullptr);
    EXPECT_FALSE(bad_src.ok());
    Status bad_dst = internal::CopySparseStartingWith(GetParam(), in, read_only, kMiB, nullptr,
                                                      nullptr);
    EXPECT_FALSE(bad_dst.ok());
    EXPECT_FALSE(bad_dst.message().empty());
    close(in);
    close(out);
    close(read_only);
}

INSTANTIATE_TEST_SUITE_P(Methods, CopyTest,
                         ::testing::Values(Method::kReflink, Method::kCopyFileRange,
                                           Method::kReadWrite),
                         [](const ::testing::TestParamInfo<Method> &info) {
                             switch (info.param) {
                             case Method::kReflink: return "Reflink";
                             case Method::kCopyFileRange: return "CopyFileRange";
                             case Method::kReadWrite: return "ReadWrite";
                             }
                             return "Unknown";
                         });

/* Zeros written inside a data extent are data to SEEK_DATA; read/write leaves them holes. */
TEST(CopyReadWriteTest, ZeroBlocksInsideDataBecomeHoles)
{
    TempDir dir;
    std::string src = dir.Sub("src"), dst = dir.Sub("dst");
    MakeSparse(src, 6 * kMiB, {{0, 6 * kMiB}});
    {
        int fd = open(src.c_str(), O_WRONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        std::string zeros(2 * kMiB, '\0');
        ASSERT_EQ(pwrite(fd, zeros.data(), zeros.size(), 2 * kMiB),
                  static_cast<ssize_t>(zeros.size()));
        /* Half a block of zeros is not a whole zero block: it must be copied. */
        ASSERT_EQ(pwrite(fd, zeros.data(), 2048, 5 * kMiB), 2048);
        ASSERT_EQ(fsync(fd), 0);
        close(fd);
    }
    ASSERT_EQ(DataMap(src), (std::vector<Range>{{0, 6 * kMiB}}));

    CopyStats stats;
    Status status = CopyFile(Method::kReadWrite, src, dst, 6 * kMiB, nullptr, &stats);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(FileSha256(dst), FileSha256(src));
    EXPECT_EQ(stats.data_bytes, 6 * kMiB);
    EXPECT_EQ(DataMap(dst), (std::vector<Range>{{0, 2 * kMiB}, {4 * kMiB, 2 * kMiB}}));
    EXPECT_LE(AllocatedBytes(dst), AllocatedBytes(src) - 2 * kMiB);
}

}  // namespace
}  // namespace sdm::copy
