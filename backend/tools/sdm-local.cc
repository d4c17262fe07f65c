/* sdm-local: drives a storage domain in-process, without sdmd.
 *
 * For single-host use, tests and the demo: every command opens the domain, runs one
 * engine operation as a job (progress and steps reported as events) and exits. Exit
 * status: 0 success, 1 the operation failed (or check found problems), 2 bad usage. */
#include <unistd.h>

#include <clocale>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "backend/engine/crashpoint.h"
#include "backend/engine/i18n.h"
#include "sdm/domain.h"
#include "sdm/job.h"

namespace {

constexpr char kUsage[] = N_(
    "Usage: sdm-local [--host-id N] COMMAND ARGS...\n"
    "\n"
    "Commands:\n"
    "  format DIR [--io-timeout SEC] [--sector-size 512|4096] [--alignment BYTES]\n"
    "  info DIR\n"
    "  create DIR NAME SIZE [--format raw|qcow2] [--prealloc sparse|full|metadata]\n"
    "                       [--backing NAME]      (SIZE may be 0 with --backing)\n"
    "  clone DIR SOURCE NAME [--format raw|qcow2]\n"
    "  delete DIR NAME\n"
    "  resize DIR NAME SIZE\n"
    "  list DIR\n"
    "  show DIR NAME                               one volume, with its path\n"
    "  gc DIR [--dry-run]\n"
    "  check DIR\n"
    "  steps [OPERATION]                           the named steps (crash points)\n"
    "\n"
    "SIZE is bytes, or a number with K, M, G, T, P (powers of 1024; KiB.. too)\n"
    "or KB, MB, GB, TB, PB (powers of 1000).\n");

struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::string> options; /* "--name" -> value ("" for flags) */
};

int Usage(const std::string &problem)
{
    if (!problem.empty())
        fprintf(stderr, "sdm-local: %s\n\n", problem.c_str());
    fputs(_(kUsage), problem.empty() ? stdout : stderr);
    return problem.empty() ? 0 : 2;
}

int Fail(const sdm::Status &status)
{
    fprintf(stderr, "sdm-local: %s: %s\n", sdm::ErrorCodeName(status.code()),
            status.ToString().c_str());
    return 1;
}

std::optional<uint64_t> ParseSize(const std::string &text)
{
    size_t digits = 0;
    while (digits < text.size() && isdigit(static_cast<unsigned char>(text[digits])))
        digits++;
    if (digits == 0 || digits > 20)
        return std::nullopt;
    std::string suffix = text.substr(digits);
    static const std::map<std::string, uint64_t> kUnits = {
        {"", 1}, {"B", 1},
        {"K", 1ull << 10}, {"KiB", 1ull << 10}, {"KB", 1000ull},
        {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"MB", 1000000ull},
        {"G", 1ull << 30}, {"GiB", 1ull << 30}, {"GB", 1000000000ull},
        {"T", 1ull << 40}, {"TiB", 1ull << 40}, {"TB", 1000000000000ull},
        {"P", 1ull << 50}, {"PiB", 1ull << 50}, {"PB", 1000000000000000ull},
    };
    auto unit = kUnits.find(suffix);
    if (unit == kUnits.end())
        return std::nullopt;
    errno = 0;
    unsigned long long value = strtoull(text.substr(0, digits).c_str(), nullptr, 10);
    if (errno == ERANGE || (value != 0 && unit->second > UINT64_MAX / value))
        return std::nullopt;
    return static_cast<uint64_t>(value) * unit->second;
}

std::string HumanSize(uint64_t bytes)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double value = static_cast<double>(bytes);
    int unit = 0;
    while (value >= 1024 && unit < 5) {
        value /= 1024;
        unit++;
    }
    char buf[32];
    snprintf(buf, sizeof(buf), unit ? "%.1f %s" : "%.0f %s", value, units[unit]);
    return buf;
}

/* Prints a job's progress: a bar on a terminal, a line per tenth otherwise. */
class ProgressPrinter {
public:
    explicit ProgressPrinter(const std::string &label) : label_(label), tty_(isatty(2)) {}

    void operator()(const sdm::JobEvent &event)
    {
        std::lock_guard lock(mutex_);
        const sdm::JobSnapshot &job = event.job;
        if (job.total == 0)
            return;
        int percent = static_cast<int>(job.done * 100 / job.total);
        if (tty_) {
            int filled = percent / 4;
            fprintf(stderr, "\r%s [%-25s] %3d%% %s / %s", label_.c_str(),
                    std::string(filled, '#').c_str(), percent, HumanSize(job.done).c_str(),
                    HumanSize(job.total).c_str());
            if (job.state != sdm::JobState::kRunning || percent == 100)
                fputc('\n', stderr);
        } else if (percent / 10 > last_tenth_) {
            last_tenth_ = percent / 10;
            fprintf(stderr, "%s: %d%% (%s of %s)\n", label_.c_str(), percent,
                    HumanSize(job.done).c_str(), HumanSize(job.total).c_str());
        }
    }

private:
    std::mutex mutex_;
    std::string label_;
    bool tty_;
    int last_tenth_ = -1;
};

/* Runs `work` as a job and waits for it, printing progress for copies. */
sdm::Status RunJob(const std::string &type, const std::string &object,
                   sdm::JobManager::Work work)
{
    sdm::JobManager jobs;
    ProgressPrinter printer(type + " " + object);
    jobs.Subscribe([&printer](const sdm::JobEvent &event) {
        if (event.kind == sdm::JobEventKind::kProgress)
            printer(event);
    });
    std::string id = jobs.Submit(type, object, std::move(work));
    std::optional<sdm::JobSnapshot> done;
    while (!(done = jobs.Wait(id, std::chrono::hours(1))) || !done->finished)
        ;
    return done->error;
}

void PrintVolume(const sdm::VolumeInfo &v)
{
    printf("name:       %s\nuuid:       %s\nimage:      %s\nformat:     %s\n"
           "capacity:   %llu (%s)\nallocation: %llu (%s)\nlegality:   %s\nparent:     %s\n"
           "lease slot: %llu\npath:       %s\n",
           v.name.c_str(), v.uuid.c_str(), v.image.c_str(), sdm::VolumeFormatName(v.format),
           static_cast<unsigned long long>(v.capacity), HumanSize(v.capacity).c_str(),
           static_cast<unsigned long long>(v.allocation), HumanSize(v.allocation).c_str(),
           sdm::LegalityName(v.legality), v.parent.empty() ? "-" : v.parent.c_str(),
           static_cast<unsigned long long>(v.slot), v.path.c_str());
}

Args Parse(int argc, char **argv, int first)
{
    static const std::set<std::string> kFlags = {"--dry-run"};
    Args args;
    for (int i = first; i < argc; i++) {
        std::string arg = argv[i];
        if (arg.rfind("--", 0) == 0 && arg.size() > 2) {
            if (kFlags.count(arg) || i + 1 >= argc)
                args.options[arg] = kFlags.count(arg) ? "" : std::string("\x01missing");
            else
                args.options[arg] = argv[++i];
        } else {
            args.positional.push_back(arg);
        }
    }
    return args;
}

int Main(int argc, char **argv)
{
    int first = 1;
    sdm::DomainOptions options;
    if (argc > 2 && std::string(argv[1]) == "--host-id") {
        auto id = ParseSize(argv[2]);
        if (!id || *id < 1 || *id > 2000)
            return Usage(_("--host-id takes a number from 1 to 2000"));
        options.host_id = static_cast<uint32_t>(*id);
        first = 3;
    }
    if (argc <= first || std::string(argv[first]) == "--help" || std::string(argv[first]) == "help")
        return Usage(argc <= first ? _("no command given") : "");
    std::string command = argv[first];
    Args args = Parse(argc, argv, first + 1);

    static const std::map<std::string, std::pair<size_t, std::set<std::string>>> kCommands = {
        {"format", {1, {"--io-timeout", "--sector-size", "--alignment"}}},
        {"info", {1, {}}},
        {"create", {3, {"--format", "--prealloc", "--backing"}}},
        {"clone", {3, {"--format"}}},
        {"delete", {2, {}}},
        {"resize", {3, {}}},
        {"list", {1, {}}},
        {"show", {2, {}}},
        {"gc", {1, {"--dry-run"}}},
        {"check", {1, {}}},
        {"steps", {0, {}}},
    };
    auto spec = kCommands.find(command);
    if (spec == kCommands.end())
        return Usage(_("unknown command '") + command + "'");
    if (command == "steps" ? args.positional.size() > 1
                           : args.positional.size() != spec->second.first)
        return Usage(_("wrong number of arguments for '") + command + "'");
    for (const auto &[name, value] : args.options) {
        if (!spec->second.second.count(name))
            return Usage(_("unknown option ") + name + _(" for '") + command + "'");
        if (value == "\x01missing")
            return Usage(_("option ") + name + _(" needs a value"));
    }
    auto option = [&args](const std::string &name) -> std::optional<std::string> {
        auto it = args.options.find(name);
        return it == args.options.end() ? std::nullopt : std::optional(it->second);
    };
    auto size_arg = [](const std::string &text, uint64_t *out) {
        auto size = ParseSize(text);
        if (!size)
            return false;
        *out = *size;
        return true;
    };

    if (command == "steps") {
        for (const auto &step : args.positional.empty() ? sdm::AllSteps()
                                                        : sdm::StepsOf(args.positional[0]))
            printf("%s\n", step.c_str());
        return 0;
    }
    const std::string &dir = args.positional[0];
    if (command == "format") {
        sdm::FormatParams params;
        uint64_t value;
        if (auto v = option("--io-timeout")) {
            if (!size_arg(*v, &value) || value > 600)
                return Usage(_("--io-timeout takes seconds from 1 to 600"));
            params.io_timeout = static_cast<uint32_t>(value);
        }
        if (auto v = option("--sector-size")) {
            if (!size_arg(*v, &value) || value > 4096)
                return Usage(_("--sector-size takes 512 or 4096"));
            params.sector_size = static_cast<uint32_t>(value);
        }
        if (auto v = option("--alignment")) {
            if (!size_arg(*v, &value))
                return Usage(_("--alignment takes a size such as 1M"));
            params.alignment = value;
        }
        auto info = sdm::Domain::Format(dir, params);
        if (!info.ok())
            return Fail(info.status());
        printf(_("formatted storage domain %s at %s\n"), info->uuid.c_str(), dir.c_str());
        return 0;
    }

    auto domain = sdm::Domain::Open(dir, options);
    if (!domain.ok())
        return Fail(domain.status());
    sdm::Domain &d = **domain;

    if (command == "info") {
        const sdm::DomainInfo &info = d.info();
        printf("uuid:        %s\npath:        %s\nversion:     %u\nio_timeout:  %u\n"
               "sector_size: %u\nalignment:   %llu\nlockspace:   %s\ndurability:  %s\n",
               info.uuid.c_str(), info.path.c_str(), info.version, info.io_timeout,
               info.sector_size, static_cast<unsigned long long>(info.alignment),
               info.lockspace.c_str(), info.durability.c_str());
        return 0;
    }
    if (command == "create") {
        sdm::CreateParams params;
        params.name = args.positional[1];
        if (!size_arg(args.positional[2], &params.capacity))
            return Usage(_("invalid size '") + args.positional[2] + "'");
        if (auto v = option("--format")) {
            auto format = sdm::ParseVolumeFormat(*v);
            if (!format)
                return Usage(_("unknown format '") + *v + _("'; use raw or qcow2"));
            params.format = *format;
        }
        if (auto v = option("--prealloc")) {
            auto prealloc = sdm::ParsePreallocation(*v);
            if (!prealloc)
                return Usage(_("unknown preallocation '") + *v +
                             _("'; use sparse, full or metadata"));
            params.prealloc = *prealloc;
        }
        params.backing = option("--backing").value_or("");
        std::optional<sdm::VolumeInfo> created;
        sdm::Status status = RunJob("create", params.name, [&](sdm::OpObserver &observer) {
            auto result = d.CreateVolume(params, &observer);
            if (result.ok())
                created = *result;
            return result.ok() ? sdm::Status::Ok() : result.status();
        });
        if (!status.ok())
            return Fail(status);
        PrintVolume(*created);
        return 0;
    }
    if (command == "clone") {
        sdm::CloneParams params;
        params.source = args.positional[1];
        params.name = args.positional[2];
        if (auto v = option("--format")) {
            params.format = sdm::ParseVolumeFormat(*v);
            if (!params.format)
                return Usage(_("unknown format '") + *v + _("'; use raw or qcow2"));
        }
        std::optional<sdm::VolumeInfo> cloned;
        sdm::Status status = RunJob("clone", params.name, [&](sdm::OpObserver &observer) {
            auto result = d.CloneVolume(params, &observer);
            if (result.ok())
                cloned = *result;
            return result.ok() ? sdm::Status::Ok() : result.status();
        });
        if (!status.ok())
            return Fail(status);
        PrintVolume(*cloned);
        return 0;
    }
    if (command == "delete") {
        const std::string &name = args.positional[1];
        sdm::Status status = RunJob("delete", name, [&](sdm::OpObserver &observer) {
            return d.DeleteVolume(name, &observer);
        });
        if (!status.ok())
            return Fail(status);
        printf(_("deleted volume %s\n"), name.c_str());
        return 0;
    }
    if (command == "resize") {
        const std::string &name = args.positional[1];
        uint64_t capacity;
        if (!size_arg(args.positional[2], &capacity))
            return Usage(_("invalid size '") + args.positional[2] + "'");
        std::optional<sdm::VolumeInfo> resized;
        sdm::Status status = RunJob("resize", name, [&](sdm::OpObserver &observer) {
            auto result = d.ResizeVolume(name, capacity, &observer);
            if (result.ok())
                resized = *result;
            return result.ok() ? sdm::Status::Ok() : result.status();
        });
        if (!status.ok())
            return Fail(status);
        PrintVolume(*resized);
        return 0;
    }
    if (command == "list") {
        auto volumes = d.ListVolumes();
        if (!volumes.ok())
            return Fail(volumes.status());
        printf("%-24s %-6s %12s %12s %-8s %-36s %s\n", "NAME", "FORMAT", "CAPACITY",
               "ALLOCATION", "LEGALITY", "IMAGE", "PARENT");
        for (const auto &v : *volumes)
            printf("%-24s %-6s %12s %12s %-8s %-36s %s\n", v.name.c_str(),
                   sdm::VolumeFormatName(v.format), HumanSize(v.capacity).c_str(),
                   HumanSize(v.allocation).c_str(), sdm::LegalityName(v.legality),
                   v.image.c_str(), v.parent.empty() ? "-" : v.parent.c_str());
        return 0;
    }
    if (command == "show") {
        auto volume = d.LookupVolume(args.positional[1]);
        if (!volume.ok())
            return Fail(volume.status());
        PrintVolume(*volume);
        return 0;
    }
    if (command == "gc") {
        sdm::GcOptions gc_options;
        gc_options.dry_run = option("--dry-run").has_value();
        auto report = d.CollectGarbage(gc_options);
        if (!report.ok())
            return Fail(report.status());
        for (const auto &line : report->lines)
            printf("%s\n", line.c_str());
        printf(_("gc: %u transactions seen, %u collected (%u completed), %u live, %u errors\n"),
               report->markers_seen, report->collected, report->rolled_forward,
               report->skipped_live, report->errors);
        return report->errors ? 1 : 0;
    }
    if (command == "check") {
        auto report = d.Check();
        if (!report.ok())
            return Fail(report.status());
        for (const auto &problem : report->problems)
            printf("problem: %s\n", problem.c_str());
        printf(_("check: %u images, %u volumes, %u pending transactions, %zu problems\n"),
               report->images, report->volumes, report->pending_transactions,
               report->problems.size());
        return report->ok() ? 0 : 1;
    }
    return Usage(_("unknown command '") + command + "'");
}

}  // namespace

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    bindtextdomain(SDM_GETTEXT_PACKAGE, SDM_LOCALEDIR);
    return Main(argc, argv);
}
