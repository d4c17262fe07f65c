/* Implementation of the CLI's connection to sdmd; see client.h. */
#include "backend/cli/client.h"

#include <glib-unix.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

#include "backend/engine/i18n.h"
#include "backend/tools/cli_util.h"

namespace sdm::cli {

namespace {

/* One WaitJob call waits at most this long; the client calls again until the job ends. */
constexpr guint kWaitSliceMs = 10000;

struct Waiting {
    SdmManager *proxy;
    std::string id;
    GMainLoop *loop;
    GCancellable *cancellable;
    std::optional<ProgressPrinter> printer;
    std::optional<Result<dbus::JobView>> outcome;
    int interrupts = 0;
};

void CallWait(Waiting *w);

void OnWaited(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(GVariant) job = nullptr;
    g_autoptr(GError) error = nullptr;
    bool ok = sdm_manager_call_wait_job_finish(SDM_MANAGER(source), &job, result, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return; /* the waiting is over; `data` may be gone */
    auto *w = static_cast<Waiting *>(data);
    if (!ok) {
        w->outcome.emplace(Client::Failed(error));
        g_main_loop_quit(w->loop);
        return;
    }
    dbus::JobView view = dbus::JobFromDict(job);
    if (!dbus::IsFinished(view.job.state)) {
        CallWait(w);
        return;
    }
    if (w->printer)
        w->printer->Update(view.job.done, view.job.total, true);
    w->outcome.emplace(std::move(view));
    g_main_loop_quit(w->loop);
}

void CallWait(Waiting *w)
{
    sdm_manager_call_wait_job(w->proxy, w->id.c_str(), kWaitSliceMs, w->cancellable, OnWaited,
                              w);
}

void OnProgress(SdmManager *, const char *id, const char *, guint64 done, guint64 total,
                gpointer data)
{
    auto *w = static_cast<Waiting *>(data);
    if (w->printer && w->id == id)
        w->printer->Update(done, total, false);
}

void OnCancelled(GObject *source, GAsyncResult *result, gpointer)
{
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_cancel_job_finish(SDM_MANAGER(source), result, &error) &&
        !g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        Status status = Client::Failed(error);
        fprintf(stderr, "sdm: %s: %s\n", ErrorCodeName(status.code()), status.message().c_str());
    }
}

gboolean OnInterrupt(gpointer data)
{
    auto *w = static_cast<Waiting *>(data);
    if (++w->interrupts == 1) {
        fprintf(stderr, _("\nsdm: cancelling %s; interrupt again to stop waiting (the job then "
                          "goes on)\n"),
                w->id.c_str());
        sdm_manager_call_cancel_job(w->proxy, w->id.c_str(), w->cancellable, OnCancelled,
                                    nullptr);
        return G_SOURCE_CONTINUE;
    }
    w->outcome.emplace(Status::Error(
        ErrorCode::kCancelled,
        Printf(_("stopped waiting for %s, which goes on in sdmd; follow it with `sdm jobs "
                 "--watch`"),
               w->id.c_str())));
    g_main_loop_quit(w->loop);
    return G_SOURCE_CONTINUE;
}

}  // namespace

Result<std::unique_ptr<Client>> Client::Connect(const std::string &socket)
{
    dbus::ErrorQuark();
    g_autofree char *escaped = g_dbus_address_escape_value(socket.c_str());
    g_autofree char *address = g_strdup_printf("unix:path=%s", escaped);
    g_autoptr(GError) error = nullptr;
    GDBusConnection *connection = g_dbus_connection_new_for_address_sync(
        address, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, nullptr, nullptr, &error);
    if (!connection)
        return Status::Error(ErrorCode::kIoError, error->message);
    SdmManager *proxy = sdm_manager_proxy_new_sync(
        connection,
        static_cast<GDBusProxyFlags>(G_DBUS_PROXY_FLAGS_DO_NOT_LOAD_PROPERTIES |
                                     G_DBUS_PROXY_FLAGS_DO_NOT_AUTO_START),
        nullptr, dbus::kObjectPath, nullptr, &error);
    if (!proxy) {
        g_object_unref(connection);
        return Status::Error(ErrorCode::kIoError, error->message);
    }
    /* A gc or check of a large domain takes as long as it takes; ^C ends the wait. */
    g_dbus_proxy_set_default_timeout(G_DBUS_PROXY(proxy), G_MAXINT);
    return std::unique_ptr<Client>(new Client(connection, proxy));
}

Client::~Client()
{
    g_object_unref(proxy_);
    g_dbus_connection_close_sync(connection_, nullptr, nullptr);
    g_object_unref(connection_);
}

bool Client::Lost() const
{
    return g_dbus_connection_is_closed(connection_);
}

Status Client::SubscribeJobs()
{
    g_autoptr(GError) error = nullptr;
    if (!sdm_manager_call_subscribe_jobs_sync(proxy_, nullptr, &error))
        return Failed(error);
    return Status::Ok();
}

Result<dbus::JobView> Client::WaitForJob(const std::string &id, const std::string &label)
{
    g_autoptr(GMainLoop) loop = g_main_loop_new(nullptr, FALSE);
    g_autoptr(GCancellable) cancellable = g_cancellable_new();
    Waiting w{proxy_, id, loop, cancellable, std::nullopt, std::nullopt};
    gulong progress = 0;
    if (!label.empty()) {
        /* Its failure is the wait's too (the connection is gone), and reported there. */
        SubscribeJobs();
        w.printer.emplace(label, isatty(2));
        progress = g_signal_connect(proxy_, "job-progress", G_CALLBACK(OnProgress), &w);
    }
    guint interrupt = g_unix_signal_add(SIGINT, OnInterrupt, &w);
    CallWait(&w);
    g_main_loop_run(loop);
    g_cancellable_cancel(cancellable);
    g_source_remove(interrupt);
    if (progress)
        g_signal_handler_disconnect(proxy_, progress);
    return std::move(*w.outcome);
}

}  // namespace sdm::cli
