/* Replays a fuzz target's corpus (SDM_FUZZ_CORPUS, tests/fuzz/corpus/<target>/) through the
 * target's entry point in the default build, one test per file: the seeds and every input
 * that once crashed or broke a property stay regression tests without clang or libFuzzer.
 * A target reports a broken property by aborting, which fails the run. Linked with one
 * target's source (tests/fuzz/meson.build). Single-threaded. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

namespace {

std::vector<std::filesystem::path> CorpusFiles()
{
    std::vector<std::filesystem::path> files;
    std::error_code error;
    for (const auto &entry : std::filesystem::directory_iterator(SDM_FUZZ_CORPUS, error)) {
        if (entry.is_regular_file())
            files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    return files;
}

class CorpusTest : public testing::TestWithParam<std::filesystem::path> {};

TEST_P(CorpusTest, RunsThroughTheTarget)
{
    std::ifstream in(GetParam(), std::ios::binary);
    ASSERT_TRUE(in) << "cannot read " << GetParam();
    std::string input((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>(input.data()),
                                     input.size()),
              0);
}

INSTANTIATE_TEST_SUITE_P(
    Corpus, CorpusTest, testing::ValuesIn(CorpusFiles()),
    [](const testing::TestParamInfo<std::filesystem::path> &info) {
        std::string name = info.param.filename().string();
        std::replace_if(name.begin(), name.end(),
                        [](unsigned char c) { return !std::isalnum(c); }, '_');
        return name;
    });

TEST(Corpus, HasSeeds)
{
    EXPECT_GE(CorpusFiles().size(), 3u) << "the corpus " << SDM_FUZZ_CORPUS
                                        << " is missing or nearly empty";
}

}  // namespace
