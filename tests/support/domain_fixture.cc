/* Implementation of the shared domain fixture; see domain_fixture.h. */
#include "tests/support/domain_fixture.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "backend/engine/layout.h"
#include "backend/engine/metadata.h"

namespace sdm::testing {

void DomainTest::SetUp()
{
    root_ = tmp_.Sub("domain");
    ASSERT_EQ(sdm::testing::Run({"mkdir", root_}).exit_code, 0);
    auto info = Domain::Format(root_, FormatParams{});
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    domain_ = OpenAgain();
}

std::unique_ptr<Domain> DomainTest::OpenAgain(const DomainOptions &options)
{
    auto domain = Domain::Open(root_, options);
    EXPECT_TRUE(domain.ok()) << domain.status().ToString();
    return domain.ok() ? std::move(*domain) : nullptr;
}

VolumeInfo DomainTest::MakeVolume(const std::string &name, uint64_t capacity,
                                  VolumeFormat format, uint64_t data_bytes, uint32_t seed)
{
    CreateParams params;
    params.name = name;
    params.capacity = capacity;
    params.format = format;
    auto created = domain_->CreateVolume(params);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    if (!created.ok())
        return {};
    if (data_bytes) {
        if (format == VolumeFormat::kRaw) {
            /* Two extents with a hole between them, so sparseness shows. */
            WritePattern(created->path, 0, data_bytes / 2, seed);
            WritePattern(created->path, capacity - data_bytes / 2, data_bytes / 2, seed + 1);
        } else {
            std::string raw = tmp_.Sub("pattern-" + name);
            WriteFile(raw, "");
            EXPECT_EQ(sdm::testing::Run({"truncate", "-s", std::to_string(capacity), raw}).exit_code, 0);
            WritePattern(raw, 0, data_bytes, seed);
            CommandResult r = sdm::testing::Run({"qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", raw,
                                   created->path});
            EXPECT_EQ(r.exit_code, 0) << r.out;
        }
    }
    auto info = domain_->LookupVolume(name);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    return info.ok() ? *info : VolumeInfo{};
}

std::vector<std::string> DomainTest::Entries(const std::string &rel) const
{
    return ListNames(root_ + "/" + rel);
}

void DomainTest::ExpectClean()
{
    EXPECT_TRUE(Entries("tx").empty()) << "pending transactions left";
    auto report = domain_->Check();
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    for (const auto &p : report->problems)
        ADD_FAILURE() << "check: " << p;
    EXPECT_EQ(report->pending_transactions, 0u);
}

std::string GuestSha256(const VolumeInfo &volume)
{
    if (volume.format == VolumeFormat::kRaw && volume.parent.empty())
        return FileSha256(volume.path);
    TempDir tmp;
    std::string raw = tmp.Sub("flat.raw");
    CommandResult r = Run({"qemu-img", "convert", "-U", "-O", "raw", volume.path, raw});
    if (r.exit_code != 0)
        return "qemu-img failed: " + r.out;
    return FileSha256(raw);
}

}  // namespace sdm::testing

namespace sdm::testing {

void MakeFormat1(const std::string &root, const std::string &committed,
                 const std::string &uncommitted)
{
    auto meta = meta::DecodeDomain(ReadFile(root + "/domain.meta"), "domain.meta");
    ASSERT_TRUE(meta.ok()) << meta.status().ToString();
    meta->version = 1;
    WriteFile(root + "/domain.meta", meta::Encode(*meta));
    for (const std::string &entry : ListNames(root + "/chunks"))
        ASSERT_EQ(unlink((root + "/chunks/" + entry).c_str()), 0);
    ASSERT_EQ(rmdir((root + "/chunks").c_str()), 0);
    ASSERT_EQ(unlink((root + "/owners").c_str()), 0);
    for (const std::string &image : ListNames(root + "/images")) {
        if (!layout::IsUuid(image))
            continue;
        for (const std::string &file : ListNames(root + "/images/" + image)) {
            if (file.size() < 5 || file.compare(file.size() - 5, 5, ".meta") != 0)
                continue;
            auto v = meta::DecodeVolume(ReadFile(root + "/images/" + image + "/" + file), file);
            ASSERT_TRUE(v.ok()) << v.status().ToString();
            std::string target = layout::IndexTarget(v->image, v->uuid);
            if (v->name == committed) {
                /* Killed after its commit, before its index: the claim and slot entry go. */
                ASSERT_EQ(unlink((root + "/images/" + layout::NameEntry(v->name)).c_str()), 0);
                ASSERT_EQ(mkdir((root + "/tx/" + v->image + "-" + std::to_string(v->slot)).c_str(),
                                0755), 0);
                continue;
            }
            ASSERT_EQ(symlink(target.c_str(),
                              (root + "/images/" + std::to_string(v->slot)).c_str()), 0);
        }
    }
    meta::Marker clone;
    clone.txid = layout::NewUuid();
    clone.op = meta::TxOp::kClone;
    clone.host_id = 2;
    clone.slot = 900;
    clone.image = clone.txid;
    clone.volume = layout::NewUuid();
    clone.name = uncommitted;
    clone.new_image = true;
    std::string dir = root + "/tx/" + clone.txid + "-900";
    ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
    WriteFile(dir + "/marker", meta::Encode(clone));
    ASSERT_EQ(mkdir((dir + "/" + clone.image).c_str(), 0755), 0);
    WriteFile(dir + "/" + clone.image + "/" + clone.volume, std::string(4096, 'c'));
}

}  // namespace sdm::testing
