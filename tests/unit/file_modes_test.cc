/* The modes of everything the engine creates in a domain (docs/on-storage-format.md, "File
 * modes"), whatever the creating process's umask: a domain, a raw and a qcow2 volume, a
 * snapshot layer and two clones, made under umask 0 and under umask 077, with the
 * transaction directories looked at while each operation runs. Sets the process umask, so
 * the cases run one after another (gtest runs them on one thread). */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "backend/engine/layout.h"
#include "sdm/domain.h"
#include "tests/support/test_support.h"

namespace sdm::testing {
namespace {

constexpr uint64_t kCapacity = 1 << 20;

/* Mode of every entry below `dir`, by path relative to the walk's start. */
void Walk(const std::string &dir, const std::string &rel, std::map<std::string, mode_t> *out)
{
    DIR *d = opendir(dir.c_str());
    ASSERT_NE(d, nullptr) << dir;
    while (struct dirent *e = readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..")
            continue;
        struct stat st;
        std::string path = dir + "/" + name, sub = rel.empty() ? name : rel + "/" + name;
        ASSERT_EQ(lstat(path.c_str(), &st), 0) << path;
        EXPECT_EQ(st.st_uid, geteuid()) << sub;
        (*out)[sub] = st.st_mode;
        if (S_ISDIR(st.st_mode))
            Walk(path, sub, out);
    }
    closedir(d);
}

bool EndsWith(const std::string &text, const std::string &suffix)
{
    return text.size() >= suffix.size() &&
           text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/* The documented mode of an entry; nullopt for symlinks (their mode means nothing). */
std::optional<mode_t> Documented(const std::string &rel, mode_t mode)
{
    std::string name = rel.substr(rel.rfind('/') + 1);
    if (S_ISLNK(mode))
        return std::nullopt;
    if (S_ISDIR(mode))
        return 0755;
    if (name == layout::kIds || name == layout::kLeases)
        return 0660;
    if (EndsWith(name, ".meta") || name == layout::kMarker || EndsWith(name, layout::kTempSuffix))
        return 0644;
    return 0660; /* volume data */
}

/* Records the modes under tx/ at every step of an operation: the transaction's marker and
 * the new image's directory exist only while it runs. */
class TxWatcher : public OpObserver {
public:
    explicit TxWatcher(std::string tx) : tx_(std::move(tx)) {}
    void OnStep(const std::string &step) override
    {
        (void)step;
        Walk(tx_, "tx", &seen);
    }
    std::map<std::string, mode_t> seen;

private:
    std::string tx_;
};

class FileModesTest : public ::testing::TestWithParam<mode_t> {
protected:
    void SetUp() override { old_umask_ = umask(GetParam()); }
    void TearDown() override { umask(old_umask_); }

    void ExpectDocumented(const std::map<std::string, mode_t> &modes)
    {
        for (const auto &[rel, mode] : modes) {
            if (auto expected = Documented(rel, mode)) {
                EXPECT_EQ(mode & 07777, *expected)
                    << rel << " under umask 0" << std::oct << GetParam();
            }
        }
    }

    mode_t old_umask_ = 0;
    TempDir tmp_;
};

TEST_P(FileModesTest, EverythingCreatedHasItsDocumentedMode)
{
    std::string root = tmp_.Sub("domain");
    ASSERT_EQ(mkdir(root.c_str(), 0755), 0);
    ASSERT_EQ(chmod(root.c_str(), 0755), 0) << "the domain root is the administrator's";
    auto formatted = Domain::Format(root, FormatParams{});
    ASSERT_TRUE(formatted.ok()) << formatted.status().ToString();
    auto domain = Domain::Open(root);
    ASSERT_TRUE(domain.ok()) << domain.status().ToString();

    TxWatcher watcher(root + "/" + layout::kTxDir);
    auto create = [&](const std::string &name, VolumeFormat format, const std::string &backing) {
        CreateParams params{.name = name, .format = format, .backing = backing};
        params.capacity = backing.empty() ? kCapacity : 0;
        auto made = (*domain)->CreateVolume(params, &watcher);
        ASSERT_TRUE(made.ok()) << name << ": " << made.status().ToString();
    };
    create("raw", VolumeFormat::kRaw, "");
    create("qcow2", VolumeFormat::kQcow2, "");
    create("layer", VolumeFormat::kQcow2, "qcow2");
    for (const char *source : {"raw", "layer"}) {
        auto cloned = (*domain)->CloneVolume(
            CloneParams{.source = source, .name = std::string(source) + "-clone"}, &watcher);
        ASSERT_TRUE(cloned.ok()) << source << ": " << cloned.status().ToString();
    }

    std::map<std::string, mode_t> modes;
    ASSERT_NO_FATAL_FAILURE(Walk(root, "", &modes));
    ExpectDocumented(modes);
    ExpectDocumented(watcher.seen);

    int data = 0, meta = 0, image_dirs = 0;
    for (const auto &[rel, mode] : modes) {
        bool in_image = rel.rfind(std::string(layout::kImagesDir) + "/", 0) == 0 &&
                        rel.find('/', sizeof(layout::kImagesDir)) != std::string::npos;
        if (in_image && S_ISREG(mode))
            (EndsWith(rel, ".meta") ? meta : data)++;
        image_dirs += S_ISDIR(mode) && rel.rfind("images/", 0) == 0;
    }
    EXPECT_EQ(data, 5) << "raw, qcow2, layer and two clones";
    EXPECT_EQ(meta, 5);
    EXPECT_EQ(image_dirs, 4) << "the layer shares its backing volume's image";
    EXPECT_EQ(modes.count(layout::kDomainMeta), 1u);

    int markers = 0, tx_image_dirs = 0;
    for (const auto &[rel, mode] : watcher.seen) {
        markers += EndsWith(rel, std::string("/") + layout::kMarker);
        tx_image_dirs += S_ISDIR(mode) && std::count(rel.begin(), rel.end(), '/') == 2;
    }
    EXPECT_GT(markers, 0) << "no transaction marker was seen while the operations ran";
    EXPECT_GT(tx_image_dirs, 0) << "no new image directory was seen inside a transaction";
}

INSTANTIATE_TEST_SUITE_P(Umasks, FileModesTest, ::testing::Values(mode_t{0}, mode_t{077}),
                         [](const auto &info) {
                             return info.param == 0 ? std::string("Umask000")
                                                    : std::string("Umask077");
                         });

}  // namespace
}  // namespace sdm::testing
