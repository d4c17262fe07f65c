/* Real sdmd processes for the integration suites, and the client side of talking to them.
 *
 * A DaemonHarness writes a private configuration (socket, log level, no GC timer unless
 * asked) into a scratch directory, starts `sdmd --foreground` with its stderr in a log
 * file there, and waits until the socket answers. Stop sends SIGTERM and reports the exit
 * status, so a test sees a daemon that does not stop cleanly (or that ASan aborts at exit).
 * Calls go over a real GDBus peer-to-peer connection. Not thread-safe; one harness per
 * test. */
#pragma once

#include <gio/gio.h>
#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/test_support.h"

namespace sdm::testing {

/* The binaries under test ($SDM_SDMD, $SDM_SDM). */
std::string SdmdPath();
std::string SdmPath();

class DaemonHarness {
public:
    /* `dir` holds the configuration, the socket and the log; it must outlive the harness. */
    explicit DaemonHarness(std::string dir);
    ~DaemonHarness();
    DaemonHarness(const DaemonHarness &) = delete;
    DaemonHarness &operator=(const DaemonHarness &) = delete;

    /* Starts sdmd; `config` lines go into [sdmd] after the harness's own (and so win over
     * them), `env` entries ("NAME=value") into its environment. Fails if sdmd exits or its
     * socket does not answer within a generous limit. */
    ::testing::AssertionResult Start(const std::string &config = "",
                                     const std::vector<std::string> &env = {});
    /* SIGTERM and wait: the exit status, or 128 + signal if a signal ended it. */
    int Stop();
    /* SIGKILL, as a crash would: the socket file stays behind. */
    void Kill();
    bool running() const { return pid_ > 0; }

    const std::string &socket() const { return socket_; }
    const std::string &config_path() const { return config_path_; }
    std::string Log() const;

    /* A new peer-to-peer connection to the daemon; null with `error` set if refused. */
    GDBusConnection *Connect(GError **error) const;

private:
    std::string dir_;
    std::string socket_;
    std::string config_path_;
    std::string log_path_;
    pid_t pid_ = -1;
};

/* Calls org.libvirt.Sdm1.Manager.<method> (args: a tuple, floating, or null). */
GVariant *Call(GDBusConnection *connection, const char *method, GVariant *args,
               GError **error);
/* The D-Bus error name of a failed call, "" for none. */
std::string ErrorName(const GError *error);

/* Iterates the default main context (where signal subscriptions deliver) until `done`
 * holds or `limit` passes; false on the limit. */
bool SpinUntil(const std::function<bool()> &done,
               std::chrono::milliseconds limit = std::chrono::seconds(60));

/* Starts argv with stdout and stderr into `output`, as `uid`/`gid` unless they are -1. */
pid_t Spawn(const std::vector<std::string> &argv, const std::string &output,
            const std::vector<std::string> &env = {}, uid_t uid = static_cast<uid_t>(-1),
            gid_t gid = static_cast<gid_t>(-1));
/* Waits for a spawned process: its exit status, or 128 + signal. */
int WaitExit(pid_t pid);
/* Runs argv as `uid`/`gid` (supplementary groups dropped) and waits; output captured. */
CommandResult RunAs(uid_t uid, gid_t gid, const std::vector<std::string> &argv,
                    const std::string &scratch);

/* Typed reads from an a{sv} reply; a missing or mistyped key gives "<missing>", ~0. */
std::string Str(GVariant *dict, const char *key);
uint64_t U64(GVariant *dict, const char *key);
uint32_t U32(GVariant *dict, const char *key);
std::vector<std::string> Strv(GVariant *dict, const char *key);
/* An a{sv} of `items` (floating, for a call's arguments). */
GVariant *Opts(std::initializer_list<std::pair<const char *, GVariant *>> items);

}  // namespace sdm::testing
