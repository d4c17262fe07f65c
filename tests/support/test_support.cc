/* Implementation of the shared test helpers; see test_support.h. */
#include "tests/support/test_support.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace sdm::testing {

TempDir::TempDir()
{
    const char *base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/var/tmp") + "/sdm-test-XXXXXX";
    if (!mkdtemp(tmpl.data()))
        throw std::runtime_error("mkdtemp failed: " + std::string(strerror(errno)));
    path_ = tmpl;
}

TempDir::~TempDir()
{
    Run({"rm", "-rf", "--one-file-system", path_});
}

void WritePattern(const std::string &path, uint64_t offset, uint64_t length, uint32_t seed)
{
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        throw std::runtime_error("open " + path + ": " + strerror(errno));
    std::mt19937_64 rng(seed);
    std::string buf(1 << 20, '\0');
    uint64_t done = 0;
    while (done < length) {
        size_t n = std::min<uint64_t>(buf.size(), length - done);
        for (size_t i = 0; i + 8 <= n; i += 8) {
            uint64_t v = rng();
            memcpy(&buf[i], &v, 8);
        }
        if (pwrite(fd, buf.data(), n, offset + done) != static_cast<ssize_t>(n)) {
            close(fd);
            throw std::runtime_error("pwrite " + path + ": " + strerror(errno));
        }
        done += n;
    }
    close(fd);
}

void WriteFile(const std::string &path, const std::string &content)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out)
        throw std::runtime_error("cannot write " + path);
}

std::vector<std::string> ListNames(const std::string &dir)
{
    std::vector<std::string> names;
    DIR *d = opendir(dir.c_str());
    if (!d)
        return names;
    while (struct dirent *e = readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
            names.push_back(e->d_name);
    closedir(d);
    std::sort(names.begin(), names.end());
    return names;
}

std::string ReadFile(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string FileSha256(const std::string &path)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw std::runtime_error("open " + path + ": " + strerror(errno));
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    std::string buf(1 << 20, '\0');
    ssize_t n;
    while ((n = read(fd, buf.data(), buf.size())) > 0)
        g_checksum_update(sum, reinterpret_cast<const guchar *>(buf.data()), n);
    close(fd);
    std::string hex = g_checksum_get_string(sum);
    g_checksum_free(sum);
    return hex;
}

uint64_t AllocatedBytes(const std::string &path)
{
    struct stat st;
    if (stat(path.c_str(), &st) != 0)
        throw std::runtime_error("stat " + path + ": " + strerror(errno));
    return static_cast<uint64_t>(st.st_blocks) * 512;
}

bool Exists(const std::string &path)
{
    struct stat st;
    return lstat(path.c_str(), &st) == 0;
}

CommandResult Run(const std::vector<std::string> &argv, const std::vector<std::string> &env)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe failed");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        for (const auto &e : env)
            putenv(strdup(e.c_str()));
        std::vector<char *> args;
        for (const auto &a : argv)
            args.push_back(const_cast<char *>(a.c_str()));
        args.push_back(nullptr);
        execvp(args[0], args.data());
        _exit(127);
    }
    close(pipefd[1]);
    CommandResult result;
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof(buf))) > 0)
        result.out.append(buf, n);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFEXITED(status))
        result.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        result.signal = WTERMSIG(status);
    return result;
}

std::string SdmLocalPath()
{
    const char *p = std::getenv("SDM_SDM_LOCAL");
    return p ? p : "sdm-local";
}

void ChildFail(const char *what)
{
    const char *err = strerror(errno);
    if (write(2, what, strlen(what)) < 0 || write(2, ": ", 2) < 0 ||
        write(2, err, strlen(err)) < 0 || write(2, "\n", 1) < 0)
        _exit(126);
    _exit(127);
}

}  // namespace sdm::testing
