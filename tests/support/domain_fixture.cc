/* Implementation of the shared domain fixture; see domain_fixture.h. */
#include "tests/support/domain_fixture.h"

#include <dirent.h>

#include <algorithm>

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
    std::vector<std::string> names;
    DIR *dir = opendir((root_ + "/" + rel).c_str());
    if (!dir)
        return names;
    while (struct dirent *e = readdir(dir))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
            names.push_back(e->d_name);
    closedir(dir);
    std::sort(names.begin(), names.end());
    return names;
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
