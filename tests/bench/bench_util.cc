/* Timing, percentiles and the result table of the benchmarks; see bench_util.h. */
#include "tests/bench/bench_util.h"

#include <errno.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace sdm::bench {

namespace {

std::vector<Row> &Rows()
{
    static std::vector<Row> rows;
    return rows;
}

}  // namespace

double Seconds(const std::function<void()> &fn)
{
    auto start = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double Percentile(std::vector<double> samples, double p)
{
    std::sort(samples.begin(), samples.end());
    size_t i = std::min(samples.size() - 1,
                        static_cast<size_t>(p * static_cast<double>(samples.size())));
    return samples[i];
}

std::string Fmt(const char *format, double value)
{
    char buf[64];
    snprintf(buf, sizeof(buf), format, value);
    return buf;
}

CreateParams RawSparse(const std::string &name, uint64_t capacity)
{
    CreateParams params;
    params.name = name;
    params.capacity = capacity;
    params.format = VolumeFormat::kRaw;
    params.prealloc = Preallocation::kSparse;
    return params;
}

void Die(const std::string &what)
{
    fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
    exit(1);
}

void Check(const Status &status, const std::string &what)
{
    if (!status.ok())
        Die(what + ": " + status.ToString());
}

void Note(const std::string &what)
{
    fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
}

void AddRow(Row row)
{
    Rows().push_back(std::move(row));
}

int PrintTable()
{
    printf("| benchmark | ours | baseline | ratio | target | met |\n");
    printf("| --- | --- | --- | --- | --- | --- |\n");
    bool all = true;
    for (const auto &r : Rows()) {
        printf("| %s | %s | %s | %s | %s | %s |\n", r.name.c_str(), r.ours.c_str(),
               r.baseline.c_str(), r.ratio.c_str(), r.target.c_str(), r.met ? "yes" : "NO");
        all &= r.met;
    }
    fflush(stdout);
    return all ? 0 : 3;
}

}  // namespace sdm::bench
