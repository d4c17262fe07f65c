/* Private sanlock daemons for tests; see sanlock_harness.h.
 *
 * The child sets itself up with system calls only (it is forked from a process that may
 * have threads): a new mount namespace, mounts made private so that nothing leaks back,
 * the bind mount on /var/log, then exec. PR_SET_PDEATHSIG takes the daemon down with a
 * test that crashes, so no stray daemon outlives its test. */
#include "tests/support/sanlock_harness.h"

#include <fcntl.h>
#include <glib.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <vector>

extern char **environ;

namespace sdm::testing {

namespace {

constexpr auto kStartTimeout = std::chrono::seconds(10);
constexpr auto kStopTimeout = std::chrono::seconds(1);
constexpr auto kPoll = std::chrono::milliseconds(5);

std::string SanlockProgram()
{
    g_autofree char *found = g_find_program_in_path("sanlock");
    return found ? found : "/usr/sbin/sanlock";
}

bool Accepts(const std::string &socket_path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, socket_path.c_str(), sizeof(addr.sun_path) - 1);
    bool ok = connect(fd, reinterpret_cast<struct sockaddr *>(&addr), sizeof(addr)) == 0;
    close(fd);
    return ok;
}

/* Waits for `pid` to exit for up to `timeout`; true if it did. */
bool WaitExit(pid_t pid, std::chrono::steady_clock::duration timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return true;
        if (std::chrono::steady_clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(kPoll);
    }
}

}  // namespace

SanlockDaemon::SanlockDaemon(std::string host_name, int grace_seconds)
    : host_name_(std::move(host_name)), grace_seconds_(grace_seconds)
{
    for (const char *sub : {"run", "log"}) {
        if (mkdir(dir_.Sub(sub).c_str(), 0755) != 0)
            throw std::runtime_error("mkdir " + dir_.Sub(sub) + ": " + strerror(errno));
    }
    Start();
}

SanlockDaemon::~SanlockDaemon()
{
    Stop();
}

std::string SanlockDaemon::env() const
{
    return "SANLOCK_RUN_DIR=" + run_dir();
}

void SanlockDaemon::UseInThisProcess() const
{
    setenv("SANLOCK_RUN_DIR", run_dir().c_str(), 1);
}

std::string SanlockDaemon::OutputTail(size_t bytes) const
{
    std::string out = ReadFile(dir_.Sub("daemon.out"));
    return out.size() > bytes ? out.substr(out.size() - bytes) : out;
}

void SanlockDaemon::Start()
{
    /* Everything the child needs is built before fork. */
    const std::string program = SanlockProgram();
    const std::string grace = std::to_string(grace_seconds_);
    std::vector<std::string> args = {program, "daemon", "-D", "-w", "0", "-U", "root",
                                     "-G", "root", "-e", host_name_, "-g", grace};
    std::vector<std::string> env = {"SANLOCK_RUN_DIR=" + run_dir(), "SANLOCK_PRIVILEGED=0"};
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "SANLOCK_", 8) != 0)
            env.push_back(*e);
    }
    std::vector<char *> argv, envp;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto &e : env)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string out = dir_.Sub("daemon.out");
    const std::string log = dir_.Sub("log");

    pid_t pid = fork();
    if (pid < 0)
        throw std::runtime_error(std::string("fork: ") + strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || null < 0 || dup2(null, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
            ChildFail("redirecting output");
        if (unshare(CLONE_NEWNS) != 0)
            ChildFail("unshare(CLONE_NEWNS) (the tests need root)");
        if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
            ChildFail("making mounts private");
        if (mount(log.c_str(), "/var/log", nullptr, MS_BIND, nullptr) != 0)
            ChildFail("bind-mounting the log directory on /var/log");
        execve(argv[0], argv.data(), envp.data());
        ChildFail("exec sanlock");
    }
    pid_ = pid;

    const std::string socket_path = run_dir() + "/sanlock.sock";
    auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (!Accepts(socket_path)) {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            throw std::runtime_error("sanlock daemon for " + host_name_ +
                                     " exited at start:\n" + OutputTail());
        }
        if (std::chrono::steady_clock::now() >= deadline) {
            Kill();
            throw std::runtime_error("sanlock daemon for " + host_name_ +
                                     " did not open " + socket_path + " within 10 s:\n" +
                                     OutputTail());
        }
        std::this_thread::sleep_for(kPoll);
    }
}

void SanlockDaemon::Stop()
{
    if (pid_ <= 0)
        return;
    kill(pid_, SIGTERM);
    if (WaitExit(pid_, kStopTimeout)) {
        pid_ = -1;
        return;
    }
    Kill(); /* it ignores SIGTERM while it has lockspaces */
}

void SanlockDaemon::Kill()
{
    if (pid_ <= 0)
        return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

void SanlockDaemon::Restart()
{
    Stop();
    Start();
}

std::string ReleaseHostId(const std::string &lockspace, uint64_t host_id,
                          const std::string &ids_path)
{
    std::string spec = lockspace + ":" + std::to_string(host_id) + ":" + ids_path + ":0";
    CommandResult r = Run({SanlockProgram(), "direct", "release_id", "-s", spec});
    if (r.exit_code == 0 && r.out.find("release_id done 0") != std::string::npos)
        return "";
    return "sanlock direct release_id -s " + spec + " failed (exit " +
           std::to_string(r.exit_code) + "):\n" + r.out;
}

}  // namespace sdm::testing
