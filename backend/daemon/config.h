/* sdmd's configuration: the [sdmd] group of a key file (docs/sdmd.conf.example).
 *
 * Every key has a documented default; a missing default file means all defaults. A bad
 * file is refused whole, with a message that names the file, the line and the key and
 * says what the key accepts: a daemon that half-understands its configuration is worse
 * than one that does not start. Plain values; thread-safe. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/daemon/log.h"
#include "sdm/status.h"

namespace sdm::daemon {

inline constexpr char kDefaultConfigPath[] = "/etc/libvirt-sdm/sdmd.conf";

/* Which LeaseManager protects an attached domain's transactions (see
 * Service::DomainOptionsFor). */
enum class LeaseBackend { kLocal, kSanlock };

struct Config {
    std::string socket = "/run/sdmd/sdmd.sock";
    std::string socket_group;          /* empty: root only, socket mode 0600 */
    uint32_t host_id = 1;              /* 1..2000 */
    uint32_t gc_interval = 60;         /* seconds between sweeps; 0 disables the timer */
    uint32_t job_expiry = 600;         /* seconds a finished job stays listed */
    LeaseBackend lease_backend = LeaseBackend::kLocal;
    std::string sanlock_run_dir;       /* empty: sanlock's default run directory */
    std::vector<std::string> domains;  /* attached at start */
    LogLevel log_level = LogLevel::kInfo;
};

/* Reads `path`; with `must_exist` false a missing file yields the defaults. */
Result<Config> LoadConfig(const std::string &path, bool must_exist);
/* Parses a configuration's text; `name` is what messages call it. */
Result<Config> ParseConfig(const std::string &text, const std::string &name);

const char *LeaseBackendName(LeaseBackend backend);

}  // namespace sdm::daemon
