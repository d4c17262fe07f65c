/* Tests of the qemu-img wrapper against the real qemu-img (create, convert, resize, info),
 * and against stand-in scripts for what the real one will not do on demand: a full disk,
 * a crash, hostile or malformed output. */
#include "backend/engine/qemu_img.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/support/test_support.h"

namespace sdm::qemu {
namespace {

using testing::AllocatedBytes;
using testing::FileSha256;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;
using testing::WritePattern;

constexpr uint64_t kMiB = 1 << 20;

class RecordingObserver : public OpObserver {
public:
    void OnProgress(uint64_t done, uint64_t total) override { calls.emplace_back(done, total); }
    bool CancelRequested() override { return cancel; }

    bool cancel = false;
    std::vector<std::pair<uint64_t, uint64_t>> calls;
};

/* Sets SDM_QEMU_IMG for one test and restores the environment after it. */
class ScopedQemuImg {
public:
    explicit ScopedQemuImg(const std::string &binary)
    {
        const char *old = getenv("SDM_QEMU_IMG");
        had_old_ = old != nullptr;
        if (old)
            old_ = old;
        setenv("SDM_QEMU_IMG", binary.c_str(), 1);
    }
    ~ScopedQemuImg()
    {
        if (had_old_)
            setenv("SDM_QEMU_IMG", old_.c_str(), 1);
        else
            unsetenv("SDM_QEMU_IMG");
    }

private:
    bool had_old_ = false;
    std::string old_;
};

/* An executable shell script standing in for qemu-img. */
std::string FakeQemuImg(const TempDir &dir, const std::string &body)
{
    std::string path = dir.Sub("fake-qemu-img");
    WriteFile(path, "#!/bin/sh\n" + body + "\n");
    EXPECT_EQ(chmod(path.c_str(), 0755), 0);
    return path;
}

std::string MakeRaw(const std::string &path, uint64_t size)
{
    WriteFile(path, "");
    EXPECT_EQ(truncate(path.c_str(), static_cast<off_t>(size)), 0);
    return path;
}

TEST(QemuImgCreateTest, RawSparseAndFull)
{
    TempDir dir;
    ASSERT_TRUE(Create(dir.Sub("sparse"), VolumeFormat::kRaw, 10 * kMiB,
                       Preallocation::kSparse).ok());
    ASSERT_TRUE(Create(dir.Sub("full"), VolumeFormat::kRaw, 10 * kMiB,
                       Preallocation::kFull).ok());

    for (const char *name : {"sparse", "full"}) {
        auto info = Info(dir.Sub(name));
        ASSERT_TRUE(info.ok()) << info.status().ToString();
        EXPECT_EQ(info->format, "raw");
        EXPECT_EQ(info->virtual_size, 10 * kMiB);
        EXPECT_EQ(info->backing_filename, "");
    }
    /* qemu-img writes the first block of a raw file (for alignment probing), no more. */
    EXPECT_LE(AllocatedBytes(dir.Sub("sparse")), 64 * 1024u);
    EXPECT_GE(AllocatedBytes(dir.Sub("full")), 10 * kMiB);
}

TEST(QemuImgCreateTest, RawMetadataPreallocationIsRefused)
{
    TempDir dir;
    Status status = Create(dir.Sub("x"), VolumeFormat::kRaw, kMiB, Preallocation::kMetadata);
    EXPECT_EQ(status.code(), ErrorCode::kInvalidArgument);
    EXPECT_FALSE(testing::Exists(dir.Sub("x")));
}

TEST(QemuImgCreateTest, Qcow2PreallocationVariants)
{
    TempDir dir;
    const uint64_t size = 64 * kMiB;
    for (auto prealloc : {Preallocation::kSparse, Preallocation::kMetadata, Preallocation::kFull}) {
        std::string path = dir.Sub(PreallocationName(prealloc));
        Status status = Create(path, VolumeFormat::kQcow2, size, prealloc);
        ASSERT_TRUE(status.ok()) << status.ToString();
        auto info = Info(path);
        ASSERT_TRUE(info.ok()) << info.status().ToString();
        EXPECT_EQ(info->format, "qcow2");
        EXPECT_EQ(info->virtual_size, size);
        EXPECT_EQ(info->backing_filename, "");
    }
    EXPECT_LT(AllocatedBytes(dir.Sub("sparse")), kMiB);
    /* Metadata preallocation maps every cluster (the file's size covers the disk) without
     * allocating the data; full allocates it. */
    struct stat st;
    ASSERT_EQ(stat(dir.Sub("metadata").c_str(), &st), 0);
    EXPECT_GE(static_cast<uint64_t>(st.st_size), size);
    EXPECT_LT(AllocatedBytes(dir.Sub("metadata")), size);
    EXPECT_GE(AllocatedBytes(dir.Sub("full")), size);

    auto out = testing::Run({"qemu-img", "info", "--output=json", dir.Sub("sparse")});
    EXPECT_NE(out.out.find("\"compat\": \"1.1\""), std::string::npos) << out.out;
    EXPECT_NE(out.out.find("\"lazy-refcounts\": false"), std::string::npos) << out.out;
}

TEST(QemuImgCreateTest, Qcow2WithBackingDoesNotOpenIt)
{
    TempDir dir;
    MakeRaw(dir.Sub("base"), 8 * kMiB);
    ASSERT_TRUE(Create(dir.Sub("top"), VolumeFormat::kQcow2, 8 * kMiB, Preallocation::kSparse,
                       "base", VolumeFormat::kRaw).ok());
    /* -u: the backing file need not exist yet. */
    ASSERT_TRUE(Create(dir.Sub("orphan"), VolumeFormat::kQcow2, 8 * kMiB,
                       Preallocation::kSparse, "missing", VolumeFormat::kQcow2).ok());

    auto top = Info(dir.Sub("top"));
    ASSERT_TRUE(top.ok()) << top.status().ToString();
    EXPECT_EQ(top->format, "qcow2");
    EXPECT_EQ(top->virtual_size, 8 * kMiB);
    EXPECT_EQ(top->backing_filename, "base");
    auto orphan = Info(dir.Sub("orphan"));
    ASSERT_TRUE(orphan.ok()) << orphan.status().ToString();
    EXPECT_EQ(orphan->backing_filename, "missing");
}

TEST(QemuImgCreateTest, ExistingFileIsNotOverwritten)
{
    TempDir dir;
    WriteFile(dir.Sub("x"), "precious");
    Status status = Create(dir.Sub("x"), VolumeFormat::kQcow2, kMiB, Preallocation::kSparse);
    EXPECT_EQ(status.code(), ErrorCode::kAlreadyExists);
    EXPECT_EQ(ReadFile(dir.Sub("x")), "precious");
}

TEST(QemuImgCreateTest, MissingDirectoryFailsWithQemuImgsMessage)
{
    TempDir dir;
    Status status = Create(dir.Sub("no/such/x"), VolumeFormat::kQcow2, kMiB,
                           Preallocation::kSparse);
    EXPECT_EQ(status.code(), ErrorCode::kIoError);
    EXPECT_NE(status.message().find("No such file or directory"), std::string::npos)
        << status.message();
}

TEST(QemuImgConvertTest, FlattensAChainIntoRaw)
{
    TempDir dir;
    const uint64_t size = 16 * kMiB;
    MakeRaw(dir.Sub("base"), size);
    WritePattern(dir.Sub("base"), 0, 4 * kMiB, 7);
    WritePattern(dir.Sub("base"), 12 * kMiB, kMiB, 8);
    ASSERT_TRUE(Create(dir.Sub("top"), VolumeFormat::kQcow2, size, Preallocation::kSparse,
                       "base", VolumeFormat::kRaw).ok());
    auto io = testing::Run({"qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 64k",
                            "-c", "write -P 0xcd 8M 1M", dir.Sub("top")});
    ASSERT_EQ(io.exit_code, 0) << io.out;

    std::string expected = ReadFile(dir.Sub("base"));
    expected.replace(kMiB, 64 * 1024, std::string(64 * 1024, '\xab'));
    expected.replace(8 * kMiB, kMiB, std::string(kMiB, '\xcd'));
    WriteFile(dir.Sub("expected"), expected);

    RecordingObserver observer;
    Status status = Convert(dir.Sub("top"), VolumeFormat::kQcow2, dir.Sub("flat"),
                            VolumeFormat::kRaw, size, &observer);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(FileSha256(dir.Sub("flat")), FileSha256(dir.Sub("expected")));
    EXPECT_LT(AllocatedBytes(dir.Sub("flat")), size); /* the holes stay holes */
    /* Reports read from qemu-img's output come before the final one. */
    ASSERT_GE(observer.calls.size(), 2u);
    EXPECT_EQ(observer.calls.back(), std::make_pair(size, size));
    for (size_t i = 1; i < observer.calls.size(); i++)
        EXPECT_GT(observer.calls[i].first, observer.calls[i - 1].first);
    auto info = Info(dir.Sub("flat"));
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->backing_filename, "");
}

TEST(QemuImgConvertTest, RawToQcow2AndBackKeepsTheData)
{
    TempDir dir;
    const uint64_t size = 8 * kMiB;
    MakeRaw(dir.Sub("a"), size);
    WritePattern(dir.Sub("a"), kMiB, 3 * kMiB, 3);
    ASSERT_TRUE(Convert(dir.Sub("a"), VolumeFormat::kRaw, dir.Sub("b"), VolumeFormat::kQcow2,
                        size, nullptr).ok());
    auto info = Info(dir.Sub("b"));
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->format, "qcow2");
    EXPECT_EQ(info->virtual_size, size);
    ASSERT_TRUE(Convert(dir.Sub("b"), VolumeFormat::kQcow2, dir.Sub("c"), VolumeFormat::kRaw,
                        size, nullptr).ok());
    EXPECT_EQ(FileSha256(dir.Sub("c")), FileSha256(dir.Sub("a")));
}

TEST(QemuImgConvertTest, CancelStopsQemuImgAndReapsIt)
{
    TempDir dir;
    MakeRaw(dir.Sub("src"), 512 * kMiB);
    WritePattern(dir.Sub("src"), 0, 256 * kMiB, 1);
    RecordingObserver observer;
    observer.cancel = true;
    Status status = Convert(dir.Sub("src"), VolumeFormat::kRaw, dir.Sub("dst"),
                            VolumeFormat::kQcow2, 512 * kMiB, &observer);
    EXPECT_EQ(status.code(), ErrorCode::kCancelled) << status.ToString();
    int wstatus;
    EXPECT_EQ(waitpid(-1, &wstatus, WNOHANG), -1); /* no child left, not even a zombie */
    EXPECT_EQ(errno, ECHILD);
    for (const auto &call : observer.calls)
        EXPECT_LT(call.first, 512 * kMiB);
}

TEST(QemuImgConvertTest, MissingSourceAndExistingTargetFail)
{
    TempDir dir;
    Status missing = Convert(dir.Sub("nope"), VolumeFormat::kQcow2, dir.Sub("out"),
                             VolumeFormat::kRaw, kMiB, nullptr);
    EXPECT_EQ(missing.code(), ErrorCode::kIoError);
    EXPECT_NE(missing.message().find("nope"), std::string::npos) << missing.message();

    MakeRaw(dir.Sub("src"), kMiB);
    WriteFile(dir.Sub("out"), "precious");
    Status exists = Convert(dir.Sub("src"), VolumeFormat::kRaw, dir.Sub("out"),
                            VolumeFormat::kRaw, kMiB, nullptr);
    EXPECT_EQ(exists.code(), ErrorCode::kAlreadyExists);
    EXPECT_EQ(ReadFile(dir.Sub("out")), "precious");
}

TEST(QemuImgResizeTest, GrowsAndShrinksOnlyWhenAsked)
{
    TempDir dir;
    std::string path = dir.Sub("x");
    ASSERT_TRUE(Create(path, VolumeFormat::kQcow2, 10 * kMiB, Preallocation::kSparse).ok());
    Status grow = Resize(path, VolumeFormat::kQcow2, 20 * kMiB, false);
    ASSERT_TRUE(grow.ok()) << grow.ToString();
    EXPECT_EQ(Info(path)->virtual_size, 20 * kMiB);

    Status refused = Resize(path, VolumeFormat::kQcow2, 5 * kMiB, false);
    EXPECT_EQ(refused.code(), ErrorCode::kIoError);
    EXPECT_NE(refused.message().find("shrink"), std::string::npos) << refused.message();
    EXPECT_EQ(Info(path)->virtual_size, 20 * kMiB);

    Status shrink = Resize(path, VolumeFormat::kQcow2, 5 * kMiB, true);
    ASSERT_TRUE(shrink.ok()) << shrink.ToString();
    EXPECT_EQ(Info(path)->virtual_size, 5 * kMiB);
}

TEST(QemuImgInfoTest, MissingFileFails)
{
    TempDir dir;
    auto info = Info(dir.Sub("nope"));
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status().code(), ErrorCode::kIoError);
    EXPECT_NE(info.status().message().find("No such file or directory"), std::string::npos);
}

TEST(QemuImgBinaryTest, MissingBinarySaysWhatToInstall)
{
    TempDir dir;
    ScopedQemuImg fake("/nonexistent/qemu-img");
    Status status = Create(dir.Sub("x"), VolumeFormat::kQcow2, kMiB, Preallocation::kSparse);
    EXPECT_EQ(status.code(), ErrorCode::kUnsupported);
    EXPECT_NE(status.message().find("qemu-utils"), std::string::npos) << status.message();
    auto info = Info(dir.Sub("x"));
    EXPECT_EQ(info.status().code(), ErrorCode::kUnsupported);
}

TEST(QemuImgBinaryTest, FullDiskIsNoSpace)
{
    TempDir dir;
    ScopedQemuImg fake(FakeQemuImg(
        dir, "echo 'qemu-img: error while writing at byte 0: No space left on device' >&2\n"
             "exit 1"));
    Status status = Convert(dir.Sub("a"), VolumeFormat::kRaw, dir.Sub("b"),
                            VolumeFormat::kRaw, kMiB, nullptr);
    EXPECT_EQ(status.code(), ErrorCode::kNoSpace);
    EXPECT_NE(status.message().find("No space left on device"), std::string::npos);
}

TEST(QemuImgBinaryTest, MessageIsCutToItsFirstLinesWithoutControlCharacters)
{
    TempDir dir;
    ScopedQemuImg fake(FakeQemuImg(
        dir, "printf 'qemu-img: one \\033[2J\\n\\ntwo\\nthree\\nfour\\nfive\\n' >&2\n"
             "exit 1"));
    Status status = Resize(dir.Sub("a"), VolumeFormat::kRaw, kMiB, false);
    EXPECT_EQ(status.code(), ErrorCode::kIoError);
    EXPECT_NE(status.message().find("qemu-img: one ?[2J; two; three; and 2 more lines"),
              std::string::npos)
        << status.message();
    EXPECT_EQ(status.message().find("four"), std::string::npos);
}

TEST(QemuImgBinaryTest, CrashIsAnError)
{
    TempDir dir;
    ScopedQemuImg fake(FakeQemuImg(dir, "kill -KILL $$"));
    Status status = Resize(dir.Sub("a"), VolumeFormat::kRaw, kMiB, false);
    EXPECT_EQ(status.code(), ErrorCode::kIoError);
    EXPECT_NE(status.message().find("signal 9"), std::string::npos) << status.message();
}

TEST(QemuImgBinaryTest, ProgressIsReadFromQemuImgOutput)
{
    TempDir dir;
    ScopedQemuImg fake(FakeQemuImg(
        dir, "printf '    (0.00/100%%)\\r    (25.00/100%%)\\r  junk (x/100%%)\\r'\n"
             "printf '    (50.50/100%%)\\r    (50.50/100%%)\\r    (100.00/100%%)\\r\\n'"));
    RecordingObserver observer;
    Status status = Convert(dir.Sub("a"), VolumeFormat::kRaw, dir.Sub("b"),
                            VolumeFormat::kRaw, 1000, &observer);
    ASSERT_TRUE(status.ok()) << status.ToString();
    std::vector<std::pair<uint64_t, uint64_t>> want = {{250, 1000}, {505, 1000}, {1000, 1000}};
    EXPECT_EQ(observer.calls, want);
}

class QemuImgInfoOutputTest : public ::testing::Test {
protected:
    Result<ImageInfo> InfoPrinting(const std::string &json)
    {
        WriteFile(dir_.Sub("out.json"), json);
        ScopedQemuImg fake(FakeQemuImg(dir_, "cat '" + dir_.Sub("out.json") + "'"));
        return Info(dir_.Sub("image"));
    }

    TempDir dir_;
};

TEST_F(QemuImgInfoOutputTest, NestedKeysDoNotShadowTopLevelOnes)
{
    auto info = InfoPrinting(
        "{\"format-specific\": {\"format\": \"evil\", \"virtual-size\": 1, "
        "\"list\": [1, -2.5e3, true, false, null, {\"backing-filename\": \"x\"}]},\n"
        " \"virtual-size\": 4096, \"format\": \"qcow2\", \"dirty-flag\": false,\n"
        " \"backing-filename\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" a\\/b\"}\n");
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->virtual_size, 4096u);
    EXPECT_EQ(info->format, "qcow2");
    EXPECT_EQ(info->backing_filename, "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\" a/b");
}

TEST_F(QemuImgInfoOutputTest, MalformedOutputIsRefused)
{
    const std::string too_deep = "{\"virtual-size\": 1, \"format\": \"raw\", \"x\": " +
                                 std::string(40, '[') + std::string(40, ']') + "}";
    const std::string bad[] = {
        too_deep,
        "",
        "not json",
        "{\"virtual-size\": 4096}",                                    /* no format */
        "{\"virtual-size\": -1, \"format\": \"raw\"}",
        "{\"virtual-size\": 1.5, \"format\": \"raw\"}",
        "{\"virtual-size\": 99999999999999999999, \"format\": \"raw\"}",
        "{\"virtual-size\": 1, \"format\": \"raw\"",                   /* unterminated */
        "{\"virtual-size\": 1, \"format\": \"raw\"} trailing",
        "{\"virtual-size\": 1, \"format\": \"raw\", \"virtual-size\": 2}",
        "{\"virtual-size\": 1, \"format\": \"r\\u0000aw\"}",
        "{\"virtual-size\": 1, \"format\": \"\\ud800\"}",
        "{\"virtual-size\": 1, \"format\": \"raw\", \"x\": tru}",
        "{\"virtual-size\": 1, \"format\": \"ra\nw\"}",
    };
    for (const std::string &json : bad) {
        auto info = InfoPrinting(json);
        EXPECT_FALSE(info.ok()) << json;
        EXPECT_EQ(info.status().code(), ErrorCode::kIoError) << json;
    }
}

}  // namespace
}  // namespace sdm::qemu
