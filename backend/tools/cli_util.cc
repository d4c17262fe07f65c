/* Implementation of the tools' shared helpers; see cli_util.h. */
#include "backend/tools/cli_util.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "backend/engine/i18n.h"

namespace sdm::cli {

Args ParseArgs(int argc, char **argv, int first, const std::set<std::string> &flags)
{
    Args args;
    bool options_done = false;
    for (int i = first; i < argc; i++) {
        std::string arg = argv[i];
        if (!options_done && arg == "--") {
            options_done = true;
        } else if (!options_done && arg.rfind("--", 0) == 0) {
            if (flags.count(arg)) {
                args.options[arg] = "";
            } else if (i + 1 < argc) {
                args.options[arg] = argv[++i];
            } else {
                args.options[arg] = "";
                args.missing_value = arg;
            }
        } else {
            args.positional.push_back(arg);
        }
    }
    return args;
}

std::optional<uint64_t> ParseSize(const std::string &text)
{
    size_t digits = 0;
    while (digits < text.size() && isdigit(static_cast<unsigned char>(text[digits])))
        digits++;
    if (digits == 0 || digits > 20)
        return std::nullopt;
    static const std::map<std::string, uint64_t> kUnits = {
        {"", 1}, {"B", 1},
        {"K", 1ull << 10}, {"KiB", 1ull << 10}, {"KB", 1000ull},
        {"M", 1ull << 20}, {"MiB", 1ull << 20}, {"MB", 1000000ull},
        {"G", 1ull << 30}, {"GiB", 1ull << 30}, {"GB", 1000000000ull},
        {"T", 1ull << 40}, {"TiB", 1ull << 40}, {"TB", 1000000000000ull},
        {"P", 1ull << 50}, {"PiB", 1ull << 50}, {"PB", 1000000000000000ull},
    };
    auto unit = kUnits.find(text.substr(digits));
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

void PrintVolume(const VolumeInfo &v)
{
    printf("name:       %s\nuuid:       %s\nimage:      %s\nformat:     %s\n"
           "capacity:   %llu (%s)\nallocation: %llu (%s)\nlegality:   %s\nparent:     %s\n"
           "lease slot: %llu\npath:       %s\n",
           v.name.c_str(), v.uuid.c_str(), v.image.c_str(), VolumeFormatName(v.format),
           static_cast<unsigned long long>(v.capacity), HumanSize(v.capacity).c_str(),
           static_cast<unsigned long long>(v.allocation), HumanSize(v.allocation).c_str(),
           LegalityName(v.legality), v.parent.empty() ? "-" : v.parent.c_str(),
           static_cast<unsigned long long>(v.slot), v.path.c_str());
}

void PrintVolumeTable(const std::vector<VolumeInfo> &volumes)
{
    printf("%-24s %-6s %12s %12s %-8s %-36s %s\n", "NAME", "FORMAT", "CAPACITY",
           "ALLOCATION", "LEGALITY", "IMAGE", "PARENT");
    for (const auto &v : volumes)
        printf("%-24s %-6s %12s %12s %-8s %-36s %s\n", v.name.c_str(),
               VolumeFormatName(v.format), HumanSize(v.capacity).c_str(),
               HumanSize(v.allocation).c_str(), LegalityName(v.legality), v.image.c_str(),
               v.parent.empty() ? "-" : v.parent.c_str());
}

void PrintGcReport(const GcReport &report)
{
    for (const auto &line : report.lines)
        printf("%s\n", line.c_str());
    printf(_("gc: %u transactions seen, %u collected (%u completed), %u live, %u errors\n"),
           report.markers_seen, report.collected, report.rolled_forward, report.skipped_live,
           report.errors);
}

void PrintUpgradeReport(const std::string &path, const UpgradeReport &report)
{
    if (report.from_version < report.to_version)
        printf(_("upgraded storage domain %s from format %u to %u\n"), path.c_str(),
               report.from_version, report.to_version);
    else
        printf(_("storage domain %s is in format %u already\n"), path.c_str(),
               report.to_version);
    printf(_("upgrade: %u format 1 transactions adopted, %u slot index entries removed\n"),
           report.adopted, report.slot_links_removed);
    PrintGcReport(report.gc);
}

void PrintCheckReport(const CheckReport &report)
{
    for (const auto &problem : report.problems)
        printf("problem: %s\n", problem.c_str());
    printf(_("check: %u images, %u volumes, %u pending transactions, %zu problems\n"),
           report.images, report.volumes, report.pending_transactions, report.problems.size());
}

void ProgressPrinter::Update(uint64_t done, uint64_t total, bool finished)
{
    std::lock_guard lock(mutex_);
    int percent = total ? static_cast<int>(std::min(done, total) * 100 / total) : -1;
    if (percent >= 0 && tty_ && percent != last_percent_) {
        last_percent_ = percent;
        fprintf(stderr, "\r%s [%-25s] %3d%% %s / %s", label_.c_str(),
                std::string(percent / 4, '#').c_str(), percent, HumanSize(done).c_str(),
                HumanSize(total).c_str());
        line_open_ = true;
    } else if (percent >= 0 && !tty_ && percent / 10 > last_percent_ / 10) {
        last_percent_ = percent;
        fprintf(stderr, "%s: %d%% (%s of %s)\n", label_.c_str(), percent,
                HumanSize(done).c_str(), HumanSize(total).c_str());
    }
    if (line_open_ && (finished || percent == 100)) {
        fputc('\n', stderr);
        line_open_ = false;
    }
}

}  // namespace sdm::cli
