#!/usr/bin/python3
"""One pool driven through python-libvirt the way API consumers (virt-install, virt-manager,
virt-clone) drive it: create with storageVolCreateXML, clone with createXMLFrom while a
second thread polls the clone's info() as virt-install's progress meter does, look the clone
up by key and by path, refuse a clone onto an existing name, delete; then refuse bad names
(control characters, NUL, '/', '..', 300 bytes) and capacities that overflow, through both
storageVolCreateXML and createXMLFrom, each with a message saying what is wrong and with the
pool's listing and its directory tree unchanged. A stock pool accepts some of those names;
for it the script checks libvirt's own refusals and the acceptances, deleting what it
created, and reports them in the summary ("accepted"). Every check is an
assertion that exits non-zero naming what went wrong; on success the last line of stdout is
a JSON summary that tests/libvirt/python_test.cc checks against storage.

Run by python_test.cc with Debian's /usr/bin/python3 (python3-libvirt is not on other
interpreters' paths):  python_test.py URI POOL [STALL_FILE]
With STALL_FILE (our pool: sdmd runs with SDM_STALL_AT=clone.copy and SDM_STALL_FILE), sdmd
holds the clone at its copy step until the poller, having read info() there, removes the
file: the poll during the copy is certain, not a race against the copy's speed. A stock
pool's copy is not held; its polls are counted but not required.
The poller thread has a connection of its own: Debian's libvirt 9.0 client loses the wake-up
of a thread that queues a call while another thread of the same connection is about to
wait for its own reply (g_main_loop_quit before g_main_loop_run in virNetClientIOEventLoop),
so a lookup sharing the clone's connection could wait, unsent, until the clone ended (seen
under load: 0 polls, one call of 30 s; libvirtd idle, gdb stacks). It only appends to its
own lists, which the main thread reads after joining it."""
import hashlib
import json
import os
import sys
import threading
import time
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import libvirt

MIB = 1 << 20
SOURCE_BYTES = 256 * MIB   # real data, so that the copy takes a moment
CHUNK = 4 * MIB
POLL_SECONDS = 0.002


class CheckFailed(Exception):
    pass


def check(condition, what):
    if not condition:
        raise CheckFailed(what)


def volume_xml(name, capacity, fmt="raw"):
    return ("<volume><name>%s</name><capacity unit='bytes'>%d</capacity>"
            "<target><format type='%s'/></target></volume>" % (name, capacity, fmt))


def fill(path, length):
    """Writes a non-repeating pattern (each chunk numbered), then fsyncs."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset in range(0, length, CHUNK):
            block = hashlib.sha256(b"%d" % offset).digest() * (CHUNK // 32)
            os.pwrite(fd, block, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# Names and capacities no storage domain takes: (label, name, capacity text, what the error
# of our pool says, what a stock dir pool does: the text of its error, ACCEPTS, or None where
# it fails with a message of its own that is not checked). \x01 and ESC are not XML 1.0
# characters: libvirt's XML parser refuses them, raw or as a character reference, before any
# backend sees the name; &#0; likewise. libvirt itself refuses capacities that do not fit in
# 63 bits, negative ones and floats; the engine refuses more than 64 PiB.
ACCEPTS = "accepts"
BAD_CASES = [
    ("newline", "bad\nname", "1048576", "contains a control character", ACCEPTS),
    ("tab", "bad\tname", "1048576", "contains a control character", ACCEPTS),
    ("DEL", "bad\x7fname", "1048576", "contains a control character", ACCEPTS),
    ("\\x01", "bad\x01name", "1048576", "PCDATA invalid Char value 1", "invalid Char value 1"),
    ("ESC", "bad\x1b[31mname", "1048576", "PCDATA invalid Char value 27", "invalid Char value 27"),
    ("&#1;", "bad&#1;name", "1048576", "invalid xmlChar value 1", "invalid xmlChar value 1"),
    ("&#0;", "bad&#0;name", "1048576", "invalid xmlChar value 0", "invalid xmlChar value 0"),
    ("slash", "bad/name", "1048576", "it contains '/'", "cannot contain '/'"),
    ("dotdot", "..", "1048576", "'.' and '..' are reserved", "already exists"),
    ("300 bytes", "n" * 300, "1048576", "it is longer than 255 bytes", None),
    ("2**64", "big", str(2 ** 64), "malformed capacity element", "malformed capacity"),
    ("2**64-1", "big", str(2 ** 64 - 1), "value too large", "value too large"),
    ("2**63-1", "big", str(2 ** 63 - 1), "larger than the 64 PiB", None),
    ("-1", "big", "-1", "malformed capacity element", "malformed capacity"),
    ("1e30", "big", "1e30", "malformed capacity element", "malformed capacity"),
]


def bad_volume_xml(name, capacity):
    """Like volume_xml, but the name is escaped except for character references (so that
    &#1; reaches the parser as one) and the capacity is any text."""
    text = escape(name).replace("&amp;#", "&#")
    return ("<volume><name>%s</name><capacity unit='bytes'>%s</capacity>"
            "<target><format type='raw'/></target></volume>" % (text, capacity))


def tree(root):
    """Every path below root, relative to it: what a refused call must leave as it was."""
    paths = set()
    for parent, dirs, files in os.walk(root):
        for entry in dirs + files:
            paths.add(os.path.relpath(os.path.join(parent, entry), root))
    return paths


def snapshot(pool, root):
    pool.refresh(0)
    return sorted(pool.listVolumes()), tree(root)


def refuse_bad_names_and_sizes(pool, src, ours):
    """Runs BAD_CASES through storageVolCreateXML and createXMLFrom. Each refusal must say
    what is wrong and leave the pool's listing and files as they were. Returns the cases
    the pool accepted (and that were deleted again)."""
    root = ElementTree.fromstring(pool.XMLDesc(0)).findtext("target/path")
    accepted = []
    try:
        pool.createXML(volume_xml("bad\0name", MIB), 0)
        raise CheckFailed("a volume name with a NUL byte was accepted")
    except ValueError as e:
        # python-libvirt cannot pass a str with a NUL as char *; libvirt never sees it.
        check("null character" in str(e), "a NUL in the name: %s" % e)
    for label, name, capacity, ours_says, stock_does in BAD_CASES:
        expected = ours_says if ours else stock_does
        for how in ("create", "clone"):
            before = snapshot(pool, root)
            xml = bad_volume_xml(name, capacity)
            try:
                if how == "create":
                    vol = pool.createXML(xml, 0)
                else:
                    vol = pool.createXMLFrom(xml, src, 0)
            except libvirt.libvirtError as e:
                check(expected != ACCEPTS, "%s of a volume with %s failed: %s" % (how, label, e))
                check(expected is None or expected in str(e),
                      "%s of a volume with %s: the error does not say %r: %s"
                      % (how, label, expected, e))
                # The engine prints a refused name escaped: one line, nothing for a terminal.
                check(not ours or "invalid volume name" not in str(e)
                      or not any(ord(c) < 0x20 or ord(c) == 0x7f for c in str(e)),
                      "the error of %s with %s holds a control character: %r" % (how, label, str(e)))
                after = snapshot(pool, root)
                check(after[0] == before[0], "a refused %s with %s changed the pool's list: %s"
                      % (how, label, after[0]))
                check(after[1] == before[1], "a refused %s with %s changed the pool's files: "
                      "new %s, gone %s" % (how, label, sorted(after[1] - before[1]),
                                           sorted(before[1] - after[1])))
                continue
            check(expected == ACCEPTS,
                  "%s of a volume with %s succeeded: %r" % (how, label, vol.name()))
            accepted.append("%s %s" % (how, label))
            vol.delete(0)
            check(snapshot(pool, root) == before, "deleting the %s with %s left a change"
                  % (how, label))
    return accepted

class Poller(threading.Thread):
    """Looks the clone up by name until it exists, then calls info() on it until told to
    stop. A missing volume before the first sighting is expected (the create has not
    registered it yet); any other error, or one after the volume was seen, is recorded."""

    HELD_POLLS = 3  # info() calls made while sdmd holds the copy, before releasing it

    def __init__(self, uri, pool_name, name, stall_file):
        super().__init__(daemon=True)
        self.conn = libvirt.open(uri)
        self.pool = self.conn.storagePoolLookupByName(pool_name)
        self.name, self.stall_file = name, stall_file
        self.stop = threading.Event()
        self.infos, self.errors = [], []
        self.held_polls = 0
        # What a failure report needs: lookups that found nothing yet, whether the stall
        # file was ever seen, the longest single call (a call blocked on a lock shows here).
        self.not_yet, self.saw_stall, self.longest_call = 0, False, 0.0

    def run(self):
        vol = None
        while not self.stop.is_set():
            held = self.stall_file is not None and os.path.exists(self.stall_file)
            self.saw_stall |= held
            started = time.monotonic()
            try:
                if vol is None:
                    vol = self.pool.storageVolLookupByName(self.name)
                self.infos.append(vol.info())
                self.held_polls += held
            except libvirt.libvirtError as e:
                if vol is not None or e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    self.errors.append(str(e))
                else:
                    self.not_yet += 1
            self.longest_call = max(self.longest_call, time.monotonic() - started)
            if self.held_polls >= self.HELD_POLLS and held:
                os.unlink(self.stall_file)  # sdmd goes on copying
            self.stop.wait(POLL_SECONDS)
        self.conn.close()


def main(uri, pool_name, stall_file=None):
    # Errors are raised as exceptions and reported once; the default handler would also
    # print the expected ones (a lookup before the clone exists) to stderr.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(uri)
    pool = conn.storagePoolLookupByName(pool_name)

    src = pool.createXML(volume_xml("py-src", SOURCE_BYTES), 0)
    check(src.name() == "py-src", "storageVolCreateXML returned %r" % src.name())
    kind, capacity, _ = src.info()
    check(capacity == SOURCE_BYTES, "py-src capacity is %d, asked %d" % (capacity, SOURCE_BYTES))
    check(kind == libvirt.VIR_STORAGE_VOL_FILE, "py-src type is %d, not a file" % kind)
    fill(src.path(), SOURCE_BYTES)
    src_sum = sha256(src.path())

    poller = Poller(uri, pool_name, "py-clone", stall_file)
    poller.start()
    clone = pool.createXMLFrom(volume_xml("py-clone", 0), src, 0)
    polls_during_copy = len(poller.infos)
    poller.stop.set()
    poller.join()
    check(not poller.errors, "info() during the clone failed: %s" % poller.errors)
    check(stall_file is None or poller.held_polls >= Poller.HELD_POLLS,
          "the poller read info() %d times while sdmd held the copy (%d in all; stall file "
          "seen: %s; %d lookups before the volume existed; longest call %.1f s)"
          % (poller.held_polls, polls_during_copy, poller.saw_stall, poller.not_yet,
             poller.longest_call))
    for _, cap, alloc in poller.infos:
        check(cap in (0, SOURCE_BYTES), "info() during the copy gave capacity %d" % cap)
        check(alloc <= SOURCE_BYTES + MIB, "info() during the copy gave allocation %d" % alloc)
    check(clone.info()[1] == SOURCE_BYTES, "py-clone capacity is %d" % clone.info()[1])
    check(sha256(clone.path()) == src_sum, "py-clone's data differs from py-src's")
    # A clone asked to be larger than its source is grown, as the stock backend does.
    grown = pool.createXMLFrom(volume_xml("py-grown", 2 * SOURCE_BYTES), src, 0)
    check(grown.info()[1] == 2 * SOURCE_BYTES, "py-grown capacity is %d" % grown.info()[1])
    grown.delete(0)

    by_key = conn.storageVolLookupByKey(clone.key())
    check(by_key.name() == "py-clone", "lookup by key found %r" % by_key.name())
    by_path = conn.storageVolLookupByPath(clone.path())
    check(by_path.key() == clone.key(), "lookup by path found key %r" % by_path.key())
    check(by_path.storagePoolLookupByVolume().name() == pool_name,
          "lookup by path found pool %r" % by_path.storagePoolLookupByVolume().name())

    try:
        pool.createXMLFrom(volume_xml("py-src", 0), clone, 0)
        raise CheckFailed("a clone onto the existing name py-src succeeded")
    except libvirt.libvirtError as e:
        refusal = str(e)
    check(sha256(src.path()) == src_sum, "a refused clone onto py-src changed its data")

    clone_path, clone_key = clone.path(), clone.key()
    clone.delete(0)
    try:
        pool.storageVolLookupByName("py-clone")
        raise CheckFailed("py-clone can still be looked up after delete")
    except libvirt.libvirtError as e:
        check(e.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL,
              "lookup of the deleted py-clone: %s" % e)
    pool.refresh(0)
    listed = pool.listVolumes()
    check("py-src" in listed and "py-clone" not in listed,
          "after refresh the pool lists %s" % sorted(listed))

    ours = "libvirt-sdm.org" in pool.XMLDesc(0)
    accepted = refuse_bad_names_and_sizes(pool, src, ours)
    check(sha256(src.path()) == src_sum, "the refused creates and clones changed py-src's data")

    print(json.dumps({
        "polls_during_copy": polls_during_copy,
        "polls_while_held": poller.held_polls,
        "source_path": src.path(),
        "source_sha256": src_sum,
        "clone_path": clone_path,
        "clone_key": clone_key,
        "refusal": refusal,
        "accepted": ",".join(accepted),
    }))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python_test.py URI POOL [STALL_FILE]")
    try:
        main(*sys.argv[1:])
    except (CheckFailed, libvirt.libvirtError) as e:
        sys.exit("python_test.py (%s): %s" % (sys.argv[2], e))
