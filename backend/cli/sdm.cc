/* sdm: the administrator's command line for sdmd.
 *
 * Every command is one or a few D-Bus calls on sdmd's socket; commands that change
 * storage start a job, wait for it (a clone shows its progress) and print the outcome.
 * Arguments are checked before sdmd is contacted, so a usage error is reported the same
 * whether or not sdmd runs. Exit status, for scripts: 0 ok, 1 the operation failed (or gc
 * met errors, or check found problems), 2 bad usage, 3 sdmd not reachable.
 * Single-threaded. */
#include <glib-unix.h>
#include <unistd.h>

#include <clocale>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backend/cli/client.h"
#include "backend/cli/jobs_view.h"
#include "backend/engine/i18n.h"
#include "backend/engine/layout.h"
#include "backend/tools/cli_util.h"

namespace sdm::cli {
namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitUnreachable = 3;
constexpr char kDefaultSocket[] = "/run/sdmd/sdmd.sock";

struct Command;

struct Context {
    std::string socket = kDefaultSocket;
    const Command *command = nullptr;
    std::unique_ptr<Client> client;
};

struct Command {
    const char *name;
    const char *synopsis;     /* arguments and options after the name */
    const char *summary;      /* one line, for the command list */
    const char *details;      /* more for `sdm COMMAND --help`, or "" */
    size_t positional;
    std::set<std::string> options; /* taking a value */
    std::set<std::string> flags;
    int (*run)(Context &ctx, const Args &args);
};

const std::vector<Command> &Commands();

constexpr char kUsageHead[] = N_(
    "Usage: sdm [--socket PATH] COMMAND [ARGS...]\n"
    "       sdm COMMAND --help\n"
    "\n"
    "Drives sdmd, the storage domain manager daemon, through its socket\n"
    "(default /run/sdmd/sdmd.sock).\n"
    "\n"
    "Commands:\n");

constexpr char kUsageTail[] = N_(
    "\n"
    "DOMAIN is a domain's uuid or the path it was attached from. SIZE is bytes, or a\n"
    "number with K, M, G, T, P (powers of 1024; KiB.. too) or KB, MB, GB, TB, PB\n"
    "(powers of 1000).\n"
    "\n"
    "Exit status: 0 ok, 1 the operation failed, 2 bad usage, 3 sdmd not reachable.\n");

void PrintToolUsage(FILE *out)
{
    fputs(_(kUsageHead), out);
    for (const Command &c : Commands()) {
        std::string head = std::string(c.name) + " " + c.synopsis;
        if (head.size() > 44)
            fprintf(out, "  %s\n  %-44s %s\n", head.c_str(), "", _(c.summary));
        else
            fprintf(out, "  %-44s %s\n", head.c_str(), _(c.summary));
    }
    fputs(_(kUsageTail), out);
}

void PrintCommandUsage(const Command &c, FILE *out)
{
    fprintf(out, _("Usage: sdm [--socket PATH] %s %s\n\n%s\n"), c.name, c.synopsis,
            _(c.summary));
    if (*c.details)
        fprintf(out, "\n%s", _(c.details));
}

/* A usage error: what is wrong, then how the command (or the tool) is used. */
int Usage(const Context &ctx, const std::string &problem)
{
    fprintf(stderr, "sdm: %s\n\n", problem.c_str());
    if (ctx.command)
        PrintCommandUsage(*ctx.command, stderr);
    else
        PrintToolUsage(stderr);
    return kExitUsage;
}

int Unreachable(const Context &ctx, const std::string &why)
{
    fprintf(stderr,
            _("sdm: cannot reach sdmd at %s: %s; is sdmd running? start it with `sdmd` (or "
              "`systemctl start sdmd`), or give its socket with --socket\n"),
            ctx.socket.c_str(), why.c_str());
    return kExitUnreachable;
}

/* An operation that failed: the daemon's code and message. */
int Failed(const Status &status)
{
    fprintf(stderr, "sdm: %s: %s\n", ErrorCodeName(status.code()), status.message().c_str());
    return kExitFailed;
}

/* A call that failed: the operation's failure, unless the connection went away. */
int Fail(const Context &ctx, const Status &status)
{
    if (ctx.client && ctx.client->Lost())
        return Unreachable(ctx, _("the connection was lost: ") + status.message());
    return Failed(status);
}

/* Connects, or says why not; the commands call it once their arguments are checked. */
Client *Reach(Context &ctx)
{
    auto client = Client::Connect(ctx.socket);
    if (!client.ok()) {
        Unreachable(ctx, client.status().message());
        return nullptr;
    }
    ctx.client = std::move(*client);
    return ctx.client.get();
}

/* sdmd does not share our working directory: paths go to it absolute. */
std::string AbsolutePath(const std::string &path)
{
    g_autofree char *cwd = g_get_current_dir();
    g_autofree char *absolute = g_canonicalize_filename(path.c_str(), cwd);
    return absolute;
}

std::string DomainArg(const std::string &arg)
{
    if (layout::IsUuid(arg))
        return arg;
    if (arg.find('/') != std::string::npos || arg == "." || arg == ".." ||
        g_file_test(arg.c_str(), G_FILE_TEST_IS_DIR))
        return AbsolutePath(arg);
    return arg;
}

std::optional<std::string> Option(const Args &args, const std::string &name)
{
    auto it = args.options.find(name);
    return it == args.options.end() ? std::nullopt : std::optional(it->second);
}

/* Waits for a job sdmd started for us; the volume it made, or the failure's exit code. */
int FinishJob(Context &ctx, const std::string &id, const std::string &progress_label,
              const std::function<void(const dbus::JobView &)> &print)
{
    auto job = ctx.client->WaitForJob(id, progress_label);
    if (!job.ok())
        return Fail(ctx, job.status());
    if (job->job.state != JobState::kDone)
        return Failed(job->job.error);
    print(*job);
    return 0;
}

void PrintMadeVolume(const dbus::JobView &job)
{
    if (job.volume)
        PrintVolume(*job.volume);
}

std::vector<dbus::JobView> JobsFromList(GVariant *list)
{
    std::vector<dbus::JobView> jobs;
    GVariantIter iter;
    g_variant_iter_init(&iter, list);
    while (GVariant *item = g_variant_iter_next_value(&iter)) {
        jobs.push_back(dbus::JobFromDict(item));
        g_variant_unref(item);
    }
    return jobs;
}

std::string Duration(uint64_t seconds)
{
    if (seconds < 60)
        return Printf("%llus", static_cast<unsigned long long>(seconds));
    if (seconds < 3600)
        return Printf("%llum %llus", static_cast<unsigned long long>(seconds / 60),
                      static_cast<unsigned long long>(seconds % 60));
    return Printf("%lluh %llum", static_cast<unsigned long long>(seconds / 3600),
                  static_cast<unsigned long long>(seconds / 60 % 60));
}

/* --- commands --- */

int RunStatus(Context &ctx, const Args &)
{
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) status = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_get_status_sync(ctx.client->proxy(), &status, nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    dbus::DictReader r(status);
    printf(_("sdmd %s at %s\nhost id:  %u\ndomains:  %u\njobs:     %u running\nuptime:   %s\n"),
           r.Str("version").c_str(), ctx.socket.c_str(), r.U32("host_id"), r.U32("domains"),
           r.U32("jobs"), Duration(r.U64("uptime")).c_str());
    return 0;
}

int RunFormat(Context &ctx, const Args &args)
{
    dbus::DictBuilder options;
    struct Numeric {
        const char *option;
        const char *key;
        bool wide;
        const char *problem;
    } numerics[] = {
        {"--io-timeout", "io_timeout", false, N_("--io-timeout takes seconds from 1 to 600")},
        {"--sector-size", "sector_size", false, N_("--sector-size takes 512 or 4096")},
        {"--alignment", "alignment", true, N_("--alignment takes a size such as 1M")},
    };
    for (const auto &n : numerics) {
        auto text = Option(args, n.option);
        if (!text)
            continue;
        auto value = ParseSize(*text);
        if (!value || (!n.wide && *value > UINT32_MAX))
            return Usage(ctx, _(n.problem));
        if (n.wide)
            options.U64(n.key, *value);
        else
            options.U32(n.key, static_cast<uint32_t>(*value));
    }
    std::string path = AbsolutePath(args.positional[0]);
    GVariant *dict = g_variant_ref_sink(options.Finish());
    g_autoptr(GVariant) owned = dict;
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) domain = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_format_domain_sync(ctx.client->proxy(), path.c_str(), dict, &domain,
                                             nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    printf(_("formatted storage domain %s at %s\n"), dbus::DictReader(domain).Str("uuid").c_str(),
           path.c_str());
    return 0;
}

int RunAttach(Context &ctx, const Args &args)
{
    std::string path = AbsolutePath(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) domain = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_attach_domain_sync(ctx.client->proxy(), path.c_str(), &domain, nullptr,
                                             &error))
        return Fail(ctx, Client::Failed(error));
    dbus::DomainView view = dbus::DomainFromDict(domain);
    printf(_("attached storage domain %s at %s (durability %s)\n"), view.info.uuid.c_str(),
           view.info.path.c_str(), view.info.durability.c_str());
    return 0;
}

int RunDetach(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_detach_domain_sync(ctx.client->proxy(), domain.c_str(), nullptr,
                                             &error))
        return Fail(ctx, Client::Failed(error));
    printf(_("detached storage domain %s\n"), domain.c_str());
    return 0;
}

int RunDomains(Context &ctx, const Args &)
{
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) list = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_list_domains_sync(ctx.client->proxy(), &list, nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    printf("%-36s %-7s %-24s %s\n", "UUID", "HOST ID", "DURABILITY", "PATH");
    GVariantIter iter;
    g_variant_iter_init(&iter, list);
    while (GVariant *item = g_variant_iter_next_value(&iter)) {
        dbus::DomainView view = dbus::DomainFromDict(item);
        g_variant_unref(item);
        printf("%-36s %-7u %-24s %s\n", view.info.uuid.c_str(), view.host_id,
               view.info.durability.c_str(), view.info.path.c_str());
    }
    return 0;
}

int RunCreate(Context &ctx, const Args &args)
{
    auto size = ParseSize(args.positional[2]);
    if (!size)
        return Usage(ctx, _("invalid size '") + args.positional[2] + "'");
    dbus::DictBuilder options;
    if (auto format = Option(args, "--format")) {
        if (!ParseVolumeFormat(*format))
            return Usage(ctx, _("unknown format '") + *format + _("'; use raw or qcow2"));
        options.Str("format", *format);
    }
    if (auto prealloc = Option(args, "--prealloc")) {
        if (!ParsePreallocation(*prealloc))
            return Usage(ctx, _("unknown preallocation '") + *prealloc +
                                  _("'; use sparse, full or metadata"));
        options.Str("prealloc", *prealloc);
    }
    if (auto backing = Option(args, "--backing"))
        options.Str("backing", *backing);
    std::string domain = DomainArg(args.positional[0]);
    GVariant *dict = g_variant_ref_sink(options.Finish());
    g_autoptr(GVariant) owned = dict;
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autofree char *id = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_create_volume_sync(ctx.client->proxy(), domain.c_str(),
                                             args.positional[1].c_str(), *size, dict, &id,
                                             nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    return FinishJob(ctx, id, "", PrintMadeVolume);
}

int RunClone(Context &ctx, const Args &args)
{
    dbus::DictBuilder options;
    if (auto format = Option(args, "--format")) {
        if (!ParseVolumeFormat(*format))
            return Usage(ctx, _("unknown format '") + *format + _("'; use raw or qcow2"));
        options.Str("format", *format);
    }
    std::string domain = DomainArg(args.positional[0]);
    const std::string &name = args.positional[2];
    GVariant *dict = g_variant_ref_sink(options.Finish());
    g_autoptr(GVariant) owned = dict;
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autofree char *id = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_clone_volume_sync(ctx.client->proxy(), domain.c_str(),
                                            args.positional[1].c_str(), name.c_str(), dict, &id,
                                            nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    return FinishJob(ctx, id, "clone " + name, PrintMadeVolume);
}

int RunDelete(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    const std::string &name = args.positional[1];
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autofree char *id = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_delete_volume_sync(ctx.client->proxy(), domain.c_str(), name.c_str(),
                                             &id, nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    return FinishJob(ctx, id, "", [&name](const dbus::JobView &) {
        printf(_("deleted volume %s\n"), name.c_str());
    });
}

int RunResize(Context &ctx, const Args &args)
{
    auto size = ParseSize(args.positional[2]);
    if (!size)
        return Usage(ctx, _("invalid size '") + args.positional[2] + "'");
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autofree char *id = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_resize_volume_sync(ctx.client->proxy(), domain.c_str(),
                                             args.positional[1].c_str(), *size, &id, nullptr,
                                             &error))
        return Fail(ctx, Client::Failed(error));
    return FinishJob(ctx, id, "", PrintMadeVolume);
}

int RunList(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) list = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_list_volumes_sync(ctx.client->proxy(), domain.c_str(), &list, nullptr,
                                            &error))
        return Fail(ctx, Client::Failed(error));
    std::vector<VolumeInfo> volumes;
    GVariantIter iter;
    g_variant_iter_init(&iter, list);
    while (GVariant *item = g_variant_iter_next_value(&iter)) {
        volumes.push_back(dbus::VolumeFromDict(item));
        g_variant_unref(item);
    }
    PrintVolumeTable(volumes);
    return 0;
}

int RunShow(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) volume = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_lookup_volume_sync(ctx.client->proxy(), domain.c_str(),
                                             args.positional[1].c_str(), &volume, nullptr,
                                             &error))
        return Fail(ctx, Client::Failed(error));
    PrintVolume(dbus::VolumeFromDict(volume));
    return 0;
}

/* `jobs --watch`: follows the signals until ^C or, with --until-idle, no job runs. */
struct Watch {
    Context *ctx;
    GMainLoop *loop;
    JobWatch view;
    bool until_idle;
    std::optional<Status> failure;

    /* Asks sdmd whether anything still runs: a signal may have been missed in between. */
    void QuitIfIdle()
    {
        if (!until_idle || view.active() > 0)
            return;
        g_autoptr(GVariant) list = nullptr;
        g_autoptr(GError) error = nullptr;
        if (!sdm_manager_call_list_jobs_sync(ctx->client->proxy(), &list, nullptr, &error)) {
            failure = Client::Failed(error);
            g_main_loop_quit(loop);
            return;
        }
        for (const auto &job : JobsFromList(list)) {
            if (!dbus::IsFinished(job.job.state))
                view.Changed(job);
        }
        if (view.active() == 0)
            g_main_loop_quit(loop);
    }
};

void OnWatchChanged(SdmManager *, GVariant *job, gpointer data)
{
    auto *watch = static_cast<Watch *>(data);
    watch->view.Changed(dbus::JobFromDict(job));
    watch->QuitIfIdle();
}

void OnWatchProgress(SdmManager *, const char *id, const char *step, guint64 done,
                     guint64 total, gpointer data)
{
    static_cast<Watch *>(data)->view.Progress(id, step, done, total);
}

void OnWatchClosed(GDBusConnection *, gboolean, GError *, gpointer data)
{
    auto *watch = static_cast<Watch *>(data);
    watch->failure = Status::Error(ErrorCode::kIoError, _("sdmd closed the connection"));
    g_main_loop_quit(watch->loop);
}

int RunJobs(Context &ctx, const Args &args)
{
    bool watch = Option(args, "--watch").has_value();
    bool until_idle = Option(args, "--until-idle").has_value();
    if (until_idle && !watch)
        return Usage(ctx, _("--until-idle goes with --watch"));
    if (!Reach(ctx))
        return kExitUnreachable;
    SdmManager *proxy = ctx.client->proxy();
    g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
    Watch state{&ctx, loop, JobWatch(isatty(1)), until_idle, std::nullopt};
    if (watch) {
        /* Subscribed before the listing, so no job falls between the two. */
        g_signal_connect(proxy, "job-changed", G_CALLBACK(OnWatchChanged), &state);
        g_signal_connect(proxy, "job-progress", G_CALLBACK(OnWatchProgress), &state);
        g_signal_connect(g_dbus_proxy_get_connection(G_DBUS_PROXY(proxy)), "closed",
                         G_CALLBACK(OnWatchClosed), &state);
        Status subscribed = ctx.client->SubscribeJobs();
        if (!subscribed.ok())
            return Fail(ctx, subscribed);
    }
    g_autoptr(GVariant) list = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_list_jobs_sync(proxy, &list, nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    std::vector<dbus::JobView> jobs = JobsFromList(list);
    if (!watch) {
        PrintJobTable(jobs);
        return 0;
    }
    for (const auto &job : jobs) {
        if (!dbus::IsFinished(job.job.state))
            state.view.Changed(job);
    }
    state.QuitIfIdle();
    if (!state.failure && !(until_idle && state.view.active() == 0)) {
        guint interrupt = g_unix_signal_add(
            SIGINT,
            [](gpointer data) -> gboolean {
                g_main_loop_quit(static_cast<GMainLoop *>(data));
                return G_SOURCE_CONTINUE;
            },
            loop);
        g_main_loop_run(loop);
        g_source_remove(interrupt);
    }
    g_signal_handlers_disconnect_by_data(proxy, &state);
    g_signal_handlers_disconnect_by_data(g_dbus_proxy_get_connection(G_DBUS_PROXY(proxy)),
                                         &state);
    return state.failure ? Fail(ctx, *state.failure) : 0;
}

int RunCancel(Context &ctx, const Args &args)
{
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_cancel_job_sync(ctx.client->proxy(), args.positional[0].c_str(),
                                          nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    printf(_("cancel requested for %s; it stops at its next step\n"),
           args.positional[0].c_str());
    return 0;
}

int RunUpgrade(Context &ctx, const Args &args)
{
    std::string path = AbsolutePath(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) report = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_upgrade_domain_sync(ctx.client->proxy(), path.c_str(), &report,
                                              nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    UpgradeReport upgrade = dbus::UpgradeReportFromDict(report);
    PrintUpgradeReport(path, upgrade);
    return upgrade.gc.errors ? kExitFailed : 0;
}

int RunGc(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) report = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_collect_garbage_sync(ctx.client->proxy(), domain.c_str(),
                                               Option(args, "--dry-run").has_value(), &report,
                                               nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    GcReport gc = dbus::GcReportFromDict(report);
    PrintGcReport(gc);
    return gc.errors ? kExitFailed : 0;
}

int RunCheck(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) report = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_check_domain_sync(ctx.client->proxy(), domain.c_str(), &report,
                                            nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    CheckReport check = dbus::CheckReportFromDict(report);
    PrintCheckReport(check);
    return check.ok() ? 0 : kExitFailed;
}

int RunHosts(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autoptr(GVariant) hosts = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_list_hosts_sync(ctx.client->proxy(), domain.c_str(), &hosts, nullptr,
                                          &error))
        return Fail(ctx, Client::Failed(error));
    /* A timestamp is the host's last renewal in seconds of its own monotonic clock (that
     * is sanlock's): it tells renewals of one host apart, never a date. */
    printf("%-7s %-10s %-8s %s\n", "HOST ID", "GENERATION", "STATE", "TIMESTAMP");
    GVariantIter iter;
    g_variant_iter_init(&iter, hosts);
    guint64 id, generation, timestamp;
    const char *state;
    while (g_variant_iter_next(&iter, "(tt&st)", &id, &generation, &state, &timestamp))
        printf("%-7llu %-10llu %-8s %llu\n", static_cast<unsigned long long>(id),
               static_cast<unsigned long long>(generation), state,
               static_cast<unsigned long long>(timestamp));
    return 0;
}

int RunLeaseXml(Context &ctx, const Args &args)
{
    std::string domain = DomainArg(args.positional[0]);
    if (!Reach(ctx))
        return kExitUnreachable;
    g_autofree char *xml = nullptr;
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_get_lease_xml_sync(ctx.client->proxy(), domain.c_str(),
                                             args.positional[1].c_str(), &xml, nullptr, &error))
        return Fail(ctx, Client::Failed(error));
    fputs(xml, stdout);
    if (*xml && xml[strlen(xml) - 1] != '\n')
        fputc('\n', stdout);
    return 0;
}

const std::vector<Command> &Commands()
{
    static const std::vector<Command> commands = {
        {"status", "", N_("sdmd's version, host id, domains and running jobs"), "", 0, {}, {},
         RunStatus},
        {"format", "PATH [--io-timeout SEC] [--sector-size 512|4096] [--alignment SIZE]",
         N_("make an empty directory a storage domain"),
         N_("The domain is not attached; attach it to use it here.\n"), 1,
         {"--io-timeout", "--sector-size", "--alignment"}, {}, RunFormat},
        {"attach", "PATH", N_("serve a formatted domain from this host"),
         N_("Attaching an attached domain is not an error.\n"), 1, {}, {}, RunAttach},
        {"upgrade", "PATH", N_("upgrade a domain of an older format in place"),
         N_("Detach the domain on every host first. Run it again after any interruption.\n"),
         1, {}, {}, RunUpgrade},
        {"detach", "DOMAIN", N_("stop serving a domain (refused while it has jobs)"), "", 1, {},
         {}, RunDetach},
        {"domains", "", N_("the attached domains"), "", 0, {}, {}, RunDomains},
        {"create", "DOMAIN NAME SIZE [--format raw|qcow2] [--prealloc sparse|full|metadata] "
                   "[--backing NAME]",
         N_("a new volume, or a qcow2 layer on NAME (SIZE 0: its size)"), "", 3,
         {"--format", "--prealloc", "--backing"}, {}, RunCreate},
        {"clone", "DOMAIN SOURCE NAME [--format raw|qcow2]",
         N_("copy a volume (its chain flattened), showing progress"),
         N_("^C asks sdmd to cancel the copy; a second ^C stops waiting.\n"), 3, {"--format"},
         {}, RunClone},
        {"delete", "DOMAIN NAME", N_("delete a leaf volume"), "", 2, {}, {}, RunDelete},
        {"resize", "DOMAIN NAME SIZE", N_("grow a volume"), "", 3, {}, {}, RunResize},
        {"list", "DOMAIN", N_("the volumes of a domain"), "", 1, {}, {}, RunList},
        {"show", "DOMAIN NAME", N_("one volume, with its path and lease slot"), "", 2, {}, {},
         RunShow},
        {"jobs", "[--watch [--until-idle]]", N_("the jobs sdmd runs or ran recently"),
         N_("--watch follows them live (a progress bar per job on a terminal, a line per\n"
            "event otherwise) until interrupted; --until-idle ends it when no job runs.\n"),
         0, {}, {"--watch", "--until-idle"}, RunJobs},
        {"cancel", "JOB", N_("ask a running job to stop"), "", 1, {}, {}, RunCancel},
        {"gc", "DOMAIN [--dry-run]", N_("collect abandoned transactions now"),
         N_("Exits 1 when a transaction could not be collected.\n"), 1, {}, {"--dry-run"},
         RunGc},
        {"check", "DOMAIN", N_("consistency check of a domain"),
         N_("Exits 1 when it finds problems.\n"), 1, {}, {}, RunCheck},
        {"hosts", "DOMAIN", N_("the hosts in the domain's lockspace"), "", 1, {}, {},
         RunHosts},
        {"lease-xml", "DOMAIN VOLUME", N_("the <lease> element for a VM using the volume"), "",
         2, {}, {}, RunLeaseXml},
    };
    return commands;
}

const Command *FindCommand(const std::string &name)
{
    for (const Command &c : Commands()) {
        if (name == c.name)
            return &c;
    }
    return nullptr;
}

int Main(int argc, char **argv)
{
    Context ctx;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            PrintToolUsage(stdout);
            return 0;
        }
        if (arg == "--version") {
            printf("sdm %s\n", SDM_VERSION);
            return 0;
        }
        if (arg != "--socket")
            return Usage(ctx, _("unknown option ") + arg);
        if (i + 1 >= argc)
            return Usage(ctx, _("--socket needs the path of sdmd's socket"));
        ctx.socket = argv[++i];
    }
    if (i >= argc)
        return Usage(ctx, _("no command given"));
    std::string name = argv[i];
    if (name == "help") {
        const Command *about = i + 1 < argc ? FindCommand(argv[i + 1]) : nullptr;
        if (i + 1 < argc && !about)
            return Usage(ctx, _("unknown command '") + std::string(argv[i + 1]) + "'");
        about ? PrintCommandUsage(*about, stdout) : PrintToolUsage(stdout);
        return 0;
    }
    ctx.command = FindCommand(name);
    if (!ctx.command)
        return Usage(ctx, _("unknown command '") + name + "'");
    const Command &command = *ctx.command;

    std::set<std::string> flags = command.flags;
    flags.insert("--help");
    Args args = ParseArgs(argc, argv, i + 1, flags);
    if (args.options.count("--help")) {
        PrintCommandUsage(command, stdout);
        return 0;
    }
    for (const auto &[option, value] : args.options) {
        if (!command.options.count(option) && !command.flags.count(option))
            return Usage(ctx, _("unknown option ") + option + _(" for '") + name + "'");
    }
    if (!args.missing_value.empty())
        return Usage(ctx, _("option ") + args.missing_value + _(" needs a value"));
    if (args.positional.size() != command.positional)
        return Usage(ctx, Printf(_("'%s' takes %zu arguments, not %zu"), name.c_str(),
                                 command.positional, args.positional.size()));
    return command.run(ctx, args);
}

}  // namespace
}  // namespace sdm::cli

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    bindtextdomain(SDM_GETTEXT_PACKAGE, SDM_LOCALEDIR);
    return sdm::cli::Main(argc, argv);
}
