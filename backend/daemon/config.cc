/* Implementation of sdmd's configuration; see config.h.
 *
 * GKeyFile parses the values; a scan of the text beforehand maps every key to its line
 * (GKeyFile does not keep line numbers) and refuses unknown groups and keys, so a typo
 * ("gc_intreval") is an error rather than a silently ignored setting. */
#include "backend/daemon/config.h"

#include <grp.h>
#include <sys/un.h>

#include <glib.h>

#include <map>

#include "backend/engine/i18n.h"

namespace sdm::daemon {

namespace {

constexpr char kGroup[] = "sdmd";
constexpr uint32_t kMaxHostId = 2000;
constexpr uint32_t kMaxInterval = 7 * 24 * 3600;

constexpr const char *kKeys[] = {
    "socket", "socket_group", "host_id", "gc_interval", "job_expiry",
    "lease_backend", "sanlock_run_dir", "domain_lease_linger_ms", "domains", "log_level",
};

std::string KnownKeys()
{
    std::string list;
    for (const char *key : kKeys)
        list += (list.empty() ? "" : ", ") + std::string(key);
    return list;
}

Status LineError(const std::string &name, int line, const std::string &problem)
{
    return Status::Error(ErrorCode::kInvalidArgument,
                         name + ":" + std::to_string(line) + ": " + problem);
}

/* Maps each key of [sdmd] to the line that sets it (the last one, as GKeyFile keeps). */
Result<std::map<std::string, int>> ScanLines(const std::string &text, const std::string &name)
{
    std::map<std::string, int> lines;
    g_auto(GStrv) split = g_strsplit(text.c_str(), "\n", -1);
    std::string group;
    int number = 0;
    for (char **raw = split; *raw; raw++) {
        number++;
        std::string line = g_strstrip(*raw);
        if (line.empty() || line[0] == '#')
            continue;
        if (line[0] == '[') {
            if (line.back() != ']')
                return LineError(name, number,
                                 _("a group header must look like [sdmd]; fix the line"));
            group = line.substr(1, line.size() - 2);
            if (group != kGroup)
                return LineError(name, number,
                                 _("unknown group [") + group +
                                     _("]; sdmd reads only [sdmd], put its keys there"));
            continue;
        }
        size_t eq = line.find('=');
        if (eq == std::string::npos)
            return LineError(name, number,
                             "'" + line +
                                 _("' is not a key=value line, a [group] or a # comment; "
                                   "fix or remove it"));
        g_autofree char *key = g_strstrip(g_strndup(line.c_str(), eq));
        if (group.empty())
            return LineError(name, number,
                             std::string(key) + _(": the key comes before any group; put it "
                                                  "under [sdmd]"));
        bool known = false;
        for (const char *k : kKeys)
            known = known || std::string(k) == key;
        if (!known)
            return LineError(name, number,
                             std::string(key) + _(": unknown key; the keys of [sdmd] are ") +
                                 KnownKeys());
        lines[key] = number;
    }
    return lines;
}

/* Reads and checks the value of each key the file sets. */
class Reader {
public:
    Reader(GKeyFile *file, const std::map<std::string, int> &lines, const std::string &name)
        : file_(file), lines_(lines), name_(name) {}

    bool Has(const char *key) const { return lines_.count(key) != 0; }

    std::string String(const char *key) const
    {
        g_autofree char *value = g_key_file_get_string(file_, kGroup, key, nullptr);
        return value ? g_strstrip(value) : "";
    }

    std::vector<std::string> List(const char *key) const
    {
        std::vector<std::string> items;
        g_auto(GStrv) values = g_key_file_get_string_list(file_, kGroup, key, nullptr, nullptr);
        for (char **v = values; v && *v; v++) {
            std::string item = g_strstrip(*v);
            if (!item.empty())
                items.push_back(item);
        }
        return items;
    }

    Status Uint(const char *key, uint32_t min, uint32_t max, uint32_t *out) const
    {
        std::string text = String(key);
        guint64 value = 0;
        if (!g_ascii_string_to_unsigned(text.c_str(), 10, min, max, &value, nullptr))
            return Error(key, "'" + text + _("' is not a whole number from ") +
                                  std::to_string(min) + _(" to ") + std::to_string(max));
        *out = static_cast<uint32_t>(value);
        return Status::Ok();
    }

    Status Error(const char *key, const std::string &problem) const
    {
        return LineError(name_, lines_.at(key), std::string(key) + ": " + problem);
    }

private:
    GKeyFile *file_;
    const std::map<std::string, int> &lines_;
    const std::string &name_;
};

Status ReadSocket(const Reader &r, Config *config)
{
    if (r.Has("socket")) {
        config->socket = r.String("socket");
        if (config->socket.empty() || config->socket[0] != '/')
            return r.Error("socket", _("give the socket as an absolute path, e.g. "
                                       "/run/sdmd/sdmd.sock"));
        if (config->socket.size() >= sizeof(sockaddr_un::sun_path))
            return r.Error("socket", _("the path is longer than a unix socket allows (107 "
                                       "bytes); choose a shorter one"));
    }
    if (r.Has("socket_group")) {
        config->socket_group = r.String("socket_group");
        if (!config->socket_group.empty() && !getgrnam(config->socket_group.c_str()))
            return r.Error("socket_group",
                           _("there is no group '") + config->socket_group +
                               _("' on this host; create it (groupadd) or leave the key empty "
                                 "for root-only access"));
    }
    return Status::Ok();
}

Status ReadRest(const Reader &r, Config *config)
{
    if (r.Has("host_id"))
        SDM_RETURN_IF_ERROR(r.Uint("host_id", 1, kMaxHostId, &config->host_id));
    if (r.Has("gc_interval"))
        SDM_RETURN_IF_ERROR(r.Uint("gc_interval", 0, kMaxInterval, &config->gc_interval));
    if (r.Has("job_expiry"))
        SDM_RETURN_IF_ERROR(r.Uint("job_expiry", 1, kMaxInterval, &config->job_expiry));
    if (r.Has("lease_backend")) {
        std::string backend = r.String("lease_backend");
        if (backend == LeaseBackendName(LeaseBackend::kLocal))
            config->lease_backend = LeaseBackend::kLocal;
        else if (backend == LeaseBackendName(LeaseBackend::kSanlock))
            config->lease_backend = LeaseBackend::kSanlock;
        else
            return r.Error("lease_backend",
                           "'" + backend +
                               _("' is not a lease backend; use local (one host) or sanlock "
                                 "(shared storage, needs a running sanlock daemon)"));
    }
    if (r.Has("sanlock_run_dir")) {
        config->sanlock_run_dir = r.String("sanlock_run_dir");
        if (!config->sanlock_run_dir.empty() && config->sanlock_run_dir[0] != '/')
            return r.Error("sanlock_run_dir",
                           _("give the sanlock daemon's run directory as an absolute path, "
                             "or leave the key out for sanlock's default"));
    }
    if (r.Has("domain_lease_linger_ms"))
        return r.Error("domain_lease_linger_ms",
                       _("no longer used: since domain format 2 no operation holds the domain "
                         "lease, so there is nothing to keep; remove the line"));
    if (r.Has("domains")) {
        config->domains = r.List("domains");
        for (const auto &path : config->domains) {
            if (path[0] != '/')
                return r.Error("domains", "'" + path +
                                              _("' is not an absolute path; list domain "
                                                "directories as absolute paths separated by ';'"));
        }
    }
    if (r.Has("log_level")) {
        std::string level = r.String("log_level");
        auto parsed = ParseLogLevel(level);
        if (!parsed)
            return r.Error("log_level",
                           "'" + level + _("' is not a log level; use error, warning, info or "
                                           "debug"));
        config->log_level = *parsed;
    }
    return Status::Ok();
}

}  // namespace

const char *LeaseBackendName(LeaseBackend backend)
{
    switch (backend) {
    case LeaseBackend::kLocal: return "local";
    case LeaseBackend::kSanlock: return "sanlock";
    }
    return "unknown";
}

Result<Config> ParseConfig(const std::string &text, const std::string &name)
{
    auto lines = ScanLines(text, name);
    if (!lines.ok())
        return lines.status();
    g_autoptr(GKeyFile) file = g_key_file_new();
    g_autoptr(GError) error = nullptr;
    if (!g_key_file_load_from_data(file, text.c_str(), text.size(), G_KEY_FILE_NONE, &error))
        return Status::Error(ErrorCode::kInvalidArgument,
                             name + ": " + error->message + _("; fix the file"));
    Reader reader(file, *lines, name);
    Config config;
    SDM_RETURN_IF_ERROR(ReadSocket(reader, &config));
    SDM_RETURN_IF_ERROR(ReadRest(reader, &config));
    return config;
}

Result<Config> LoadConfig(const std::string &path, bool must_exist)
{
    g_autofree char *text = nullptr;
    gsize length = 0;
    g_autoptr(GError) error = nullptr;
    if (!g_file_get_contents(path.c_str(), &text, &length, &error)) {
        if (!must_exist && g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return Config();
        return Status::Error(ErrorCode::kInvalidArgument,
                             std::string(_("cannot read the configuration: ")) +
                                 error->message + _("; check --config"));
    }
    return ParseConfig(std::string(text, length), path);
}

}  // namespace sdm::daemon
