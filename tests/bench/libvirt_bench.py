#!/usr/bin/python3
"""The libvirt-backend benchmark (issue 4): our storage-domain pool and a stock dir pool side
by side in one run, on the same filesystem, through python-libvirt against a private libvirtd
(tests/libvirt/private-libvirtd.sh) with our loader and shim and a real sdmd (local leases).
Prints the table every benchmark prints (tests/bench/bench_util.h's format), so tests/bench.sh
merges it with theirs; progress goes to stderr. See docs/benchmarks.md for what each row
measures and the figures.

    libvirt_bench.py [--dir DIR] [--quick] [burst] [create] [clone] [sparse] [list]

(every measurement when none is named). Needs root and Debian's /usr/bin/python3 (python3-
libvirt, python3-gi), and these in the environment (tests/bench.sh sets them to the optimised
build): SDM_SDMD, SDM_LIBVIRT_LOADER, SDM_LIBVIRT_SHIM, SDM_PRIVATE_LIBVIRTD. Exit status:
0 if every target was met, 3 if one was missed, 1 if the setup failed.
Single-threaded: one libvirt connection and one D-Bus connection, used in turn."""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import libvirt
from gi.repository import Gio, GLib

MIB = 1 << 20
GIB = 1 << 30
CHUNK = 4 * MIB
NS = "http://libvirt-sdm.org/schemas/storagepool/1.0"
POOLS = ("sd", "stock")
MEASUREMENTS = ("burst", "create", "clone", "sparse", "list")


class Setup(Exception):
    """The benchmark cannot run: it has nothing to report."""


def note(what):
    print("libvirt_bench: " + what, file=sys.stderr, flush=True)


def env(name):
    value = os.environ.get(name)
    if not value:
        raise Setup("$%s is not set; run tests/bench.sh" % name)
    return value


def fmt_s(seconds):
    return "%.3f s" % seconds if seconds >= 0.1 else "%.2f ms" % (seconds * 1000)


class Table:
    def __init__(self):
        self.rows, self.missed = [], False

    def add(self, name, ours, baseline, ratio, target, met):
        self.rows.append((name, ours, baseline, ratio, target, met))
        self.missed |= met is False

    def print(self):
        print("| benchmark | ours | baseline | ratio | target | met |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, ours, baseline, ratio, target, met in self.rows:
            shown = "—" if met is None else ("yes" if met else "NO")
            print("| %s | %s | %s | %s | %s | %s |" % (name, ours, baseline, ratio, target,
                                                       shown))


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def volume_xml(name, capacity, fmt="raw"):
    return ("<volume><name>%s</name><capacity unit='bytes'>%d</capacity>"
            "<target><format type='%s'/></target></volume>" % (name, capacity, fmt))


class Sdmd:
    """sdmd as a child process with a private configuration, and a D-Bus connection to it."""

    def __init__(self, scratch):
        self.socket = os.path.join(scratch, "sdmd.sock")
        config = os.path.join(scratch, "sdmd.conf")
        with open(config, "w") as f:
            f.write("[sdmd]\nsocket=%s\nlog_level=warning\ngc_interval=0\n" % self.socket)
        self.log = open(os.path.join(scratch, "sdmd.log"), "w")
        self.process = subprocess.Popen([env("SDM_SDMD"), "--foreground", "--config", config],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.bus = Gio.DBusConnection.new_for_address_sync(
                    "unix:path=" + self.socket,
                    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT, None, None)
                return
            except GLib.Error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise Setup("sdmd did not start; see %s" % self.log.name)
                time.sleep(0.02)

    def call(self, method, args, reply_type):
        return self.bus.call_sync(None, "/org/libvirt/Sdm1", "org.libvirt.Sdm1.Manager", method,
                                  args, GLib.VariantType(reply_type),
                                  Gio.DBusCallFlags.NONE, -1, None).unpack()[0]

    def create_many(self, domain, names, capacity, window=64):
        """CreateVolume for every name, `window` jobs in flight, each waited for."""
        pending = []

        def wait(job):
            result = self.call("WaitJob", GLib.Variant("(su)", (job, 600000)), "(a{sv})")
            if result.get("error_code"):
                raise Setup("sdmd could not create a volume: %s" % result["error_message"])

        for name in names:
            pending.append(self.call(
                "CreateVolume",
                GLib.Variant("(ssta{sv})",
                             (domain, name, capacity, {"format": GLib.Variant("s", "raw")})),
                "(s)"))
            if len(pending) >= window:
                wait(pending.pop(0))
        for job in pending:
            wait(job)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        self.log.close()


class Bench:
    def __init__(self, scratch, quick, sdmd):
        self.scratch, self.quick, self.sdmd = scratch, quick, sdmd
        self.table = Table()
        self.libvirt_dir = os.path.join(scratch, "libvirt")
        started = subprocess.run([env("SDM_PRIVATE_LIBVIRTD"), "start", self.libvirt_dir,
                                  env("SDM_LIBVIRT_LOADER"), env("SDM_LIBVIRT_SHIM")],
                                 capture_output=True, text=True)
        if started.returncode != 0:
            raise Setup("libvirtd did not start:\n" + started.stderr)
        self.uri = started.stdout.split("\n")[0]
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        self.conn = libvirt.open(self.uri)
        self.paths = {"sd": os.path.join(scratch, "domain"),
                      "stock": os.path.join(scratch, "stock")}
        self.pools = {}
        for name in POOLS:
            element = ("<sdm:domain socket='%s'/>" % self.sdmd.socket) if name == "sd" else ""
            xml = ("<pool type='dir' xmlns:sdm='%s'><name>%s</name><target><path>%s</path>"
                   "</target>%s</pool>" % (NS, name, self.paths[name], element))
            pool = self.conn.storagePoolDefineXML(xml, 0)
            pool.build(0)
            pool.create(0)
            self.pools[name] = pool

    def close(self):
        self.conn.close()

    def delete_all(self, name):
        pool = self.pools[name]
        pool.refresh(0)
        for vol in pool.listAllVolumes(0):
            vol.delete(0)

    # --- burst: 50 creates back to back, raw then qcow2 ---------------------------------
    def burst(self):
        count = 50
        for fmt in ("raw", "qcow2"):
            seconds = {}
            for name in POOLS:
                pool = self.pools[name]
                seconds[name] = timed(lambda: [
                    pool.createXML(volume_xml("burst-%s-%d" % (fmt, i), GIB, fmt), 0)
                    for i in range(count)])
                self.delete_all(name)
            ratio = seconds["sd"] / seconds["stock"]
            self.table.add("libvirt: burst of %d vol-create-as %s 1 GiB" % (count, fmt),
                           fmt_s(seconds["sd"]), fmt_s(seconds["stock"]) + " (stock dir)",
                           "%.2fx" % ratio, "ours <= 2x stock", ratio <= 2.0)

    # --- isolated creates: one at a time, the domain lease's linger expired between -----
    def create(self):
        count, pause = (10, 0.3) if self.quick else (40, 0.3)
        samples = {name: [] for name in POOLS}
        for i in range(count):
            for name in POOLS:
                time.sleep(pause)
                pool = self.pools[name]
                samples[name].append(timed(
                    lambda: pool.createXML(volume_xml("one-%d" % i, GIB), 0)))
        for name in POOLS:
            self.delete_all(name)
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            ours = percentile(samples["sd"], q)
            stock = percentile(samples["stock"], q)
            self.table.add("libvirt: isolated create raw 1 GiB %s (%d)" % (label, count),
                           fmt_s(ours), fmt_s(stock) + " (stock dir)",
                           "%.2fx" % (ours / stock), "report", None)

    # --- clones: 2 GiB raw holding 1 GiB of data, and a fully sparse 2 GiB raw -----------
    def make_source(self, name, data_bytes):
        vol = self.pools[name].createXML(volume_xml("src", 2 * GIB), 0)
        if data_bytes:
            block = os.urandom(CHUNK)
            fd = os.open(vol.path(), os.O_WRONLY)
            try:
                for offset in range(0, data_bytes, CHUNK):
                    os.pwrite(fd, block, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        return vol

    def clone_seconds(self, name):
        """vol-clone of "src" as "copy", then an fsync of the copy, as the tools get."""
        pool = self.pools[name]
        src = pool.storageVolLookupByName("src")
        os.sync()

        def clone():
            copy = pool.createXMLFrom(volume_xml("copy", 0), src, 0)
            fsync_path(copy.path())
        seconds = timed(clone)
        pool.storageVolLookupByName("copy").delete(0)
        return seconds

    def tool_seconds(self, argv_for, source):
        target = os.path.join(self.scratch, "tool-copy")
        os.sync()

        def run():
            subprocess.run(argv_for(source, target), check=True)
            fsync_path(target)
        seconds = timed(run)
        os.unlink(target)
        return seconds

    def clone(self):
        for name in POOLS:
            self.make_source(name, GIB)
        ours = self.clone_seconds("sd")
        stock = self.clone_seconds("stock")
        source = self.pools["stock"].storageVolLookupByName("src").path()
        qemu = self.tool_seconds(lambda s, t: ["qemu-img", "convert", "-f", "raw", "-O", "raw",
                                               s, t], source)
        cp = self.tool_seconds(lambda s, t: ["cp", "--sparse=always", s, t], source)
        for name in POOLS:
            self.delete_all(name)
        faster = min(qemu, cp)
        tool = "qemu-img convert" if qemu <= cp else "cp --sparse=always"
        self.table.add("libvirt: vol-clone 2 GiB raw, 1 GiB data, vs stock",
                       fmt_s(ours), fmt_s(stock) + " (stock dir)",
                       "%.2fx faster" % (stock / ours), ">= 2.5x faster", stock / ours >= 2.5)
        self.table.add("libvirt: vol-clone 2 GiB raw, 1 GiB data, vs tools",
                       fmt_s(ours), "%s (%s; qemu-img %s, cp %s)" % (fmt_s(faster), tool,
                                                                    fmt_s(qemu), fmt_s(cp)),
                       "%.2fx" % (ours / faster), "<= 1.1x the faster tool",
                       ours / faster <= 1.1)

    def sparse(self):
        for name in POOLS:
            self.make_source(name, 0)
        ours = self.clone_seconds("sd")
        stock = self.clone_seconds("stock")
        source = self.pools["stock"].storageVolLookupByName("src").path()
        cp = self.tool_seconds(lambda s, t: ["cp", "--sparse=always", s, t], source)
        for name in POOLS:
            self.delete_all(name)
        self.table.add("libvirt: vol-clone 2 GiB raw, fully sparse",
                       fmt_s(ours), fmt_s(stock) + " (stock dir; cp %s)" % fmt_s(cp),
                       "%.1fx faster" % (stock / ours), ">= 50x faster", stock / ours >= 50)

    # --- 10,000 volumes: made outside libvirt, then pool-refresh and vol-list ------------
    def listing(self):
        count = 1000 if self.quick else 10000
        note("making %d volumes in each pool (sdmd's CreateVolume; files for stock)" % count)
        names = ["many-%05d" % i for i in range(count)]
        made = timed(lambda: self.sdmd.create_many(self.paths["sd"], names, GIB))
        note("sdmd made %d volumes in %.1f s" % (count, made))
        for name in names:
            with open(os.path.join(self.paths["stock"], name), "w") as f:
                f.truncate(GIB)
        refresh, listing = {}, {}
        for name in POOLS:
            pool = self.pools[name]
            pool.refresh(0)  # warm: what the timed refreshes measure is the steady state
            if pool.numOfVolumes() != count:
                raise Setup("pool %s lists %d volumes, not %d" % (name, pool.numOfVolumes(),
                                                                 count))
            refresh[name] = statistics.median(timed(lambda: pool.refresh(0))
                                              for _ in range(3))
            listing[name] = statistics.median(timed(lambda: subprocess.run(
                ["virsh", "-q", "-c", self.uri, "vol-list", name], check=True,
                stdout=subprocess.DEVNULL)) for _ in range(3))
        for label, seconds in (("pool-refresh", refresh), ("virsh vol-list", listing)):
            ratio = seconds["sd"] / seconds["stock"]
            self.table.add("libvirt: %s, %d volumes (median of 3)" % (label, count),
                           fmt_s(seconds["sd"]), fmt_s(seconds["stock"]) + " (stock dir)",
                           "%.2fx" % ratio, "ours <= 1.5x stock", ratio <= 1.5)


def percentile(samples, q):
    """Nearest rank below, as bench_util's Percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/var/tmp", help="where the pools live")
    parser.add_argument("--quick", action="store_true", help="fewer samples and volumes")
    parser.add_argument("what", nargs="*", help=" ".join(MEASUREMENTS))
    args = parser.parse_args()
    unknown = set(args.what) - set(MEASUREMENTS)
    if unknown:
        parser.error("unknown measurement %s; choose from %s"
                     % (", ".join(sorted(unknown)), " ".join(MEASUREMENTS)))
    what = args.what or list(MEASUREMENTS)
    scratch = tempfile.mkdtemp(prefix="sdm-libvirt-bench-", dir=args.dir)
    sdmd = table = None
    try:
        sdmd = Sdmd(scratch)
        bench = Bench(scratch, args.quick, sdmd)
        table = bench.table
        for name in what:
            note("measuring " + name)
            getattr(bench, "listing" if name == "list" else name)()
        bench.close()
    except (Setup, libvirt.libvirtError, GLib.Error, subprocess.CalledProcessError) as e:
        print("libvirt_bench: %s" % e, file=sys.stderr)
        return 1
    finally:
        if sdmd:  # libvirtd starts after sdmd
            subprocess.run([env("SDM_PRIVATE_LIBVIRTD"), "stop",
                            os.path.join(scratch, "libvirt")], check=False)
            sdmd.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    table.print()
    return 3 if table.missed else 0


if __name__ == "__main__":
    sys.exit(main())
