/* sdmd: the per-host storage domain manager daemon.
 *
 * Reads its configuration, serves the engine over D-Bus on a unix socket (see service.h)
 * and runs GLib's main loop until SIGTERM or SIGINT. Without --foreground it detaches
 * once the socket is ready, so `sdmd && sdm status` works, and logs to syslog from then
 * on. A SIGTERM while a lockspace is failing or lost is sanlock fencing sdmd (it ends
 * lease holders so, then SIGKILLs them after its grace): sdmd exits at once, without
 * releasing leases or cleaning up, since storage may be unreachable and another host may
 * take over. Exit status: 0 after a requested stop, 1 when it cannot start, 2 for bad
 * usage or a bad configuration, 3 after such a fenced exit. Single-threaded until the
 * Service starts its jobs. */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib-unix.h>
#include <glib.h>

#include <clocale>
#include <cstdio>
#include <cstdlib>

#include "backend/daemon/config.h"
#include "backend/daemon/log.h"
#include "backend/daemon/service.h"
#include "backend/engine/i18n.h"

namespace sdm::daemon {
namespace {

/* How long a stop waits for cancelled jobs to reach their next step and end. */
constexpr std::chrono::seconds kStopGrace(30);
constexpr int kExitFenced = 3;

struct Run {
    GMainLoop *loop = nullptr;
    Service *service = nullptr;
    bool stopping = false;
    bool clean = true;
};

gboolean OnStopSignal(gpointer data)
{
    auto *run = static_cast<Run *>(data);
    if (run->service->LockspaceFailed()) {
        Log(LogLevel::kError,
            _("stopping at once without releasing leases or cleaning up: a lockspace of this "
              "host is failing or lost, so sanlock is ending sdmd; the garbage collector of "
              "any host sweeps what the interrupted jobs leave. Fix the storage, then start "
              "sdmd again"));
        std::_Exit(kExitFenced);
    }
    if (run->stopping) {
        Log(LogLevel::kInfo, _("already stopping; waiting for the jobs to end"));
        return G_SOURCE_CONTINUE;
    }
    run->stopping = true;
    Log(LogLevel::kInfo, _("stop requested"));
    run->service->Stop(kStopGrace, [run](bool clean) {
        run->clean = clean;
        g_main_loop_quit(run->loop);
    });
    return G_SOURCE_CONTINUE;
}

/* Forks; the parent waits for the child to report that it serves (or to exit) and exits
 * with its outcome. The child returns the pipe's write end, to be written once ready. */
int Detach()
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("sdmd: pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("sdmd: fork");
        exit(1);
    }
    if (pid > 0) {
        close(fds[1]);
        char ready;
        if (read(fds[0], &ready, 1) == 1)
            _exit(0);
        int status = 0;
        waitpid(pid, &status, 0);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
    }
    close(fds[0]);
    setsid();
    if (chdir("/") != 0)
        perror("sdmd: chdir /");
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        close(null);
    }
    return fds[1];
}

/* The detached child serves: tell the parent, and log to syslog from now on. */
void ReportReady(int fd)
{
    if (write(fd, "1", 1) != 1)
        Log(LogLevel::kWarning, _("cannot tell the starting process that sdmd is ready"));
    close(fd);
    LogToSyslog();
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 2);
        close(null);
    }
}

int Usage(GOptionContext *context, const char *problem)
{
    fprintf(stderr, "sdmd: %s\n\n", problem);
    g_autofree char *help = g_option_context_get_help(context, TRUE, nullptr);
    fputs(help, stderr);
    return 2;
}

int Main(int argc, char **argv)
{
    g_autofree char *config_path = nullptr;
    g_autofree char *socket = nullptr;
    gboolean foreground = FALSE;
    gboolean version = FALSE;
    GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
         N_("configuration file (default /etc/libvirt-sdm/sdmd.conf)"), "FILE"},
        {"socket", 's', 0, G_OPTION_ARG_FILENAME, &socket,
         N_("listen on this unix socket instead of the configured one"), "PATH"},
        {"foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground,
         N_("stay in the foreground and log to stderr"), nullptr},
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, N_("print the version and exit"),
         nullptr},
        {},
    };
    g_autoptr(GOptionContext) context =
        g_option_context_new(_("- serve libvirt-sdm storage domains over D-Bus"));
    g_option_context_set_translation_domain(context, SDM_GETTEXT_PACKAGE);
    g_option_context_add_main_entries(context, entries, SDM_GETTEXT_PACKAGE);
    g_autoptr(GError) error = nullptr;
    if (!g_option_context_parse(context, &argc, &argv, &error))
        return Usage(context, error->message);
    if (argc > 1)
        return Usage(context, _("unexpected argument; sdmd takes options only"));
    if (version) {
        printf("sdmd %s\n", SDM_VERSION);
        return 0;
    }

    auto config = LoadConfig(config_path ? config_path : kDefaultConfigPath,
                             config_path != nullptr);
    if (!config.ok()) {
        fprintf(stderr, "sdmd: %s\n", config.status().message().c_str());
        return 2;
    }
    if (socket) {
        if (socket[0] != '/')
            return Usage(context, _("--socket takes an absolute path"));
        config->socket = socket;
    }
    SetLogLevel(config->log_level);
    signal(SIGPIPE, SIG_IGN);

    int ready_fd = foreground ? -1 : Detach();
    g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
    Run run;
    {
        Service service(*config);
        Status started = service.Start();
        if (!started.ok()) {
            Log(LogLevel::kError, _("cannot start: %s"), started.ToString().c_str());
            return 1;
        }
        if (ready_fd >= 0)
            ReportReady(ready_fd);
        run.loop = loop;
        run.service = &service;
        guint term = g_unix_signal_add(SIGTERM, OnStopSignal, &run);
        guint interrupt = g_unix_signal_add(SIGINT, OnStopSignal, &run);
        g_main_loop_run(loop);
        g_source_remove(term);
        g_source_remove(interrupt);
        if (!run.clean) {
            /* A job stuck in storage would hang the join in ~Service: leave without it. */
            Log(LogLevel::kInfo, _("stopped (some jobs abandoned)"));
            std::_Exit(0);
        }
    }
    Log(LogLevel::kInfo, _("stopped"));
    return 0;
}

}  // namespace
}  // namespace sdm::daemon

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    bindtextdomain(SDM_GETTEXT_PACKAGE, SDM_LOCALEDIR);
    return sdm::daemon::Main(argc, argv);
}
