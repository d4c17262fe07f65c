/* The sdm CLI's side of the D-Bus connection to sdmd.
 *
 * A Client holds one peer-to-peer connection and the generated proxy of
 * org.libvirt.Sdm1.Manager. Every call is synchronous except WaitForJob, which runs a
 * main loop so that progress signals and ^C are handled while it waits. Failed calls come
 * back as Status values with the daemon's error code and message. Not thread-safe: one
 * Client per thread (the CLI has one thread). */
#pragma once

#include <gio/gio.h>

#include <memory>
#include <string>

#include "backend/daemon/dbus_api.h"
#include "backend/daemon/sdm1-dbus.h"
#include "sdm/status.h"

namespace sdm::cli {

class Client {
public:
    /* Connects to sdmd's socket; the Status says why not (no socket, refused, ...). */
    static Result<std::unique_ptr<Client>> Connect(const std::string &socket);
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    SdmManager *proxy() const { return proxy_; }
    /* True once the connection is gone: sdmd stopped or died under us. */
    bool Lost() const;

    /* The Status for a failed call's `error` (consumes nothing). */
    static Status Failed(const GError *error) { return dbus::StatusFromError(error); }

    /* Asks sdmd to send this connection the JobChanged and JobProgress signals. */
    Status SubscribeJobs();

    /* Waits until job `id` ends and returns it. With `label`, shows its progress on
     * stderr. The first ^C asks sdmd to cancel the job (and keeps waiting to report the
     * outcome); a second one stops waiting. */
    Result<dbus::JobView> WaitForJob(const std::string &id, const std::string &label);

private:
    Client(GDBusConnection *connection, SdmManager *proxy)
        : connection_(connection), proxy_(proxy) {}

    GDBusConnection *connection_;
    SdmManager *proxy_;
};

}  // namespace sdm::cli
