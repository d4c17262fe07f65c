/* The engine's volume-data operations on a real domain: upload (pipes, ranges, holes,
 * qcow2, failures that leave the volume ILLEGAL), download, wipe, import from a file
 * outside the domain, and the removal of an empty domain. */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "backend/engine/local_lease.h"
#include "backend/engine/qemu_img.h"
#include "tests/support/domain_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

/* A sparse file of `size` bytes with a pattern MiB at each offset (in MiB). */
std::string MakeFile(const TempDir &tmp, const std::string &name, uint64_t size,
                     const std::vector<uint64_t> &mib_at)
{
    std::string path = tmp.Sub(name);
    WriteFile(path, "");
    EXPECT_EQ(truncate(path.c_str(), static_cast<off_t>(size)), 0);
    for (uint64_t at : mib_at)
        WritePattern(path, at * kMiB, kMiB, static_cast<uint32_t>(at + 3));
    return path;
}

/* Feeds a file into a pipe from a thread, as libvirt's stream would. */
class Feeder {
public:
    explicit Feeder(const std::string &path)
    {
        int fds[2];
        EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
        read_end_ = fds[0];
        thread_ = std::thread([path, write_end = fds[1]] {
            int in = open(path.c_str(), O_RDONLY | O_CLOEXEC);
            char buf[65536];
            ssize_t n;
            while (in >= 0 && (n = read(in, buf, sizeof(buf))) > 0)
                if (write(write_end, buf, static_cast<size_t>(n)) != n)
                    break;
            close(in);
            close(write_end);
        });
    }
    ~Feeder()
    {
        close(read_end_);
        thread_.join();
    }
    int fd() const { return read_end_; }

private:
    int read_end_ = -1;
    std::thread thread_;
};

class DataOpsTest : public DomainTest {
protected:
    void SetUp() override
    {
        /* A feeder whose reader gave up gets EPIPE, as libvirt's stream does. */
        signal(SIGPIPE, SIG_IGN);
        DomainTest::SetUp();
    }

    Result<VolumeInfo> Upload(const std::string &name, const std::string &file,
                              uint64_t offset = 0, uint64_t length = 0,
                              std::function<Status(OpObserver *)> confirm = nullptr)
    {
        Feeder feeder(file);
        UploadSource source;
        source.fd = feeder.fd();
        source.confirm_end = std::move(confirm);
        return domain_->UploadVolume(name, source, offset, length);
    }

    /* Downloads into a file through a pipe drained by a thread. */
    Status Download(const std::string &name, const std::string &out, uint64_t offset = 0,
                    uint64_t length = 0)
    {
        int fds[2];
        EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
        std::thread drain([out, read_end = fds[0]] {
            int to = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            char buf[65536];
            ssize_t n;
            while ((n = read(read_end, buf, sizeof(buf))) > 0)
                if (write(to, buf, static_cast<size_t>(n)) != n)
                    break;
            close(to);
            close(read_end);
        });
        Status status = domain_->DownloadVolume(name, fds[1], offset, length);
        close(fds[1]);
        drain.join();
        return status;
    }

    Legality LegalityOf(const std::string &name)
    {
        auto info = domain_->LookupVolume(name);
        EXPECT_TRUE(info.ok()) << info.status().ToString();
        return info.ok() ? info->legality : Legality::kLegal;
    }
};

TEST_F(DataOpsTest, UploadWritesEveryByteKeepsHolesAndBumpsTheGeneration)
{
    VolumeInfo v = MakeVolume("v", 16 * kMiB, VolumeFormat::kRaw, 2 * kMiB, 1);
    std::string payload = MakeFile(tmp_, "payload", 16 * kMiB, {0, 9});
    auto up = Upload("v", payload);
    ASSERT_TRUE(up.ok()) << up.status().ToString();
    EXPECT_EQ(up->legality, Legality::kLegal);
    EXPECT_EQ(up->generation, v.generation + 2) << "ILLEGAL, then LEGAL again";
    EXPECT_EQ(FileSha256(v.path), FileSha256(payload));
    EXPECT_LE(AllocatedBytes(v.path), 3 * kMiB) << "the old data's zeroed blocks are holes";

    std::string out = tmp_.Sub("out");
    ASSERT_TRUE(Download("v", out).ok());
    EXPECT_EQ(FileSha256(out), FileSha256(payload));
    ExpectClean();
}

TEST_F(DataOpsTest, AnUploadPastTheWriteBehindWindowLandsWhole)
{
    /* 80 MiB of data at an offset: the writer waits for the write-back of what lies more
     * than 32 MiB behind it several times, over ranges that start at the offset. */
    std::vector<uint64_t> data;
    for (uint64_t at = 0; at < 80; at++)
        data.push_back(at);
    VolumeInfo v = MakeVolume("v", 96 * kMiB);
    std::string payload = MakeFile(tmp_, "payload", 80 * kMiB, data);
    auto up = Upload("v", payload, 5 * kMiB);
    ASSERT_TRUE(up.ok()) << up.status().ToString();
    std::string out = tmp_.Sub("out");
    ASSERT_TRUE(Download("v", out, 5 * kMiB, 80 * kMiB).ok());
    EXPECT_EQ(FileSha256(out), FileSha256(payload));
    EXPECT_EQ(up->legality, Legality::kLegal) << "it was LEGAL before";
    ExpectClean();
}

TEST_F(DataOpsTest, RangesAndTheirLimits)
{
    VolumeInfo v = MakeVolume("v", 8 * kMiB);
    std::string patch = MakeFile(tmp_, "patch", kMiB, {0});
    ASSERT_TRUE(Upload("v", patch, 3 * kMiB, kMiB).ok());
    std::string out = tmp_.Sub("out");
    ASSERT_TRUE(Download("v", out, 3 * kMiB, kMiB).ok());
    EXPECT_EQ(FileSha256(out), FileSha256(patch));
    ASSERT_TRUE(Download("v", out, 7 * kMiB, 0).ok());
    struct stat st;
    ASSERT_EQ(stat(out.c_str(), &st), 0);
    EXPECT_EQ(st.st_size, static_cast<off_t>(kMiB)) << "to the end";

    auto past = Upload("v", patch, 8 * kMiB);
    ASSERT_FALSE(past.ok());
    EXPECT_EQ(past.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(LegalityOf("v"), Legality::kLegal) << "refused before anything was marked";
    EXPECT_EQ(Download("v", out, 9 * kMiB).code(), ErrorCode::kInvalidArgument);

    std::string big = MakeFile(tmp_, "big", 9 * kMiB, {8});
    auto too_much = Upload("v", big);
    ASSERT_FALSE(too_much.ok());
    EXPECT_NE(too_much.status().message().find("resize the volume first"), std::string::npos);
    EXPECT_NE(too_much.status().message().find("stays ILLEGAL"), std::string::npos);
    EXPECT_EQ(LegalityOf("v"), Legality::kIllegal) << "its data is incomplete";
    EXPECT_EQ(Download("v", out).code(), ErrorCode::kBusy) << "nobody reads an ILLEGAL volume";
    auto again = Upload("v", MakeFile(tmp_, "whole", 8 * kMiB, {2}));
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again->legality, Legality::kLegal) << "a whole upload makes it usable again";
    ExpectClean();
}

TEST_F(DataOpsTest, AnUnconfirmedEndLeavesTheVolumeIllegal)
{
    VolumeInfo v = MakeVolume("v", 4 * kMiB, VolumeFormat::kRaw, kMiB, 2);
    std::string payload = MakeFile(tmp_, "payload", 2 * kMiB, {1});
    auto aborted = Upload("v", payload, 0, 0, [](OpObserver *) {
        return Status::Error(ErrorCode::kCancelled, "the producer went away");
    });
    ASSERT_FALSE(aborted.ok());
    EXPECT_EQ(aborted.status().code(), ErrorCode::kCancelled);
    EXPECT_EQ(LegalityOf("v"), Legality::kIllegal);

    /* Nothing written (an empty stream, then the abort): the volume is what it was. */
    VolumeInfo w = MakeVolume("w", 4 * kMiB, VolumeFormat::kRaw, kMiB, 2);
    std::string before = FileSha256(w.path);
    auto empty = Upload("w", MakeFile(tmp_, "empty", 0, {}), 0, 0, [](OpObserver *) {
        return Status::Error(ErrorCode::kCancelled, "the producer went away");
    });
    ASSERT_FALSE(empty.ok());
    EXPECT_EQ(LegalityOf("w"), Legality::kLegal);
    EXPECT_EQ(FileSha256(w.path), before);
}

TEST_F(DataOpsTest, AHeldLeaseOrALayerRefusesTheWrite)
{
    VolumeInfo v = MakeVolume("v", 4 * kMiB, VolumeFormat::kRaw, kMiB, 4);
    std::string before = FileSha256(v.path);
    {
        LocalLeaseManager other(root_, 1 << 20);
        auto held = other.Acquire(LeaseArea::kLeases, v.slot, LeaseMode::kShared,
                                  std::chrono::milliseconds(0));
        ASSERT_TRUE(held.ok()) << held.status().ToString();
        auto up = Upload("v", MakeFile(tmp_, "p", kMiB, {0}));
        ASSERT_FALSE(up.ok());
        EXPECT_EQ(up.status().code(), ErrorCode::kBusy);
        EXPECT_NE(up.status().message().find("is in use"), std::string::npos);
        EXPECT_EQ(domain_->WipeVolume("v").status().code(), ErrorCode::kBusy);
        std::string out = tmp_.Sub("out");
        EXPECT_TRUE(Download("v", out).ok()) << "a shared holder lets readers in";
    }
    EXPECT_EQ(FileSha256(v.path), before);
    EXPECT_EQ(LegalityOf("v"), Legality::kLegal);

    MakeVolume("base", 4 * kMiB, VolumeFormat::kQcow2);
    CreateParams layer;
    layer.name = "layer";
    layer.format = VolumeFormat::kQcow2;
    layer.backing = "base";
    ASSERT_TRUE(domain_->CreateVolume(layer).ok());
    EXPECT_EQ(domain_->WipeVolume("base").status().code(), ErrorCode::kBusy)
        << "a backing volume's data is its layers' too";
    EXPECT_EQ(domain_->WipeVolume("layer").status().code(), ErrorCode::kUnsupported);
    ExpectClean();
}

TEST_F(DataOpsTest, Qcow2UploadMustBeAStandaloneQcow2)
{
    VolumeInfo q = MakeVolume("q", 8 * kMiB, VolumeFormat::kQcow2);
    std::string raw = MakeFile(tmp_, "data.raw", 24 * kMiB, {5});
    std::string image = tmp_.Sub("image.qcow2");
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "convert", "-O", "qcow2", raw, image}).exit_code, 0);
    auto up = Upload("q", image);
    ASSERT_TRUE(up.ok()) << up.status().ToString();
    EXPECT_EQ(up->capacity, 24 * kMiB) << "the image's virtual size";
    EXPECT_EQ(FileSha256(q.path), FileSha256(image));
    EXPECT_EQ(GuestSha256(*up), FileSha256(raw));

    std::string layered = tmp_.Sub("layered.qcow2");
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", image, layered})
                  .exit_code,
              0);
    auto bad = Upload("q", layered);
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("without a backing file"), std::string::npos)
        << bad.status().ToString();
    EXPECT_EQ(LegalityOf("q"), Legality::kIllegal);
}

TEST_F(DataOpsTest, WipeZeroesAndKeepsFormatSizeAndAllocation)
{
    VolumeInfo v = MakeVolume("v", 8 * kMiB, VolumeFormat::kRaw, 4 * kMiB, 5);
    VolumeInfo q = MakeVolume("q", 8 * kMiB, VolumeFormat::kQcow2, 4 * kMiB, 6);
    CreateParams full;
    full.name = "full";
    full.capacity = 4 * kMiB;
    full.prealloc = Preallocation::kFull;
    ASSERT_TRUE(domain_->CreateVolume(full).ok());
    WritePattern(domain_->LookupVolume("full")->path, 0, kMiB, 7);
    std::string zeros = MakeFile(tmp_, "zeros", 8 * kMiB, {});

    for (const char *name : {"v", "q", "full"}) {
        auto wiped = domain_->WipeVolume(name);
        ASSERT_TRUE(wiped.ok()) << name << ": " << wiped.status().ToString();
        EXPECT_EQ(wiped->legality, Legality::kLegal);
    }
    EXPECT_EQ(FileSha256(v.path), FileSha256(zeros));
    EXPECT_LT(AllocatedBytes(v.path), kMiB);
    auto info = qemu::Info(q.path);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->format, "qcow2");
    EXPECT_EQ(info->virtual_size, 8 * kMiB);
    EXPECT_EQ(GuestSha256(*domain_->LookupVolume("q")), FileSha256(zeros));
    VolumeInfo f = *domain_->LookupVolume("full");
    EXPECT_GE(AllocatedBytes(f.path), 4 * kMiB) << "a full volume stays allocated";
    EXPECT_EQ(FileSha256(f.path), FileSha256(MakeFile(tmp_, "zeros4", 4 * kMiB, {})));
    ExpectClean();
}

TEST_F(DataOpsTest, ImportCopiesAFileFromOutsideAsOneClone)
{
    std::string raw = MakeFile(tmp_, "src.raw", 12 * kMiB, {1, 8});
    int fd = open(raw.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ImportParams params;
    params.source_fd = fd;
    params.name = "imported";
    auto made = domain_->ImportVolume(params);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    EXPECT_EQ(made->capacity, 12 * kMiB);
    EXPECT_EQ(made->legality, Legality::kLegal);
    EXPECT_EQ(FileSha256(made->path), FileSha256(raw));
    EXPECT_LT(AllocatedBytes(made->path), 4 * kMiB) << "copied sparse";

    params.name = "grown-qcow2";
    params.format = VolumeFormat::kQcow2;
    params.capacity = 16 * kMiB;
    auto grown = domain_->ImportVolume(params);
    ASSERT_TRUE(grown.ok()) << grown.status().ToString();
    EXPECT_EQ(grown->capacity, 16 * kMiB);
    EXPECT_EQ(qemu::Info(grown->path)->virtual_size, 16 * kMiB);

    params.name = "small";
    params.capacity = kMiB;
    EXPECT_EQ(domain_->ImportVolume(params).status().code(), ErrorCode::kInvalidArgument);
    close(fd);

    std::string image = tmp_.Sub("src.qcow2");
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "convert", "-O", "qcow2", raw, image}).exit_code, 0);
    std::string layered = tmp_.Sub("layered.qcow2");
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "create", "-f", "qcow2", "-F", "qcow2", "-b", image, layered})
                  .exit_code,
              0);
    for (const std::string &file : {image, layered}) {
        ImportParams q;
        q.source_fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
        q.source_format = VolumeFormat::kQcow2;
        q.format = VolumeFormat::kRaw;
        q.name = file == image ? "from-qcow2" : "from-layer";
        auto result = domain_->ImportVolume(q);
        close(q.source_fd);
        if (file == image) {
            ASSERT_TRUE(result.ok()) << result.status().ToString();
            EXPECT_EQ(FileSha256(result->path), FileSha256(raw));
        } else {
            ASSERT_FALSE(result.ok());
            EXPECT_EQ(result.status().code(), ErrorCode::kUnsupported)
                << "a backing file names a file the caller never opened";
        }
    }
    ImportParams none;
    none.name = "none";
    EXPECT_EQ(domain_->ImportVolume(none).status().code(), ErrorCode::kInvalidArgument);
    auto names = domain_->ListVolumes();
    ASSERT_TRUE(names.ok());
    EXPECT_EQ(names->size(), 3u);
    ExpectClean();
}

TEST_F(DataOpsTest, RemoveTakesOnlyAnEmptyDomain)
{
    MakeVolume("v", kMiB);
    Status refused = domain_->Remove();
    EXPECT_EQ(refused.code(), ErrorCode::kBusy);
    EXPECT_NE(refused.message().find("delete them first"), std::string::npos) << refused.message();
    EXPECT_TRUE(Exists(root_ + "/domain.meta"));
    ASSERT_TRUE(domain_->DeleteVolume("v").ok());

    ASSERT_EQ(mkdir((root_ + "/tx/00000000-0000-0000-0000-000000000000-5").c_str(), 0755), 0);
    refused = domain_->Remove();
    EXPECT_EQ(refused.code(), ErrorCode::kBusy);
    EXPECT_NE(refused.message().find("pending transactions"), std::string::npos);
    ASSERT_EQ(rmdir((root_ + "/tx/00000000-0000-0000-0000-000000000000-5").c_str()), 0);

    ASSERT_TRUE(domain_->Remove().ok());
    domain_.reset();
    EXPECT_EQ(Entries(""), std::vector<std::string>{}) << "everything of the domain is gone";
    EXPECT_FALSE(Domain::Open(root_).ok());
    EXPECT_TRUE(Domain::Format(root_, FormatParams{}).ok()) << "the directory is reusable";
}

}  // namespace
}  // namespace sdm::testing
