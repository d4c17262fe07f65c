/* Helpers the command-line tools share (sdm-local, sdm): argument splitting, sizes as
 * people type and read them, a volume's description and a progress line for copies.
 *
 * Plain functions over values, safe from any thread; ProgressPrinter serialises its own
 * calls. Output goes to stdout (descriptions, reports) and stderr (progress). */
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "sdm/domain.h"
#include "sdm/types.h"

namespace sdm::cli {

struct Args {
    std::vector<std::string> positional;
    std::map<std::string, std::string> options; /* "--name" -> value ("" for flags) */
    std::string missing_value;                  /* an option given last, without its value */
};

/* Splits argv[first..] into positional arguments and "--name value" options; the names
 * in `flags` take no value. Anything after a lone "--" is positional. */
Args ParseArgs(int argc, char **argv, int first, const std::set<std::string> &flags);

/* Bytes, or a number with K, M, G, T, P (powers of 1024; KiB.. too) or KB, MB, GB, TB, PB
 * (powers of 1000). nullopt for anything else or an overflow. */
std::optional<uint64_t> ParseSize(const std::string &text);
/* "512 B", "1.5 GiB". */
std::string HumanSize(uint64_t bytes);

/* The description `show` prints: one "field: value" line each. */
void PrintVolume(const VolumeInfo &volume);
/* The table `list` prints, with its header. */
void PrintVolumeTable(const std::vector<VolumeInfo> &volumes);
/* What `gc` and `check` print: a line per transaction or problem, then a summary. */
void PrintGcReport(const GcReport &report);
void PrintUpgradeReport(const std::string &path, const UpgradeReport &report);
void PrintCheckReport(const CheckReport &report);

/* A copy's progress on stderr: a bar redrawn in place on a terminal, a line per tenth
 * otherwise (logs and pipes). */
class ProgressPrinter {
public:
    ProgressPrinter(std::string label, bool tty) : label_(std::move(label)), tty_(tty) {}

    /* `finished` ends the bar's line on a terminal. Reports without a total draw nothing;
     * a report that changes nothing on screen is skipped. */
    void Update(uint64_t done, uint64_t total, bool finished);

private:
    std::mutex mutex_;
    std::string label_;
    bool tty_;
    bool line_open_ = false;
    int last_percent_ = -10; /* last drawn (terminal) or last tenth printed (elsewhere) */
};

}  // namespace sdm::cli
