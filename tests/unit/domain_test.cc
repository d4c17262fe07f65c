/* The engine's operations on one host: format and open, create (raw sparse, raw
 * preallocated, qcow2, snapshot layers), clone, delete, resize, lookup and list, each with
 * its bad inputs. Storage is examined directly after each operation. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "backend/engine/layout.h"
#include "backend/engine/local_lease.h"
#include "backend/engine/metadata.h"
#include "backend/engine/qemu_img.h"
#include "tests/support/domain_fixture.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kMiB = 1 << 20;

/* Holds a volume's lease the way a VM's lock manager would, from another open file. */
class LeaseHolder {
public:
    LeaseHolder(const std::string &root, uint64_t slot, LeaseMode mode)
        : manager_(root, kMiB)
    {
        auto handle = manager_.Acquire(LeaseArea::kLeases, slot, mode, std::chrono::milliseconds(0));
        EXPECT_TRUE(handle.ok()) << handle.status().ToString();
        if (handle.ok())
            handle_ = std::move(*handle);
    }

private:
    LocalLeaseManager manager_;
    std::unique_ptr<LeaseHandle> handle_;
};

class Recorder : public OpObserver {
public:
    void OnStep(const std::string &step) override { steps.push_back(step); }
    void OnProgress(uint64_t d, uint64_t t) override
    {
        done = d;
        total = t;
        calls++;
    }
    bool CancelRequested() override
    {
        return !cancel_at.empty() && !steps.empty() && steps.back() == cancel_at;
    }
    std::vector<std::string> steps;
    std::string cancel_at;
    uint64_t done = 0, total = 0, calls = 0;
};

TEST(FormatTest, FormatsEmptyDirectoryAndOpens)
{
    TempDir tmp;
    auto info = Domain::Format(tmp.path(), FormatParams{});
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_TRUE(layout::IsUuid(info->uuid));
    for (const char *entry : {"domain.meta", "images", "tx", "ids", "leases"})
        EXPECT_TRUE(Exists(tmp.Sub(entry))) << entry;
    auto domain = Domain::Open(tmp.path());
    ASSERT_TRUE(domain.ok()) << domain.status().ToString();
    EXPECT_EQ((*domain)->info().uuid, info->uuid);
    EXPECT_EQ((*domain)->info().alignment, kMiB);
}

TEST(FormatTest, RefusesNonEmptyAndAlreadyFormatted)
{
    TempDir tmp;
    WriteFile(tmp.Sub("precious.img"), "data");
    auto refused = Domain::Format(tmp.path(), FormatParams{});
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(refused.status().message().find("precious.img"), std::string::npos);
    EXPECT_EQ(ReadFile(tmp.Sub("precious.img")), "data") << "nothing lost";

    TempDir fresh;
    auto first = Domain::Format(fresh.path(), FormatParams{});
    ASSERT_TRUE(first.ok());
    auto again = Domain::Format(fresh.path(), FormatParams{});
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), ErrorCode::kAlreadyExists);
    EXPECT_NE(again.status().message().find(first->uuid), std::string::npos);
}

/* pool-build on a second host formats a domain that already holds volumes: their root
 * links list before or after the metadata, and either way the answer is "already a domain"
 * (the shim accepts that), never "not empty". */
TEST(FormatTest, AnsweringAlreadyFormattedWhateverTheDirectoryOrder)
{
    TempDir tmp;
    auto first = Domain::Format(tmp.path(), FormatParams{});
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    {
        auto domain = Domain::Open(tmp.path());
        ASSERT_TRUE(domain.ok()) << domain.status().ToString();
        for (int i = 0; i < 40; i++) {
            auto made = (*domain)->CreateVolume(
                CreateParams{.name = "vol" + std::to_string(i), .capacity = 1 << 20}, nullptr);
            ASSERT_TRUE(made.ok()) << made.status().ToString();
        }
    }
    auto again = Domain::Format(tmp.path(), FormatParams{});
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), ErrorCode::kAlreadyExists) << again.status().ToString();
    EXPECT_NE(again.status().message().find(first->uuid), std::string::npos);
}

TEST(FormatTest, FinishesAnInterruptedFormat)
{
    TempDir tmp;
    for (const char *dir : {"images", "tx"})
        ASSERT_EQ(mkdir(tmp.Sub(dir).c_str(), 0755), 0);
    WriteFile(tmp.Sub("leases"), "");
    EXPECT_TRUE(Domain::Format(tmp.path(), FormatParams{}).ok());
}

TEST(FormatTest, RejectsBadParametersAndMissingDirectory)
{
    TempDir tmp;
    FormatParams p;
    p.sector_size = 1000;
    EXPECT_EQ(Domain::Format(tmp.path(), p).status().code(), ErrorCode::kInvalidArgument);
    p = {};
    p.alignment = 3 * kMiB;
    EXPECT_EQ(Domain::Format(tmp.path(), p).status().code(), ErrorCode::kInvalidArgument);
    p = {};
    p.io_timeout = 0;
    EXPECT_EQ(Domain::Format(tmp.path(), p).status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(Domain::Format(tmp.Sub("missing"), FormatParams{}).status().code(),
              ErrorCode::kNotFound);
}

TEST(FormatTest, OpenRefusesNonDomainsAndNewerVersions)
{
    TempDir tmp;
    auto none = Domain::Open(tmp.path());
    ASSERT_FALSE(none.ok());
    EXPECT_EQ(none.status().code(), ErrorCode::kNotFound);
    EXPECT_NE(none.status().message().find("not a storage domain"), std::string::npos);

    ASSERT_TRUE(Domain::Format(tmp.path(), FormatParams{}).ok());
    std::string text = ReadFile(tmp.Sub("domain.meta"));
    auto doc = meta::Parse(text, "DOMAIN", "domain.meta");
    ASSERT_TRUE(doc.ok());
    doc->version = meta::kFormatVersion + 1;
    WriteFile(tmp.Sub("domain.meta"), meta::Serialize(*doc));
    auto newer = Domain::Open(tmp.path());
    ASSERT_FALSE(newer.ok());
    EXPECT_EQ(newer.status().code(), ErrorCode::kUnsupported);
    EXPECT_NE(newer.status().message().find("newer"), std::string::npos);

    WriteFile(tmp.Sub("domain.meta"), text.substr(0, text.size() / 2));
    EXPECT_EQ(Domain::Open(tmp.path()).status().code(), ErrorCode::kCorrupt);
}

TEST_F(DomainTest, CreateRawSparse)
{
    Recorder rec;
    CreateParams p;
    p.name = "disk one";
    p.capacity = 1024 * kMiB;
    auto v = domain_->CreateVolume(p, &rec);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->name, "disk one");
    EXPECT_EQ(v->capacity, 1024 * kMiB);
    EXPECT_EQ(v->legality, Legality::kLegal);
    EXPECT_TRUE(v->leaf);
    EXPECT_GE(v->slot, 1u);
    struct stat st;
    ASSERT_EQ(stat(v->path.c_str(), &st), 0);
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), 1024 * kMiB);
    EXPECT_LT(AllocatedBytes(v->path), kMiB) << "sparse";
    EXPECT_EQ(st.st_mode & 0777, 0660u);
    EXPECT_EQ(v->path, root_ + "/images/" + v->image + "/" + v->uuid);
    EXPECT_TRUE(Exists(root_ + "/images/@disk one"));
    EXPECT_FALSE(Exists(root_ + "/images/" + std::to_string(v->slot))) << "no slot index";
    char *resolved = realpath((root_ + "/images/@disk one").c_str(), nullptr);
    ASSERT_NE(resolved, nullptr);
    EXPECT_EQ(std::string(resolved), v->path)
        << "the index entry is a working relative link for administrators";
    free(resolved);
    std::vector<std::string> expected = {"create.begin", "create.marker", "create.image-dir",
                                         "create.metadata", "create.data", "create.claim",
                                         "create.durable", "create.commit", "create.index",
                                         "create.done"};
    EXPECT_EQ(rec.steps, expected);
    auto found = domain_->LookupVolume("disk one");
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(found->uuid, v->uuid);
    ExpectClean();
}

TEST_F(DomainTest, PlannedIdentityIsTheOneCreated)
{
    CreateParams p;
    p.name = "planned";
    p.capacity = 64 * kMiB;
    auto plan = domain_->PlanVolume(p);
    ASSERT_TRUE(plan.ok()) << plan.status().ToString();
    EXPECT_FALSE(Exists(plan->path)) << "planning touches no storage";
    EXPECT_EQ(plan->path, root_ + "/images/" + plan->image + "/" + plan->uuid);
    p.uuid = plan->uuid;
    p.image = plan->image;
    auto v = domain_->CreateVolume(p);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->uuid, plan->uuid);
    EXPECT_EQ(v->path, plan->path);

    CreateParams layer;
    layer.name = "planned layer";
    layer.format = VolumeFormat::kQcow2;
    layer.backing = "planned";
    auto layer_plan = domain_->PlanVolume(layer);
    ASSERT_TRUE(layer_plan.ok()) << layer_plan.status().ToString();
    EXPECT_EQ(layer_plan->image, v->image) << "a layer lives in its backing volume's image";
    EXPECT_EQ(layer_plan->parent, v->uuid);

    CreateParams bad = layer;
    bad.image = plan->uuid; /* a well-formed UUID that is not the backing's image */
    auto refused = domain_->CreateVolume(bad);
    EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(refused.status().message().find("plan the volume again"), std::string::npos);

    for (const char *id : {"not-a-uuid", "../../etc", "ABCDEF00-0000-0000-0000-000000000000"}) {
        CreateParams odd;
        odd.name = "odd";
        odd.capacity = kMiB;
        odd.uuid = id;
        EXPECT_EQ(domain_->CreateVolume(odd).status().code(), ErrorCode::kInvalidArgument) << id;
        CloneParams clone;
        clone.source = "planned";
        clone.name = "odd clone";
        clone.image = id;
        EXPECT_EQ(domain_->CloneVolume(clone).status().code(), ErrorCode::kInvalidArgument)
            << id;
    }
    EXPECT_EQ(domain_->PlanVolume(CreateParams{.name = "a/b"}).status().code(),
              ErrorCode::kInvalidArgument);
    CreateParams orphan;
    orphan.name = "orphan";
    orphan.backing = "no such volume";
    EXPECT_EQ(domain_->PlanVolume(orphan).status().code(), ErrorCode::kNotFound);
    ExpectClean();
}

/* <domain>/<name> is the volume's data file for tools that take a dir pool's volume path to
 * be <pool>/<name> (virt-install): a root link that follows the index and never fails an
 * operation. */
TEST_F(DomainTest, RootLinksFollowTheIndex)
{
    auto v = domain_->CreateVolume(CreateParams{.name = "web disk", .capacity = kMiB});
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    char *resolved = realpath((root_ + "/web disk").c_str(), nullptr);
    ASSERT_NE(resolved, nullptr) << "the root link exists";
    EXPECT_EQ(std::string(resolved), v->path);
    free(resolved);

    /* Names the root needs itself get no link, and the domain's own files are untouched. */
    std::string meta_before = ReadFile(root_ + "/domain.meta");
    for (const char *name : {"images", "tx", "ids", "leases", "domain.meta", "x.tmp"}) {
        auto odd = domain_->CreateVolume(CreateParams{.name = name, .capacity = kMiB});
        ASSERT_TRUE(odd.ok()) << name << ": " << odd.status().ToString();
    }
    EXPECT_EQ(ReadFile(root_ + "/domain.meta"), meta_before);
    struct stat st;
    ASSERT_EQ(lstat((root_ + "/images").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));

    /* Something of the user's in a volume's place stays; the create still succeeds. */
    WriteFile(root_ + "/precious", "user data");
    ASSERT_TRUE(domain_->CreateVolume(CreateParams{.name = "precious", .capacity = kMiB}).ok());
    EXPECT_EQ(ReadFile(root_ + "/precious"), "user data");
    auto report = domain_->Check();
    ASSERT_TRUE(report.ok());
    ASSERT_EQ(report->problems.size(), 1u) << "the user's file is reported, nothing else";
    EXPECT_NE(report->problems[0].find("precious"), std::string::npos);
    unlink((root_ + "/precious").c_str());

    ASSERT_TRUE(domain_->DeleteVolume("web disk").ok());
    EXPECT_NE(lstat((root_ + "/web disk").c_str(), &st), 0) << "the link goes with the volume";
    /* A stale link (its volume gone behind the engine's back) is replaced by a new volume. */
    ASSERT_EQ(symlink("images/00000000-0000-0000-0000-000000000000/"
                      "00000000-0000-0000-0000-000000000000",
                      (root_ + "/reborn").c_str()),
              0);
    auto reborn = domain_->CreateVolume(CreateParams{.name = "reborn", .capacity = kMiB});
    ASSERT_TRUE(reborn.ok());
    resolved = realpath((root_ + "/reborn").c_str(), nullptr);
    ASSERT_NE(resolved, nullptr);
    EXPECT_EQ(std::string(resolved), reborn->path);
    free(resolved);
    ExpectClean();
}

TEST_F(DomainTest, CreateRawPreallocatedAndQcow2)
{
    CreateParams p;
    p.name = "full";
    p.capacity = 8 * kMiB;
    p.prealloc = Preallocation::kFull;
    auto full = domain_->CreateVolume(p);
    ASSERT_TRUE(full.ok()) << full.status().ToString();
    EXPECT_GE(AllocatedBytes(full->path), 8 * kMiB);

    p.name = "q";
    p.capacity = 64 * kMiB;
    p.format = VolumeFormat::kQcow2;
    p.prealloc = Preallocation::kMetadata;
    auto q = domain_->CreateVolume(p);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    auto info = qemu::Info(q->path);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->format, "qcow2");
    EXPECT_EQ(info->virtual_size, 64 * kMiB);
    ExpectClean();
}

TEST_F(DomainTest, SnapshotLayerChainsAndProtectsItsBase)
{
    VolumeInfo base = MakeVolume("base", 16 * kMiB, VolumeFormat::kQcow2, 4 * kMiB);
    std::string before = GuestSha256(base);
    CreateParams p;
    p.name = "top";
    p.format = VolumeFormat::kQcow2;
    p.backing = "base";
    auto top = domain_->CreateVolume(p);
    ASSERT_TRUE(top.ok()) << top.status().ToString();
    EXPECT_EQ(top->image, base.image);
    EXPECT_EQ(top->parent, base.uuid);
    EXPECT_EQ(top->capacity, base.capacity);
    auto info = qemu::Info(top->path);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->backing_filename, base.uuid);
    EXPECT_EQ(GuestSha256(*top), before) << "the layer reads through to its base";
    auto base_now = domain_->LookupVolume("base");
    ASSERT_TRUE(base_now.ok());
    EXPECT_FALSE(base_now->leaf);

    Status refused = domain_->DeleteVolume("base");
    EXPECT_EQ(refused.code(), ErrorCode::kBusy);
    EXPECT_NE(refused.message().find("'top'"), std::string::npos) << refused.message();
    EXPECT_TRUE(domain_->DeleteVolume("top").ok());
    EXPECT_TRUE(Exists(base.path)) << "deleting a layer keeps its image";
    EXPECT_TRUE(domain_->DeleteVolume("base").ok());
    EXPECT_FALSE(Exists(root_ + "/images/" + base.image));
    ExpectClean();
}

TEST_F(DomainTest, CreateRejectsBadInputAndLosesNothing)
{
    MakeVolume("taken", kMiB);
    struct Case {
        std::string name;
        uint64_t capacity;
        VolumeFormat format;
        Preallocation prealloc;
        std::string backing;
        ErrorCode code;
    } cases[] = {
        {"a/b", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, "", ErrorCode::kInvalidArgument},
        {"..", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, "", ErrorCode::kInvalidArgument},
        {std::string("n\0ul", 4), kMiB, VolumeFormat::kRaw, Preallocation::kSparse, "",
         ErrorCode::kInvalidArgument},
        {std::string(300, 'x'), kMiB, VolumeFormat::kRaw, Preallocation::kSparse, "",
         ErrorCode::kInvalidArgument},
        {"zero", 0, VolumeFormat::kRaw, Preallocation::kSparse, "", ErrorCode::kInvalidArgument},
        {"huge", ~0ull, VolumeFormat::kRaw, Preallocation::kSparse, "",
         ErrorCode::kInvalidArgument},
        {"meta", kMiB, VolumeFormat::kRaw, Preallocation::kMetadata, "",
         ErrorCode::kInvalidArgument},
        {"taken", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, "", ErrorCode::kAlreadyExists},
        {"orphan", kMiB, VolumeFormat::kQcow2, Preallocation::kSparse, "missing",
         ErrorCode::kNotFound},
        {"rawlayer", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, "taken",
         ErrorCode::kInvalidArgument},
        {"toobig", 1ull << 55, VolumeFormat::kRaw, Preallocation::kSparse, "",
         ErrorCode::kInvalidArgument},
        {"toobig-full", 1ull << 55, VolumeFormat::kRaw, Preallocation::kFull, "",
         ErrorCode::kInvalidArgument},
    };
    for (const auto &c : cases) {
        CreateParams p{c.name, c.capacity, c.format, c.prealloc, c.backing};
        auto r = domain_->CreateVolume(p);
        ASSERT_FALSE(r.ok()) << c.name;
        EXPECT_EQ(r.status().code(), c.code) << c.name << ": " << r.status().ToString();
        EXPECT_EQ(r.status().context().domain, domain_->info().uuid);
        EXPECT_FALSE(r.status().message().empty());
    }
    auto list = domain_->ListVolumes();
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].name, "taken");
    ExpectClean();
}

/* ListVolumes keeps each settled image's metadata between calls; whatever changes it -
 * here another handle, as another host would - must show in the next listing. */
TEST_F(DomainTest, ListingFollowsEveryChangeAfterCaching)
{
    auto by_name = [](const std::vector<VolumeInfo> &list) {
        std::map<std::string, VolumeInfo> map;
        for (const auto &v : list)
            map[v.name] = v;
        return map;
    };
    MakeVolume("kept", 4 * kMiB);
    MakeVolume("grown", 4 * kMiB);
    MakeVolume("gone", 4 * kMiB);
    VolumeInfo written = MakeVolume("written", 4 * kMiB);
    /* Let the image directories settle, so that the next listing keeps them. */
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    auto first = domain_->ListVolumes();
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    ASSERT_EQ(first->size(), 4u);

    auto other = OpenAgain();
    ASSERT_TRUE(other->ResizeVolume("grown", 8 * kMiB).ok());
    ASSERT_TRUE(other->DeleteVolume("gone").ok());
    ASSERT_TRUE(other->CreateVolume(CreateParams{.name = "new", .capacity = kMiB}).ok());
    ASSERT_TRUE(other->CreateVolume(CreateParams{.name = "layer", .capacity = 0,
                                                 .format = VolumeFormat::kQcow2,
                                                 .backing = "kept"}).ok());
    WritePattern(written.path, 0, 2 * kMiB, 7);
    auto second = domain_->ListVolumes();
    ASSERT_TRUE(second.ok()) << second.status().ToString();
    auto now = by_name(*second);
    EXPECT_EQ(now.size(), 5u);
    EXPECT_EQ(now.count("gone"), 0u);
    EXPECT_EQ(now.at("grown").capacity, 8 * kMiB);
    EXPECT_EQ(now.count("new"), 1u);
    EXPECT_FALSE(now.at("kept").leaf) << "a layer was made on it";
    EXPECT_TRUE(now.at("layer").leaf);
    EXPECT_GE(now.at("written").allocation, 2 * kMiB) << "allocation is read every time";
    auto third = domain_->ListVolumes();
    ASSERT_TRUE(third.ok());
    EXPECT_EQ(by_name(*third).size(), 5u);
    EXPECT_EQ(by_name(*third).at("grown").capacity, 8 * kMiB);
}

TEST_F(DomainTest, CloneRawIsIdenticalSparseAndReportsProgress)
{
    VolumeInfo src = MakeVolume("src", 64 * kMiB, VolumeFormat::kRaw, 16 * kMiB);
    Recorder rec;
    auto clone = domain_->CloneVolume({"src", "copy", std::nullopt}, &rec);
    ASSERT_TRUE(clone.ok()) << clone.status().ToString();
    EXPECT_NE(clone->image, src.image);
    EXPECT_EQ(clone->legality, Legality::kLegal);
    EXPECT_EQ(clone->capacity, src.capacity);
    EXPECT_EQ(FileSha256(clone->path), FileSha256(src.path));
    EXPECT_LE(AllocatedBytes(clone->path), AllocatedBytes(src.path));
    EXPECT_GT(rec.calls, 0u);
    EXPECT_EQ(rec.done, rec.total);
    EXPECT_NE(std::find(rec.steps.begin(), rec.steps.end(), "clone.metadata-illegal"),
              rec.steps.end());
    ExpectClean();
}

TEST_F(DomainTest, CloneFlattensChainsAndConvertsFormats)
{
    VolumeInfo base = MakeVolume("base", 16 * kMiB, VolumeFormat::kQcow2, 2 * kMiB);
    CreateParams p{"top", 0, VolumeFormat::kQcow2, Preallocation::kSparse, "base"};
    ASSERT_TRUE(domain_->CreateVolume(p).ok());
    auto top = domain_->LookupVolume("top");
    ASSERT_TRUE(top.ok());
    auto flat = domain_->CloneVolume({"top", "flat", VolumeFormat::kRaw});
    ASSERT_TRUE(flat.ok()) << flat.status().ToString();
    EXPECT_EQ(flat->format, VolumeFormat::kRaw);
    EXPECT_TRUE(flat->parent.empty());
    EXPECT_EQ(GuestSha256(*flat), GuestSha256(*top));

    auto q = domain_->CloneVolume({"flat", "again-qcow2", VolumeFormat::kQcow2});
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    EXPECT_EQ(GuestSha256(*q), GuestSha256(*flat));
    ExpectClean();
}

TEST_F(DomainTest, CloneRefusesBusySourceExistingNameAndMissingSource)
{
    VolumeInfo src = MakeVolume("src", 8 * kMiB, VolumeFormat::kRaw, 2 * kMiB);
    MakeVolume("existing", kMiB);
    std::string sum = FileSha256(src.path);
    {
        LeaseHolder vm(root_, src.slot, LeaseMode::kExclusive);
        auto busy = domain_->CloneVolume({"src", "copy", std::nullopt});
        ASSERT_FALSE(busy.ok());
        EXPECT_EQ(busy.status().code(), ErrorCode::kBusy);
        EXPECT_NE(busy.status().message().find("in use"), std::string::npos)
            << busy.status().message();
    }
    auto taken = domain_->CloneVolume({"src", "existing", std::nullopt});
    EXPECT_EQ(taken.status().code(), ErrorCode::kAlreadyExists);
    EXPECT_EQ(domain_->CloneVolume({"nope", "x", std::nullopt}).status().code(),
              ErrorCode::kNotFound);
    EXPECT_EQ(FileSha256(src.path), sum);
    EXPECT_EQ(domain_->ListVolumes()->size(), 2u);
    {
        LeaseHolder reader(root_, src.slot, LeaseMode::kShared);
        EXPECT_TRUE(domain_->CloneVolume({"src", "while-shared", std::nullopt}).ok())
            << "a shared holder (another reader) does not block a clone";
    }
    ExpectClean();
}

TEST_F(DomainTest, CancelledCloneLeavesNothing)
{
    MakeVolume("src", 8 * kMiB, VolumeFormat::kRaw, 2 * kMiB);
    Recorder rec;
    rec.cancel_at = "clone.copy";
    auto r = domain_->CloneVolume({"src", "copy", std::nullopt}, &rec);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), ErrorCode::kCancelled);
    EXPECT_EQ(r.status().context().step, "clone.copy");
    EXPECT_EQ(domain_->LookupVolume("copy").status().code(), ErrorCode::kNotFound);
    ExpectClean();
    EXPECT_TRUE(domain_->CloneVolume({"src", "copy", std::nullopt}).ok()) << "name is free again";
}

TEST_F(DomainTest, DeleteRemovesEverythingAndFreesNameAndSlot)
{
    VolumeInfo v = MakeVolume("victim", 4 * kMiB, VolumeFormat::kRaw, kMiB);
    VolumeInfo keep = MakeVolume("keep", 4 * kMiB, VolumeFormat::kRaw, kMiB, 7);
    std::string keep_sum = FileSha256(keep.path);
    ASSERT_TRUE(domain_->DeleteVolume("victim").ok());
    EXPECT_FALSE(Exists(root_ + "/images/" + v.image));
    EXPECT_FALSE(Exists(root_ + "/images/@victim"));
    EXPECT_FALSE(Exists(root_ + "/images/" + std::to_string(v.slot)));
    EXPECT_EQ(domain_->LookupVolume("victim").status().code(), ErrorCode::kNotFound);
    EXPECT_EQ(FileSha256(keep.path), keep_sum);
    Status again = domain_->DeleteVolume("victim");
    EXPECT_EQ(again.code(), ErrorCode::kNotFound);
    EXPECT_EQ(again.context().volume, "victim");
    ExpectClean();
    std::set<uint64_t> slots;
    for (int i = 0; i < 3; i++)
        slots.insert(MakeVolume("n" + std::to_string(i), kMiB).slot);
    EXPECT_TRUE(slots.count(v.slot)) << "a freed slot is handed out again";
}

TEST_F(DomainTest, DeleteOfVolumeInUseIsRefused)
{
    VolumeInfo v = MakeVolume("running", 4 * kMiB, VolumeFormat::kRaw, kMiB);
    std::string sum = FileSha256(v.path);
    LeaseHolder vm(root_, v.slot, LeaseMode::kExclusive);
    Status s = domain_->DeleteVolume("running");
    EXPECT_EQ(s.code(), ErrorCode::kBusy);
    EXPECT_EQ(FileSha256(v.path), sum);
    EXPECT_TRUE(domain_->LookupVolume("running").ok());
}

TEST_F(DomainTest, ResizeGrowsRawAndQcow2AndRefusesShrink)
{
    VolumeInfo raw = MakeVolume("raw", 4 * kMiB, VolumeFormat::kRaw, kMiB);
    std::string before = ReadFile(raw.path);
    auto grown = domain_->ResizeVolume("raw", 8 * kMiB);
    ASSERT_TRUE(grown.ok()) << grown.status().ToString();
    EXPECT_EQ(grown->capacity, 8 * kMiB);
    EXPECT_EQ(grown->generation, raw.generation + 1);
    std::string after = ReadFile(raw.path);
    ASSERT_EQ(after.size(), 8 * kMiB);
    EXPECT_EQ(after.substr(0, before.size()), before) << "growing keeps the data";
    EXPECT_EQ(after.find_first_not_of('\0', before.size()), std::string::npos);

    MakeVolume("q", 4 * kMiB, VolumeFormat::kQcow2);
    auto q = domain_->ResizeVolume("q", 16 * kMiB);
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    EXPECT_EQ(qemu::Info(q->path)->virtual_size, 16 * kMiB);

    auto shrink = domain_->ResizeVolume("raw", kMiB);
    EXPECT_EQ(shrink.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(shrink.status().message().find("shrink"), std::string::npos);
    EXPECT_TRUE(domain_->ResizeVolume("raw", 8 * kMiB).ok()) << "same size is a no-op";
    EXPECT_EQ(domain_->ResizeVolume("raw", 0).status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(domain_->ResizeVolume("nope", kMiB).status().code(), ErrorCode::kNotFound);
    ExpectClean();
}

TEST_F(DomainTest, ManyThreadsAtOnceStayConsistent)
{
    MakeVolume("seed", 4 * kMiB, VolumeFormat::kRaw, kMiB);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; t++) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 8; i++) {
                std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
                Status s = i % 3 == 0
                               ? domain_->CloneVolume({"seed", name, std::nullopt}).status()
                               : domain_->CreateVolume({name, kMiB, VolumeFormat::kRaw,
                                                        Preallocation::kSparse, ""}).status();
                if (s.ok() && i % 2 == 0)
                    s = domain_->DeleteVolume(name);
                if (!s.ok()) {
                    failures++;
                    ADD_FAILURE() << name << ": " << s.ToString();
                }
            }
        });
    }
    for (auto &t : threads)
        t.join();
    EXPECT_EQ(failures.load(), 0);
    auto list = domain_->ListVolumes();
    ASSERT_TRUE(list.ok());
    std::set<uint64_t> slots;
    for (const auto &v : *list)
        EXPECT_TRUE(slots.insert(v.slot).second) << "slot used twice: " << v.slot;
    EXPECT_EQ(list->size(), 1u + 6 * 4);
    ExpectClean();
}

TEST_F(DomainTest, TwoHandlesSeeEachOthersVolumes)
{
    auto other = OpenAgain();
    MakeVolume("from-a", kMiB);
    auto seen = other->LookupVolume("from-a");
    ASSERT_TRUE(seen.ok());
    auto b = other->CreateVolume({"from-b", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, ""});
    ASSERT_TRUE(b.ok());
    EXPECT_NE(b->slot, seen->slot);
    EXPECT_TRUE(domain_->DeleteVolume("from-b").ok());
    EXPECT_EQ(other->LookupVolume("from-b").status().code(), ErrorCode::kNotFound);
}

TEST_F(DomainTest, AttachmentsCreateAtOnceWithoutWaitingForEachOther)
{
    /* No operation takes a domain-wide lease: a second attachment that may not wait at all
     * still creates, clones and deletes while the first is in the middle of a burst. */
    DomainOptions impatient;
    impatient.lock_timeout = std::chrono::milliseconds(0);
    auto b = OpenAgain(impatient);
    MakeVolume("src", kMiB);
    std::atomic<bool> stop{false};
    std::thread burst([&] {
        for (int i = 0; !stop; i++) {
            std::string name = "a" + std::to_string(i);
            ASSERT_TRUE(domain_->CreateVolume({name, kMiB, VolumeFormat::kRaw,
                                               Preallocation::kSparse, ""}).ok());
            ASSERT_TRUE(domain_->DeleteVolume(name).ok());
        }
    });
    for (int i = 0; i < 10; i++) {
        std::string name = "b" + std::to_string(i);
        auto made = b->CreateVolume({name, kMiB, VolumeFormat::kRaw, Preallocation::kSparse, ""});
        EXPECT_TRUE(made.ok()) << made.status().ToString();
        auto cloned = b->CloneVolume({"src", name + "-copy"});
        EXPECT_TRUE(cloned.ok()) << cloned.status().ToString();
    }
    stop = true;
    burst.join();
    ExpectClean();
}

TEST_F(DomainTest, EachAttachmentIsItsOwnOwnerAndChunk)
{
    auto b = OpenAgain();
    auto va = MakeVolume("from-a", kMiB);
    auto vb = b->CreateVolume({"from-b", kMiB, VolumeFormat::kRaw, Preallocation::kSparse, ""});
    ASSERT_TRUE(vb.ok());
    EXPECT_NE(layout::ChunkOf(va.slot), layout::ChunkOf(vb->slot))
        << "two owners never hand out slots of one chunk";
    std::set<std::string> owners;
    for (const auto &entry : Entries("chunks")) {
        char target[32];
        ssize_t n = readlink((root_ + "/chunks/" + entry).c_str(), target, sizeof(target));
        ASSERT_GT(n, 0);
        owners.insert(std::string(target, n));
    }
    EXPECT_EQ(owners.size(), 2u) << "each attachment claimed chunks under its own owner";
}

TEST_F(DomainTest, RemoveIsRefusedWhileAnotherAttachmentHoldsTheDomain)
{
    auto other = OpenAgain();
    Status refused = domain_->Remove();
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.code(), ErrorCode::kBusy);
    EXPECT_NE(refused.message().find("attached by another"), std::string::npos)
        << refused.ToString();
    EXPECT_TRUE(Exists(root_ + "/domain.meta"));
    MakeVolume("still-usable", kMiB); /* the attachment took its shared lease back */
    ASSERT_TRUE(domain_->DeleteVolume("still-usable").ok());
    other.reset();
    EXPECT_TRUE(domain_->Remove().ok());
    EXPECT_FALSE(Exists(root_ + "/domain.meta"));
    EXPECT_FALSE(Exists(root_ + "/owners"));
}

TEST_F(DomainTest, PlantedSymlinksAreNeverFollowed)
{
    VolumeInfo v = MakeVolume("victim", kMiB);
    TempDir outside;
    WriteFile(outside.Sub("secret"), "secret");
    ASSERT_EQ(symlink(outside.Sub("secret").c_str(), (root_ + "/images/@evil").c_str()), 0);
    auto evil = domain_->LookupVolume("evil");
    ASSERT_FALSE(evil.ok());
    EXPECT_EQ(evil.status().code(), ErrorCode::kCorrupt);

    /* Replace the image directory with a symlink to a directory outside the domain. */
    ASSERT_EQ(rename((root_ + "/images/" + v.image).c_str(), outside.Sub("moved").c_str()), 0);
    ASSERT_EQ(symlink(outside.Sub("moved").c_str(), (root_ + "/images/" + v.image).c_str()), 0);
    auto followed = domain_->LookupVolume("victim");
    ASSERT_FALSE(followed.ok());
    EXPECT_EQ(followed.status().code(), ErrorCode::kCorrupt) << followed.status().ToString();
    EXPECT_FALSE(domain_->DeleteVolume("victim").ok());
    EXPECT_TRUE(Exists(outside.Sub("moved/" + v.uuid))) << "nothing outside the domain touched";
    EXPECT_EQ(ReadFile(outside.Sub("secret")), "secret");
    auto report = domain_->Check();
    ASSERT_TRUE(report.ok());
    EXPECT_FALSE(report->ok());
}

}  // namespace
}  // namespace sdm::testing
