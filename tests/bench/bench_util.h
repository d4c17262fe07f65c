/* What every benchmark under tests/bench/ shares: timing, percentiles, fatal errors and
 * the one table they print (see docs/benchmarks.md). A benchmark adds rows as it measures
 * and prints the table at the end; tests/bench.sh merges the tables of all benchmarks into
 * one. Not thread-safe: rows are added from the main thread only. */
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sdm/status.h"
#include "sdm/types.h"

namespace sdm::bench {

/* Wall time of `fn` in seconds (steady clock). */
double Seconds(const std::function<void()> &fn);
/* The p-quantile (0..1) of `samples`, nearest rank below; the samples must not be empty. */
double Percentile(std::vector<double> samples, double p);
/* printf-style formatting of one value. */
std::string Fmt(const char *format, double value);

/* What every create of the benchmarks asks for: a raw sparse volume in a new image. */
CreateParams RawSparse(const std::string &name, uint64_t capacity);

/* Prints "<program>: <what>" to stderr and exits 1: a benchmark that cannot run its
 * setup has nothing to report. */
[[noreturn]] void Die(const std::string &what);
void Check(const Status &status, const std::string &what);
/* Progress on stderr, so that stdout holds the table only. */
void Note(const std::string &what);

struct Row {
    std::string name;
    std::string ours;
    std::string baseline;
    std::string ratio;
    std::string target;
    bool met;
};

void AddRow(Row row);
/* Prints the table to stdout; the exit status a benchmark returns: 0 if every target was
 * met, 3 if one was missed. */
int PrintTable();

}  // namespace sdm::bench
