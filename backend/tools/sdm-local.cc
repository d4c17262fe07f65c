/* sdm-local: drives a storage domain in-process, without sdmd.
 *
 * For single-host use, tests and the demo: every command opens the domain, runs one
 * engine operation as a job (progress and steps reported as events) and exits. Exit
 * status: 0 success, 1 the operation failed (or check found problems), 2 bad usage. */
#include <unistd.h>

#include <clocale>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "backend/engine/crashpoint.h"
#include "backend/engine/i18n.h"
#include "backend/tools/cli_util.h"
#include "sdm/domain.h"
#include "sdm/job.h"

namespace {

using sdm::cli::ParseSize;

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
    "  upgrade DIR                                 a format 1 domain to format 2, in place\n"
    "  steps [OPERATION]                           the named steps (crash points)\n"
    "\n"
    "SIZE is bytes, or a number with K, M, G, T, P (powers of 1024; KiB.. too)\n"
    "or KB, MB, GB, TB, PB (powers of 1000).\n");

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

/* Runs `work` as a job and waits for it, printing progress for copies. */
sdm::Status RunJob(const std::string &type, const std::string &object,
                   sdm::JobManager::Work work)
{
    sdm::JobManager jobs;
    sdm::cli::ProgressPrinter printer(type + " " + object, isatty(2));
    jobs.Subscribe([&printer](const sdm::JobEvent &event) {
        if (event.kind == sdm::JobEventKind::kProgress)
            printer.Update(event.job.done, event.job.total, false);
    });
    std::string id = jobs.Submit(type, object, std::move(work));
    std::optional<sdm::JobSnapshot> done;
    while (!(done = jobs.Wait(id, std::chrono::hours(1))) || !done->finished)
        ;
    printer.Update(done->done, done->total, true);
    return done->error;
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
    sdm::cli::Args args = sdm::cli::ParseArgs(argc, argv, first + 1, {"--dry-run"});

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
        {"upgrade", {1, {}}},
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
    }
    if (!args.missing_value.empty())
        return Usage(_("option ") + args.missing_value + _(" needs a value"));
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

    if (command == "upgrade") {
        auto report = sdm::Domain::Upgrade(dir, options);
        if (!report.ok())
            return Fail(report.status());
        sdm::cli::PrintUpgradeReport(dir, *report);
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
        sdm::cli::PrintVolume(*created);
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
        sdm::cli::PrintVolume(*cloned);
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
        sdm::cli::PrintVolume(*resized);
        return 0;
    }
    if (command == "list") {
        auto volumes = d.ListVolumes();
        if (!volumes.ok())
            return Fail(volumes.status());
        sdm::cli::PrintVolumeTable(*volumes);
        return 0;
    }
    if (command == "show") {
        auto volume = d.LookupVolume(args.positional[1]);
        if (!volume.ok())
            return Fail(volume.status());
        sdm::cli::PrintVolume(*volume);
        return 0;
    }
    if (command == "gc") {
        sdm::GcOptions gc_options;
        gc_options.dry_run = option("--dry-run").has_value();
        auto report = d.CollectGarbage(gc_options);
        if (!report.ok())
            return Fail(report.status());
        sdm::cli::PrintGcReport(*report);
        return report->errors ? 1 : 0;
    }
    if (command == "check") {
        auto report = d.Check();
        if (!report.ok())
            return Fail(report.status());
        sdm::cli::PrintCheckReport(*report);
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
