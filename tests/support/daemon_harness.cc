/* Implementation of the sdmd test harness; see daemon_harness.h. */
#include "tests/support/daemon_harness.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace sdm::testing {

namespace {

constexpr auto kStartLimit = std::chrono::seconds(30);
constexpr auto kStopLimit = std::chrono::seconds(60);
constexpr auto kPoll = std::chrono::milliseconds(20);

std::string EnvOr(const char *name, const char *fallback)
{
    const char *value = std::getenv(name);
    return value && *value ? value : fallback;
}

int DecodeStatus(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* Waits up to `limit` for `pid`; -1 if it is still running. */
int WaitFor(pid_t pid, std::chrono::milliseconds limit)
{
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
        int status = 0;
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            return DecodeStatus(status);
        if (done < 0)
            return -1;
        if (std::chrono::steady_clock::now() > deadline)
            return -1;
        std::this_thread::sleep_for(kPoll);
    }
}

}  // namespace

std::string SdmdPath()
{
    return EnvOr("SDM_SDMD", "sdmd");
}

std::string SdmPath()
{
    return EnvOr("SDM_SDM", "sdm");
}

DaemonHarness::DaemonHarness(std::string dir)
    : dir_(std::move(dir)), socket_(dir_ + "/sdmd.sock"), config_path_(dir_ + "/sdmd.conf"),
      log_path_(dir_ + "/sdmd.log") {}

DaemonHarness::~DaemonHarness()
{
    Kill();
}

::testing::AssertionResult DaemonHarness::Start(const std::string &config,
                                                const std::vector<std::string> &env)
{
    WriteFile(config_path_, "[sdmd]\nsocket=" + socket_ +
                                "\nlog_level=debug\ngc_interval=0\n" + config + "\n");
    pid_ = Spawn({SdmdPath(), "--foreground", "--config", config_path_}, log_path_, env);
    auto deadline = std::chrono::steady_clock::now() + kStartLimit;
    while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return ::testing::AssertionFailure()
                   << "sdmd exited with " << DecodeStatus(status) << ":\n" << Log();
        }
        GError *error = nullptr;
        GDBusConnection *connection = Connect(&error);
        if (connection) {
            g_dbus_connection_close_sync(connection, nullptr, nullptr);
            g_object_unref(connection);
            return ::testing::AssertionSuccess();
        }
        g_error_free(error);
        std::this_thread::sleep_for(kPoll);
    }
    return ::testing::AssertionFailure() << "sdmd's socket did not answer:\n" << Log();
}

int DaemonHarness::Stop()
{
    if (pid_ <= 0)
        return -1;
    kill(pid_, SIGTERM);
    int status = WaitFor(pid_, kStopLimit);
    if (status < 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
    return status;
}

void DaemonHarness::Kill()
{
    if (pid_ <= 0)
        return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

std::string DaemonHarness::Log() const
{
    return ReadFile(log_path_);
}

GDBusConnection *DaemonHarness::Connect(GError **error) const
{
    g_autofree char *escaped = g_dbus_address_escape_value(socket_.c_str());
    g_autofree char *address = g_strdup_printf("unix:path=%s", escaped);
    return g_dbus_connection_new_for_address_sync(
        address, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, nullptr, nullptr, error);
}

GVariant *Call(GDBusConnection *connection, const char *method, GVariant *args, GError **error)
{
    return g_dbus_connection_call_sync(connection, nullptr, "/org/libvirt/Sdm1",
                                       "org.libvirt.Sdm1.Manager", method, args, nullptr,
                                       G_DBUS_CALL_FLAGS_NONE, 120000, nullptr, error);
}

std::string ErrorName(const GError *error)
{
    if (!error)
        return "";
    g_autofree char *name = g_dbus_error_get_remote_error(error);
    return name ? name : "";
}

bool SpinUntil(const std::function<bool()> &done, std::chrono::milliseconds limit)
{
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        if (!g_main_context_iteration(nullptr, FALSE))
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

pid_t Spawn(const std::vector<std::string> &argv, const std::string &output,
            const std::vector<std::string> &env, uid_t uid, gid_t gid)
{
    /* Everything the child needs is made before fork: it may only make system calls. */
    std::vector<char *> args;
    for (const auto &a : argv)
        args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    /* The extra entries first: the first of two equal names wins. */
    std::vector<std::string> environment(env);
    for (char **e = environ; *e; e++)
        environment.emplace_back(*e);
    std::vector<char *> envp;
    for (auto &e : environment)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    int fd = open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw std::runtime_error("open " + output + ": " + strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        if (gid != static_cast<gid_t>(-1) && (setgroups(0, nullptr) != 0 || setgid(gid) != 0))
            _exit(126);
        if (uid != static_cast<uid_t>(-1) && setuid(uid) != 0)
            _exit(126);
        execvpe(args[0], args.data(), envp.data());
        _exit(127);
    }
    close(fd);
    if (pid < 0)
        throw std::runtime_error("fork: " + std::string(strerror(errno)));
    return pid;
}

int WaitExit(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return DecodeStatus(status);
}

CommandResult RunAs(uid_t uid, gid_t gid, const std::vector<std::string> &argv,
                    const std::string &scratch)
{
    std::string output = scratch + "/run-as.out";
    CommandResult result;
    result.exit_code = WaitExit(Spawn(argv, output, {}, uid, gid));
    result.out = ReadFile(output);
    return result;
}

std::string Str(GVariant *dict, const char *key)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_STRING);
    return value ? g_variant_get_string(value, nullptr) : "<missing>";
}

uint64_t U64(GVariant *dict, const char *key)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_UINT64);
    return value ? g_variant_get_uint64(value) : ~0ull;
}

uint32_t U32(GVariant *dict, const char *key)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_UINT32);
    return value ? g_variant_get_uint32(value) : ~0u;
}

std::vector<std::string> Strv(GVariant *dict, const char *key)
{
    g_autoptr(GVariant) value = g_variant_lookup_value(dict, key, G_VARIANT_TYPE_STRING_ARRAY);
    if (!value)
        return {"<missing>"};
    std::vector<std::string> items;
    g_autofree const char **strv = g_variant_get_strv(value, nullptr);
    for (const char **s = strv; *s; s++)
        items.emplace_back(*s);
    return items;
}

GVariant *Opts(std::initializer_list<std::pair<const char *, GVariant *>> items)
{
    GVariantBuilder builder;
    g_variant_builder_init(&builder, G_VARIANT_TYPE_VARDICT);
    for (const auto &[key, value] : items)
        g_variant_builder_add(&builder, "{sv}", key, value);
    return g_variant_builder_end(&builder);
}

}  // namespace sdm::testing
