/* A domain written by a hostile host. Each test plants one layout that libvirt-sdm never
 * writes (symlinks and hard links out of the domain in images/ and tx/, `..` in metadata
 * fields, metadata and markers that name files outside the domain or in another domain,
 * huge and negative sizes, FIFOs and device nodes where files belong), then runs every
 * engine operation over it: list, lookup, create, clone, delete, resize, GC and check.
 * None may crash, block, or read or write outside the domain: a canary file outside keeps
 * its content and mtime, a FIFO outside that would block whoever opened it stays unopened,
 * the directory outside gets no new entry, and another domain beside this one stays
 * byte-for-byte the same. Each operation that meets the planted entry gives a clear error
 * or skips it, and the consistency check reports it. An operation that blocks is reported
 * and released by opening the FIFOs it may wait on. docs/reliability.md publishes the
 * counts this prints. Engine level, single-threaded apart from the watchdog thread each
 * operation runs on. */
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <thread>

#include "backend/engine/layout.h"
#include "backend/engine/metadata.h"
#include "tests/support/domain_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;
/* Generous: an engine operation here takes milliseconds; one that takes this long is
 * blocked on a FIFO (or worse), which is the failure this limit exists to report. */
constexpr auto kBlockedAfter = std::chrono::seconds(8);
constexpr char kCanaryText[] = "canary: nothing of libvirt-sdm may read or write this\n";

/* What the operations over all the layouts came to. */
struct Tally {
    uint64_t layouts = 0;
    uint64_t operations = 0;
    uint64_t refused = 0;     /* an error naming the problem, or an entry skipped and reported */
    uint64_t blocked = 0;
};
Tally tally;

/* Every entry of a tree, not followed, with what identifies its content and times. */
void Snapshot(const std::string &dir, const std::string &rel, std::map<std::string, std::string> *out)
{
    g_autoptr(GDir) d = g_dir_open(dir.c_str(), 0, nullptr);
    while (const char *name = d ? g_dir_read_name(d) : nullptr) {
        std::string path = dir + "/" + name;
        struct stat st;
        if (lstat(path.c_str(), &st) != 0)
            continue;
        std::string id = std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " " +
                         std::to_string(st.st_mtim.tv_sec) + "." +
                         std::to_string(st.st_mtim.tv_nsec);
        if (S_ISREG(st.st_mode))
            id += " " + FileSha256(path);
        (*out)[rel + name] = id;
        if (S_ISDIR(st.st_mode))
            Snapshot(path, rel + name + "/", out);
    }
}

class HostileStorageTest : public DomainTest {
protected:
    void SetUp() override
    {
        /* A writer that meets a FIFO we release gets EPIPE, not a fatal SIGPIPE. */
        signal(SIGPIPE, SIG_IGN);
        ASSERT_NO_FATAL_FAILURE(DomainTest::SetUp());
        outside_ = tmp_.Sub("outside");
        ASSERT_EQ(mkdir(outside_.c_str(), 0755), 0);
        canary_ = outside_ + "/canary";
        WriteFile(canary_, kCanaryText);
        /* An old mtime, so that a write in the same second still shows. */
        struct timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
        ASSERT_EQ(utimensat(AT_FDCWD, canary_.c_str(), times, 0), 0);
        fifo_ = outside_ + "/fifo";
        ASSERT_EQ(mkfifo(fifo_.c_str(), 0600), 0);
        fifos_.push_back(fifo_);
        outside_qcow2_ = outside_ + "/disk.qcow2";
        ASSERT_EQ(sdm::testing::Run({"qemu-img", "create", "-q", "-f", "qcow2", outside_qcow2_, "1M"}).exit_code,
                  0);
        ASSERT_EQ(utimensat(AT_FDCWD, outside_qcow2_.c_str(), times, 0), 0);

        /* Another domain beside this one, with a volume. */
        other_root_ = tmp_.Sub("other");
        ASSERT_EQ(mkdir(other_root_.c_str(), 0755), 0);
        ASSERT_TRUE(Domain::Format(other_root_, FormatParams{}).ok());
        {
            auto other = Domain::Open(other_root_);
            ASSERT_TRUE(other.ok()) << other.status().ToString();
            auto v = (*other)->CreateVolume({"theirs", kMiB});
            ASSERT_TRUE(v.ok()) << v.status().ToString();
            other_volume_ = *v;
            WritePattern(v->path, 0, kMiB, 5);
        }

        good_ = MakeVolume("good", 2 * kMiB, VolumeFormat::kRaw, kMiB, 3);
        good_sum_ = FileSha256(good_.path);
        victim_ = MakeVolume("victim", 2 * kMiB, VolumeFormat::kRaw, kMiB, 4);
        ASSERT_NO_FATAL_FAILURE(TakeSnapshots());
    }

    void TearDown() override
    {
        if (!domain_)
            return;
        /* Whatever the layout, these hold after every operation ran over it. */
        ExpectNothingOutsideChanged();
        auto good = domain_->LookupVolume("good");
        ASSERT_TRUE(good.ok()) << good.status().ToString();
        EXPECT_EQ(FileSha256(good->path), good_sum_) << "a bystander volume changed";
    }

    void TakeSnapshots()
    {
        outside_before_.clear();
        other_before_.clear();
        Snapshot(outside_, "", &outside_before_);
        Snapshot(other_root_, "", &other_before_);
    }

    void ExpectNothingOutsideChanged()
    {
        std::map<std::string, std::string> outside, other;
        Snapshot(outside_, "", &outside);
        Snapshot(other_root_, "", &other);
        EXPECT_EQ(outside, outside_before_) << "something outside the domain changed";
        EXPECT_EQ(other, other_before_) << "another domain changed";
        EXPECT_EQ(ReadFile(canary_), kCanaryText);
    }

    /* Runs `op` on a watchdog thread: a blocked operation is a failure, released by
     * opening every planted FIFO from here. The operation's Status. */
    Status Guarded(const std::string &what, const std::function<Status()> &op)
    {
        tally.operations++;
        std::packaged_task<Status()> task(op);
        auto done = task.get_future();
        std::thread runner(std::move(task));
        if (done.wait_for(kBlockedAfter) != std::future_status::ready) {
            tally.blocked++;
            ADD_FAILURE() << what << " blocked (it opened a FIFO, or waits on one)";
            while (done.wait_for(std::chrono::milliseconds(200)) != std::future_status::ready) {
                for (const auto &fifo : fifos_) {
                    int fd = open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
                    if (fd >= 0)
                        close(fd);
                }
            }
        }
        runner.join();
        Status status = done.get();
        if (!status.ok()) {
            tally.refused++;
            EXPECT_FALSE(status.message().empty()) << what << ": an error without a message";
        }
        return status;
    }

    /* Every engine operation, those that name a volume on `target`. Each result by
     * operation; the check's report in check_. */
    std::map<std::string, Status> RunEverything(const std::string &target)
    {
        tally.layouts++;
        std::map<std::string, Status> results;
        auto result_of = [](const auto &r) { return r.ok() ? Status::Ok() : r.status(); };
        results["list"] = Guarded("list", [&] { return result_of(domain_->ListVolumes()); });
        results["lookup"] =
            Guarded("lookup", [&] { return result_of(domain_->LookupVolume(target)); });
        /* Check and collect first, while the planted entry is as planted. */
        results["gc"] = Guarded("gc", [&] {
            auto report = domain_->CollectGarbage();
            if (report.ok())
                gc_ = *report;
            return result_of(report);
        });
        results["check"] = Guarded("check", [&] {
            auto report = domain_->Check();
            if (report.ok())
                check_ = *report;
            return result_of(report);
        });
        results["create"] = Guarded("create", [&] {
            return result_of(domain_->CreateVolume({"fresh", kMiB}));
        });
        results["clone"] = Guarded("clone", [&] {
            CloneParams params;
            params.source = target;
            params.name = "copy";
            return result_of(domain_->CloneVolume(params));
        });
        results["clone-qcow2"] = Guarded("clone to qcow2", [&] {
            CloneParams params;
            params.source = target;
            params.name = "copy-q";
            params.format = VolumeFormat::kQcow2;
            return result_of(domain_->CloneVolume(params));
        });
        results["resize"] = Guarded("resize", [&] {
            auto v = domain_->LookupVolume(target);
            uint64_t to = v.ok() ? v->capacity + kMiB : 8 * kMiB;
            return result_of(domain_->ResizeVolume(target, to));
        });
        results["delete"] = Guarded("delete", [&] { return domain_->DeleteVolume(target); });
        /* A fresh handle (another process's view) sees the same domain without crashing. */
        domain_ = OpenAgain();
        return results;
    }

    std::string ImageDir(const VolumeInfo &v) const { return root_ + "/images/" + v.image; }
    std::string MetaPath(const VolumeInfo &v) const
    {
        return ImageDir(v) + "/" + layout::MetaFile(v.uuid);
    }

    /* Rewrites a volume's metadata with `changes`, with a valid checksum: a file only a
     * hostile host (not a torn write) makes. */
    void RewriteMeta(const std::string &path, const std::vector<std::pair<std::string, std::string>> &changes,
                     const char *kind = "VOLUME")
    {
        auto doc = meta::Parse(ReadFile(path), kind, path);
        ASSERT_TRUE(doc.ok()) << doc.status().ToString();
        for (const auto &[key, value] : changes)
            doc->Set(key, value);
        WriteFile(path, meta::Serialize(*doc));
    }

    /* Replaces a file with what `plant` makes at its path. */
    void Replace(const std::string &path, const std::function<int(const char *)> &plant)
    {
        ASSERT_EQ(unlink(path.c_str()), 0) << path;
        ASSERT_EQ(plant(path.c_str()), 0) << path << ": " << strerror(errno);
    }

    /* The check names the planted entry. */
    void ExpectCheckReports(const std::string &needle)
    {
        std::string all;
        for (const auto &p : check_.problems)
            all += p + "\n";
        EXPECT_NE(all.find(needle), std::string::npos)
            << "check does not report " << needle << ":\n" << all;
    }

    /* A new transaction directory (its name as the engine makes them) of a dead owner. */
    static std::string TxName(uint64_t slot)
    {
        return layout::TxDirName({layout::NewUuid(), slot, {1999, layout::NewIncarnation()}});
    }
    std::string TxDir(uint64_t slot)
    {
        std::string name = TxName(slot);
        std::string path = root_ + "/tx/" + name;
        EXPECT_EQ(mkdir(path.c_str(), 0755), 0);
        return path;
    }

    std::string outside_, canary_, fifo_, outside_qcow2_, other_root_;
    std::vector<std::string> fifos_;
    VolumeInfo other_volume_, good_, victim_;
    std::string good_sum_;
    std::map<std::string, std::string> outside_before_, other_before_;
    GcReport gc_;
    CheckReport check_;
};

TEST_F(HostileStorageTest, DataFileSymlinkedToAFileOutside)
{
    Replace(victim_.path, [&](const char *p) { return symlink(canary_.c_str(), p); });
    auto r = RunEverything("victim");
    EXPECT_FALSE(r["clone"].ok());
    EXPECT_FALSE(r["clone-qcow2"].ok());
    EXPECT_FALSE(r["resize"].ok());
    ExpectCheckReports(victim_.uuid);
}

TEST_F(HostileStorageTest, Qcow2DataFileSymlinkedToAFifoOutside)
{
    auto q = domain_->CreateVolume({"victim-q", kMiB, VolumeFormat::kQcow2});
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    Replace(q->path, [&](const char *p) { return symlink(fifo_.c_str(), p); });
    auto r = RunEverything("victim-q");
    EXPECT_FALSE(r["clone"].ok());
    EXPECT_FALSE(r["resize"].ok());
    ExpectCheckReports(q->uuid);
}

TEST_F(HostileStorageTest, Qcow2DataFileSymlinkedToAnImageOutside)
{
    auto q = domain_->CreateVolume({"victim-q", kMiB, VolumeFormat::kQcow2});
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    Replace(q->path, [&](const char *p) { return symlink(outside_qcow2_.c_str(), p); });
    auto r = RunEverything("victim-q");
    EXPECT_FALSE(r["resize"].ok()) << "qemu-img resized the image outside the domain";
    ExpectCheckReports(q->uuid);
}

TEST_F(HostileStorageTest, Qcow2BackingFileOutside)
{
    /* A qcow2 volume whose header names a backing file outside the domain: qemu-img
     * would read it for any guest-visible copy. */
    auto q = domain_->CreateVolume({"victim-q", kMiB, VolumeFormat::kQcow2});
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    ASSERT_EQ(unlink(q->path.c_str()), 0);
    ASSERT_EQ(sdm::testing::Run({"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", fifo_, "-F", "raw",
                   q->path, "1M"})
                  .exit_code,
              0);
    auto r = RunEverything("victim-q");
    EXPECT_FALSE(r["clone"].ok()) << "the clone read a backing file outside the domain";
}

TEST_F(HostileStorageTest, DataFileHardLinkedToAFileOutside)
{
    Replace(victim_.path, [&](const char *p) { return link(canary_.c_str(), p); });
    auto r = RunEverything("victim");
    EXPECT_FALSE(r["resize"].ok()) << "the resize wrote through a hard link";
}

TEST_F(HostileStorageTest, FifoAndDeviceNodesAsDataFiles)
{
    Replace(victim_.path, [&](const char *p) { return mkfifo(p, 0600); });
    fifos_.push_back(victim_.path);
    auto dev = MakeVolume("victim-dev", kMiB);
    Replace(dev.path, [&](const char *p) { return mknod(p, S_IFCHR | 0600, makedev(1, 5)); });
    auto r = RunEverything("victim");
    EXPECT_FALSE(r["clone"].ok());
    EXPECT_FALSE(r["resize"].ok());
    ExpectCheckReports(victim_.uuid);
    auto d = RunEverything("victim-dev");
    EXPECT_FALSE(d["clone"].ok()) << "the clone read a device node";
    EXPECT_FALSE(d["resize"].ok()) << "the resize wrote to a device node";
}

TEST_F(HostileStorageTest, FifoAndSymlinkAsMetadataFiles)
{
    std::string meta = MetaPath(victim_);
    Replace(meta, [&](const char *p) { return mkfifo(p, 0600); });
    fifos_.push_back(meta);
    std::string good_meta = MetaPath(good_);
    auto r = RunEverything("victim");
    EXPECT_FALSE(r["lookup"].ok());
    ExpectCheckReports(victim_.uuid);
    /* And one symlinked out of the domain, on a volume of its own. */
    auto other = MakeVolume("victim2", kMiB);
    Replace(MetaPath(other), [&](const char *p) { return symlink(canary_.c_str(), p); });
    auto s = RunEverything("victim2");
    EXPECT_FALSE(s["lookup"].ok());
    (void)good_meta;
}

TEST_F(HostileStorageTest, ImageDirectorySymlinkedOutside)
{
    /* A copy of the victim's image outside, its directory in images/ a symlink to it. */
    std::string copy = outside_ + "/image";
    ASSERT_EQ(sdm::testing::Run({"cp", "-a", ImageDir(victim_), copy}).exit_code, 0);
    ASSERT_EQ(sdm::testing::Run({"rm", "-rf", ImageDir(victim_)}).exit_code, 0);
    ASSERT_EQ(symlink(copy.c_str(), ImageDir(victim_).c_str()), 0);
    ASSERT_NO_FATAL_FAILURE(TakeSnapshots());
    auto r = RunEverything("victim");
    EXPECT_FALSE(r["lookup"].ok());
    EXPECT_FALSE(r["clone"].ok());
    EXPECT_FALSE(r["resize"].ok());
    ExpectCheckReports(victim_.image);
}

TEST_F(HostileStorageTest, IndexEntriesPointingOutside)
{
    std::string images = root_ + "/images/";
    ASSERT_EQ(symlink("../../outside/canary", (images + "@evil").c_str()), 0);
    ASSERT_EQ(symlink(canary_.c_str(), (images + "@evil-abs").c_str()), 0);
    ASSERT_EQ(symlink("../../outside", (images + "999").c_str()), 0);
    /* The victim's own entry retargeted through `..`. */
    ASSERT_EQ(unlink((images + "@victim").c_str()), 0);
    std::string dotdot = victim_.image + "/../../../outside/image/" + victim_.uuid;
    ASSERT_EQ(symlink(dotdot.c_str(), (images + "@victim").c_str()), 0);
    for (const char *name : {"evil", "evil-abs", "victim"}) {
        auto r = RunEverything(name);
        EXPECT_FALSE(r["lookup"].ok()) << name;
        EXPECT_FALSE(r["clone"].ok()) << name;
        EXPECT_FALSE(r["resize"].ok()) << name;
    }
    ExpectCheckReports("@evil");
}

TEST_F(HostileStorageTest, DotDotAndForeignPathsInsideMetadata)
{
    std::string meta = MetaPath(victim_);
    std::string original = ReadFile(meta);
    const std::vector<std::vector<std::pair<std::string, std::string>>> variants = {
        {{"name", "../../outside/canary"}},
        {{"name", ".."}},
        {{"uuid", "../../../outside/canary"}},
        {{"image", "../../other/images/" + other_volume_.image}},
        {{"image", other_volume_.image}, {"uuid", other_volume_.uuid}},
        {{"parent", "../../../outside/canary"}},
        {{"format", "qcow2"}, {"parent", other_volume_.uuid}},
    };
    for (const auto &changes : variants) {
        SCOPED_TRACE(changes.front().first + "=" + changes.front().second);
        WriteFile(meta, original);
        ASSERT_NO_FATAL_FAILURE(RewriteMeta(meta, changes));
        auto r = RunEverything("victim");
        EXPECT_FALSE(r["clone"].ok());
        EXPECT_FALSE(r["resize"].ok());
        EXPECT_FALSE(check_.ok()) << "check found nothing wrong";
        if (!domain_->LookupVolume("good").ok())
            break;
    }
}

TEST_F(HostileStorageTest, HugeAndNegativeSizes)
{
    std::string meta = MetaPath(victim_);
    std::string original = ReadFile(meta);
    for (const char *capacity : {"18446744073709551615", "-1", "-9223372036854775808",
                                 "99999999999999999999999", "0", "1e9", " 1"}) {
        SCOPED_TRACE(capacity);
        WriteFile(meta, original);
        ASSERT_NO_FATAL_FAILURE(RewriteMeta(meta, {{"capacity", capacity}}));
        auto r = RunEverything("victim");
        EXPECT_FALSE(r["lookup"].ok());
        EXPECT_FALSE(r["resize"].ok());
        ExpectCheckReports(victim_.uuid);
    }
    /* A resize marker whose sizes are absurd: the GC must not act on them. */
    WriteFile(meta, original);
    domain_ = OpenAgain();
    for (const char *size : {"18446744073709551615", "-1"}) {
        std::string tx = TxDir(victim_.slot);
        meta::Marker m;
        m.txid = tx.substr(tx.rfind('/') + 1, 36);
        m.op = meta::TxOp::kResize;
        m.slot = victim_.slot;
        m.image = victim_.image;
        m.volume = victim_.uuid;
        m.name = "victim";
        m.old_capacity = 2 * kMiB;
        m.new_capacity = 4 * kMiB;
        WriteFile(tx + "/" + layout::kMarker, meta::Encode(m));
        ASSERT_NO_FATAL_FAILURE(
            RewriteMeta(tx + "/" + layout::kMarker, {{"old_capacity", size}}, "MARKER"));
        RunEverything("victim");
        EXPECT_GT(gc_.errors + gc_.collected, 0u) << "the GC did not look at the marker";
    }
}

TEST_F(HostileStorageTest, MarkersNamingFilesOutsideAndInAnotherDomain)
{
    struct Plant {
        meta::TxOp op;
        std::string image, volume, name;
        bool new_image;
    };
    const std::vector<Plant> plants = {
        /* Another domain's image and volume, by uuid: a delete of the whole image. */
        {meta::TxOp::kDelete, other_volume_.image, other_volume_.uuid, "theirs", true},
        {meta::TxOp::kDelete, other_volume_.image, other_volume_.uuid, "theirs", false},
        {meta::TxOp::kCreate, other_volume_.image, other_volume_.uuid, "theirs", false},
        {meta::TxOp::kResize, other_volume_.image, other_volume_.uuid, "theirs", false},
        /* Paths out of the domain in its fields. */
        {meta::TxOp::kDelete, "../../other/images/" + other_volume_.image, "..", "x", false},
        {meta::TxOp::kDelete, "..", "..", "../../outside/canary", true},
        {meta::TxOp::kClone, "../../outside", "canary", "victim", false},
    };
    uint64_t slot = 500;
    for (const auto &p : plants) {
        std::string tx = TxDir(slot);
        meta::Marker m;
        m.txid = tx.substr(tx.rfind('/') + 1, 36);
        m.op = p.op;
        m.slot = slot++;
        m.image = other_volume_.image;
        m.volume = other_volume_.uuid;
        m.name = "theirs";
        m.new_image = p.new_image;
        m.old_capacity = kMiB;
        m.new_capacity = 2 * kMiB;
        WriteFile(tx + "/" + layout::kMarker, meta::Encode(m));
        ASSERT_NO_FATAL_FAILURE(RewriteMeta(tx + "/" + layout::kMarker,
                                            {{"image", p.image}, {"volume", p.volume},
                                             {"name", p.name}},
                                            "MARKER"));
    }
    /* And one that is a symlink to a transaction directory outside, one whose marker is
     * a symlink to the canary, and one holding links to files outside as its garbage. */
    std::string fake_tx = outside_ + "/tx";
    ASSERT_EQ(mkdir(fake_tx.c_str(), 0755), 0);
    WriteFile(fake_tx + "/" + layout::kMarker, "SDM-MARKER 1\n");
    ASSERT_EQ(symlink(fake_tx.c_str(),
                      (root_ + "/tx/" + TxName(slot++)).c_str()),
              0);
    std::string tx = TxDir(slot++);
    ASSERT_EQ(symlink(canary_.c_str(), (tx + "/" + layout::kMarker).c_str()), 0);
    tx = TxDir(slot++);
    ASSERT_EQ(link(canary_.c_str(), (tx + "/garbage").c_str()), 0);
    ASSERT_EQ(symlink(outside_.c_str(), (tx + "/dir").c_str()), 0);
    ASSERT_EQ(symlink(fifo_.c_str(), (tx + "/fifo").c_str()), 0);
    ASSERT_NO_FATAL_FAILURE(TakeSnapshots());
    /* The link in tx/ adds a name to the canary's inode (its ctime, not its mtime). */
    RunEverything("victim");
    EXPECT_GE(gc_.markers_seen, plants.size() + 3) << ::testing::PrintToString(gc_.lines);
    EXPECT_GT(gc_.errors, 0u) << "the GC acted on every hostile marker: "
                              << ::testing::PrintToString(gc_.lines);
    RunEverything("victim");
    auto theirs = Domain::Open(other_root_);
    ASSERT_TRUE(theirs.ok());
    auto v = (*theirs)->LookupVolume("theirs");
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    auto report = (*theirs)->Check();
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok()) << ::testing::PrintToString(report->problems);
}

TEST_F(HostileStorageTest, DeepTreeAndStrayEntries)
{
    /* Deeper than the engine ever nests, in a transaction, and strays where only the
     * engine's own names belong. */
    std::string tx = TxDir(700);
    std::string deep = tx;
    for (int i = 0; i < 40; i++) {
        deep += "/d";
        ASSERT_EQ(mkdir(deep.c_str(), 0755), 0);
    }
    ASSERT_EQ(mkfifo((root_ + "/images/stray-fifo").c_str(), 0600), 0);
    fifos_.push_back(root_ + "/images/stray-fifo");
    ASSERT_EQ(mkfifo((root_ + "/tx/not-a-transaction").c_str(), 0600), 0);
    fifos_.push_back(root_ + "/tx/not-a-transaction");
    ASSERT_EQ(mkfifo((ImageDir(victim_) + "/" + layout::NewUuid() + ".meta").c_str(), 0600), 0);
    auto r = RunEverything("victim");
    EXPECT_TRUE(r["list"].ok()) << r["list"].ToString();
    EXPECT_FALSE(check_.ok());
}

/* Prints what every layout came to, for docs/reliability.md. */
class Figures : public ::testing::Environment {
public:
    void TearDown() override
    {
        printf("hostile storage: layouts=%llu operations=%llu refused=%llu blocked=%llu\n",
               static_cast<unsigned long long>(tally.layouts),
               static_cast<unsigned long long>(tally.operations),
               static_cast<unsigned long long>(tally.refused),
               static_cast<unsigned long long>(tally.blocked));
    }
};
const auto *const kFigures = ::testing::AddGlobalTestEnvironment(new Figures);

}  // namespace
}  // namespace sdm::testing
