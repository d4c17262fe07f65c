/* Engine benchmarks, each measured side by side with its baseline in one run on the
 * same filesystem, printed as one table (see docs/benchmarks.md):
 *
 *   create   engine CreateVolume (raw sparse 1 GiB) vs a bare durable
 *            mkdir + create + truncate + fsync + rename + fsync sequence
 *   clone    engine CloneVolume of 2 GiB raw holding 1 GiB in extents vs
 *            cp --sparse=always + fsync, and qemu-img convert -O raw + fsync: five
 *            interleaved rounds from a cold page cache, medians compared
 *   gc       a sweep over 1,000 and 10,000 committed volumes with no garbage
 *
 * Usage: engine_bench [--dir DIR] [--quick]. DIR must be on the filesystem to measure
 * (default /var/tmp). --quick shrinks the sizes for a smoke run. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "sdm/domain.h"
#include "tests/bench/bench_util.h"
#include "tests/support/test_support.h"

namespace {

using sdm::bench::AddRow;
using sdm::bench::Check;
using sdm::bench::Die;
using sdm::bench::Fmt;
using sdm::bench::Percentile;
using sdm::bench::RawSparse;
using sdm::bench::Seconds;
using sdm::testing::Run;
using sdm::testing::TempDir;

void FsyncPath(const std::string &path)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        Die("fsync " + path);
    close(fd);
}

/* The bare durable create the engine is compared with. */
void BareCreate(const std::string &parent, int i, uint64_t size)
{
    std::string tmp = parent + "/tmp-" + std::to_string(i);
    std::string final_dir = parent + "/img-" + std::to_string(i);
    if (mkdir(tmp.c_str(), 0755) != 0)
        Die("mkdir");
    std::string file = tmp + "/vol";
    int fd = open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0 || fsync(fd) != 0)
        Die("create");
    close(fd);
    FsyncPath(tmp);
    if (rename(tmp.c_str(), final_dir.c_str()) != 0)
        Die("rename");
    FsyncPath(parent);
}

void BenchCreate(const std::string &base, int count)
{
    TempDir bare_dir, dom_dir;
    (void)base;
    if (!sdm::Domain::Format(dom_dir.path(), {}).ok())
        Die("format");
    auto domain = sdm::Domain::Open(dom_dir.path());
    if (!domain.ok())
        Die("open");
    std::vector<double> ours, bare;
    const uint64_t size = 1ull << 30;
    for (int i = 0; i < count; i++) {
        /* Interleaved, so both see the same state of the filesystem and its journal. */
        bare.push_back(Seconds([&] { BareCreate(bare_dir.path(), i, size); }));
        ours.push_back(Seconds([&] {
            auto v = (*domain)->CreateVolume(RawSparse("v" + std::to_string(i), size));
            Check(v.status(), "create");
        }));
    }
    double ratio = Percentile(ours, 0.5) / Percentile(bare, 0.5);
    AddRow({"create raw sparse 1 GiB, p50 (ms)", Fmt("%.2f", Percentile(ours, 0.5) * 1e3),
            Fmt("%.2f", Percentile(bare, 0.5) * 1e3), Fmt("%.2fx", ratio), "<= 2x bare",
            ratio <= 2.0});
    AddRow({"create raw sparse 1 GiB, p99 (ms)", Fmt("%.2f", Percentile(ours, 0.99) * 1e3),
            Fmt("%.2f", Percentile(bare, 0.99) * 1e3), "", "report", true});
}

/* Bytes in data extents (SEEK_DATA/SEEK_HOLE): sparseness without the filesystem's own
 * extent-tree blocks, which st_blocks counts and which vary with write order. */
uint64_t DataBytes(const std::string &path)
{
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        Die("open " + path);
    uint64_t total = 0;
    off_t pos = 0;
    for (;;) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0)
            break;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        total += static_cast<uint64_t>(hole - data);
        pos = hole;
    }
    close(fd);
    return total;
}

void BenchClone(uint64_t size, uint64_t data, int rounds)
{
    TempDir dir;
    std::string root = dir.Sub("domain");
    mkdir(root.c_str(), 0755);
    if (!sdm::Domain::Format(root, {}).ok())
        Die("format");
    auto domain = sdm::Domain::Open(root);
    if (!domain.ok())
        Die("open");
    auto src = (*domain)->CreateVolume(RawSparse("src", size));
    Check(src.status(), "create source");
    /* Data in 64 MiB extents with 64 MiB holes between them. */
    const uint64_t chunk = 64ull << 20;
    for (uint64_t off = 0, written = 0; written < data; off += 2 * chunk, written += chunk)
        sdm::testing::WritePattern(src->path, off, chunk, static_cast<uint32_t>(off >> 20));
    Run({"sync"});
    uint64_t src_alloc = DataBytes(src->path);
    double mib = static_cast<double>(size) / (1 << 20);

    /* Rounds interleave the three, each from a cold page cache; medians are compared. */
    auto drop = [] { Run({"sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"}); };
    std::vector<double> cp_times, qemu_times, our_times;
    std::string clone_path;
    for (int round = 0; round < rounds; round++) {
        std::string cp_out = dir.Sub("cp.raw"), qemu_out = dir.Sub("qemu.raw");
        unlink(cp_out.c_str());
        unlink(qemu_out.c_str());
        drop();
        cp_times.push_back(Seconds([&] {
            if (Run({"cp", "--sparse=always", src->path, cp_out}).exit_code != 0)
                Die("cp");
            FsyncPath(cp_out);
        }));
        drop();
        qemu_times.push_back(Seconds([&] {
            if (Run({"qemu-img", "convert", "-f", "raw", "-O", "raw", src->path, qemu_out})
                    .exit_code != 0)
                Die("qemu-img");
            FsyncPath(qemu_out);
        }));
        drop();
        our_times.push_back(Seconds([&] {
            auto c = (*domain)->CloneVolume({"src", "copy" + std::to_string(round), std::nullopt});
            Check(c.status(), "clone");
            clone_path = c->path;
        }));
    }
    double cp = Percentile(cp_times, 0.5), qemu = Percentile(qemu_times, 0.5);
    double ours = Percentile(our_times, 0.5);
    uint64_t clone_alloc = DataBytes(clone_path);
    std::string label = "clone raw " + Fmt("%.2g", mib / 1024) + " GiB, " +
                        Fmt("%.1f", static_cast<double>(data) / (1 << 30)) + " GiB data (MiB/s)";
    AddRow({label, Fmt("%.0f", mib / ours), Fmt("%.0f", mib / cp) + " cp",
            Fmt("%.2fx", cp / ours), ">= 0.9x cp", cp / ours >= 0.9});
    AddRow({"  vs qemu-img convert -O raw (MiB/s)", Fmt("%.0f", mib / ours),
            Fmt("%.0f", mib / qemu) + " qemu", Fmt("%.2fx", qemu / ours), "> 1x qemu-img",
            qemu / ours > 1.0});
    AddRow({"  clone data extents / source (KiB)", Fmt("%.0f", static_cast<double>(clone_alloc) / 1024),
            Fmt("%.0f", static_cast<double>(src_alloc) / 1024) + " src", "",
            "<= source", clone_alloc <= src_alloc});
}

void FillDomain(sdm::Domain &domain, int from, int to)
{
    for (int i = from; i < to; i++)
        Check(domain.CreateVolume(RawSparse("v" + std::to_string(i), 1 << 20)).status(),
              "fill");
}

double SweepP50(sdm::Domain &domain)
{
    std::vector<double> times;
    for (int i = 0; i < 21; i++)
        times.push_back(Seconds([&] { Check(domain.CollectGarbage().status(), "gc"); }));
    return Percentile(times, 0.5);
}

void BenchGc(int small, int large)
{
    TempDir dir;
    if (!sdm::Domain::Format(dir.path(), {}).ok())
        Die("format");
    auto domain = sdm::Domain::Open(dir.path());
    if (!domain.ok())
        Die("open");
    FillDomain(**domain, 0, small);
    double t_small = SweepP50(**domain);
    FillDomain(**domain, small, large);
    double t_large = SweepP50(**domain);
    AddRow({"gc sweep, " + std::to_string(large) + " volumes, p50 (ms)", Fmt("%.3f", t_large * 1e3),
            Fmt("%.3f", t_small * 1e3) + " @" + std::to_string(small), Fmt("%.2fx", t_large / t_small),
            "< 5 ms, <= 2x", t_large < 0.005 && t_large <= 2 * t_small});
}

}  // namespace

int main(int argc, char **argv)
{
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (std::string(argv[i]) == "--quick")
            quick = true;
        else if (std::string(argv[i]) == "--dir" && i + 1 < argc)
            setenv("TMPDIR", argv[++i], 1);
        else
            Die(std::string("unknown argument ") + argv[i] + "; usage: engine_bench [--dir DIR] [--quick]");
    }
    sdm::bench::Note("create...");
    BenchCreate("", quick ? 20 : 200);
    sdm::bench::Note("clone...");
    if (quick)
        BenchClone(256ull << 20, 128ull << 20, 3);
    else
        BenchClone(2ull << 30, 1ull << 30, 5);
    sdm::bench::Note("gc (filling domains)...");
    BenchGc(quick ? 100 : 1000, quick ? 1000 : 10000);

    return sdm::bench::PrintTable();
}
