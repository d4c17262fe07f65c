/* Helpers shared by the test suites: scratch directories, file contents and checksums,
 * and running the project's own binaries. Not thread-safe unless stated. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdm::testing {

/* A fresh directory under $TMPDIR (or /var/tmp: real disk, not tmpfs), removed with its
 * contents when the object goes away. */
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;

    const std::string &path() const { return path_; }
    std::string Sub(const std::string &name) const { return path_ + "/" + name; }

private:
    std::string path_;
};

/* Writes `length` bytes of pseudo-random data (from `seed`) at `offset` of an existing file. */
void WritePattern(const std::string &path, uint64_t offset, uint64_t length, uint32_t seed);
/* Writes `content` to `path`, replacing it. */
void WriteFile(const std::string &path, const std::string &content);
std::string ReadFile(const std::string &path);
/* Names in a directory, without "." and "..", sorted; empty if it cannot be read. */
std::vector<std::string> ListNames(const std::string &dir);
/* SHA-256 of a file's whole content, holes read as zeros. */
std::string FileSha256(const std::string &path);
/* Bytes the file occupies on disk (st_blocks * 512). */
uint64_t AllocatedBytes(const std::string &path);
bool Exists(const std::string &path);

struct CommandResult {
    int exit_code = -1;   /* -1 if killed by a signal */
    int signal = 0;
    std::string out;      /* stdout and stderr, interleaved */
};
/* Runs argv with extra "NAME=value" environment entries; waits for it. */
CommandResult Run(const std::vector<std::string> &argv, const std::vector<std::string> &env = {});
/* In a forked child before exec: writes "<what>: <strerror(errno)>" to stderr with
 * async-signal-safe calls only and exits 127. */
[[noreturn]] void ChildFail(const char *what);

/* Path of the sdm-local tool under test ($SDM_SDM_LOCAL). */
std::string SdmLocalPath();

}  // namespace sdm::testing
