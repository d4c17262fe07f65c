/* A faultfs process for tests; see faultfs_harness.h.
 *
 * The child enters the target mount namespace with system calls only (it is forked from
 * a process that may have threads), then execs faultfs, which mounts and only then opens
 * its control socket: a socket that answers means the mount is in place.
 * PR_SET_PDEATHSIG sends SIGTERM, on which faultfs detaches its mount, so a test that
 * crashes leaves no dead mount behind. Each control command uses its own connection. */
#include "tests/support/faultfs_harness.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

namespace sdm::testing {

namespace {

constexpr auto kStartTimeout = std::chrono::seconds(10);
constexpr auto kStopTimeout = std::chrono::seconds(5);
constexpr auto kHungTimeout = std::chrono::seconds(60);
constexpr auto kPoll = std::chrono::milliseconds(5);

/* A connected control socket, or -1. */
int Connect(const std::string &path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (connect(fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool Exited(pid_t pid, std::chrono::steady_clock::duration timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        pid_t r = waitpid(pid, nullptr, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(kPoll);
    }
}

bool FinalLine(const std::string &reply)
{
    size_t start = reply.rfind('\n', reply.size() - 2);
    std::string last = reply.substr(start == std::string::npos ? 0 : start + 1);
    return last == "ok\n" || last.rfind("error:", 0) == 0;
}

}  // namespace

std::string FaultFsPath()
{
    const char *path = std::getenv("SDM_FAULTFS");
    return path ? path : "faultfs";
}

FaultFs::FaultFs(std::string source, std::string mountpoint, pid_t ns_pid)
    : source_(std::move(source)), mountpoint_(std::move(mountpoint)),
      control_(dir_.Sub("control"))
{
    /* Everything the child needs is built before fork. */
    std::vector<std::string> args = {FaultFsPath(), source_, mountpoint_, control_};
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string out = dir_.Sub("faultfs.out");
    int ns_fd = -1;
    if (ns_pid > 0) {
        std::string ns = "/proc/" + std::to_string(ns_pid) + "/ns/mnt";
        ns_fd = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
        if (ns_fd < 0)
            throw std::runtime_error("open " + ns + ": " + strerror(errno));
    }

    pid_t pid = fork();
    if (pid < 0) {
        if (ns_fd >= 0)
            close(ns_fd);
        throw std::runtime_error(std::string("fork: ") + strerror(errno));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            ChildFail("redirecting output");
        if (ns_fd >= 0 && setns(ns_fd, CLONE_NEWNS) != 0)
            ChildFail("entering the mount namespace");
        execv(argv[0], argv.data());
        ChildFail("exec faultfs (is SDM_FAULTFS set?)");
    }
    if (ns_fd >= 0)
        close(ns_fd);
    pid_ = pid;

    auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    for (;;) {
        int fd = Connect(control_);
        if (fd >= 0) {
            close(fd);
            return;
        }
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("faultfs on " + mountpoint_ + " exited at start:\n" +
                                     Output());
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            Unmount();
            throw std::runtime_error("faultfs on " + mountpoint_ +
                                     " did not open its control socket within 10 s:\n" +
                                     Output());
        }
        std::this_thread::sleep_for(kPoll);
    }
}

FaultFs::~FaultFs()
{
    Unmount();
}

std::string FaultFs::Output() const
{
    return ReadFile(dir_.Sub("faultfs.out"));
}

std::string FaultFs::Command(const std::string &line)
{
    int fd = Connect(control_);
    if (fd < 0)
        return std::string("error: cannot connect to ") + control_ + ": " + strerror(errno);
    std::string request = line + "\n";
    std::string reply;
    if (write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
        char buf[4096];
        while (reply.empty() || reply.back() != '\n' || !FinalLine(reply)) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n <= 0)
                break;
            reply.append(buf, static_cast<size_t>(n));
        }
    }
    close(fd);
    return reply.empty() ? "error: no reply from faultfs\n" : reply;
}

std::string FaultFs::Add(const std::string &name, const std::string &ops,
                         const std::string &glob, const std::string &action, uint64_t after,
                         uint64_t times)
{
    std::string line = "add " + name + " " + ops + " " + glob + " " + action;
    if (after)
        line += " after=" + std::to_string(after);
    if (times)
        line += " times=" + std::to_string(times);
    std::string reply = Command(line);
    return reply == "ok\n" ? "" : reply;
}

std::string FaultFs::Clear(const std::string &name)
{
    std::string reply = Command("clear " + name);
    return reply == "ok\n" ? "" : reply;
}

std::string FaultFs::ClearAll()
{
    std::string reply = Command("clear");
    return reply == "ok\n" ? "" : reply;
}

std::map<std::string, FaultFs::RuleState> FaultFs::Rules()
{
    std::map<std::string, RuleState> rules;
    std::istringstream reply(Command("list"));
    std::string line;
    while (std::getline(reply, line)) {
        unsigned long long seen, hits, waiting;
        char buf[65];
        if (sscanf(line.c_str(), "%64s seen=%llu hits=%llu waiting=%llu", buf, &seen, &hits,
                   &waiting) != 4)
            continue;
        rules[buf] = RuleState{seen, hits, waiting};
    }
    return rules;
}

bool FaultFs::WaitHung(const std::string &name, uint64_t count)
{
    auto deadline = std::chrono::steady_clock::now() + kHungTimeout;
    for (;;) {
        auto rules = Rules();
        auto it = rules.find(name);
        if (it != rules.end() && it->second.waiting >= count)
            return true;
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

void FaultFs::Unmount()
{
    if (pid_ <= 0)
        return;
    kill(pid_, SIGTERM);
    if (!Exited(pid_, kStopTimeout)) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
        umount2(mountpoint_.c_str(), MNT_DETACH);
    }
    pid_ = -1;
}

}  // namespace sdm::testing
