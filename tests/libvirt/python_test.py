#!/usr/bin/python3
"""One pool driven through python-libvirt the way API consumers (virt-install, virt-manager,
virt-clone) drive it: create with storageVolCreateXML, clone with createXMLFrom while a
second thread polls the clone's info() as virt-install's progress meter does, look the clone
up by key and by path, refuse a clone onto an existing name, delete. Every check is an
assertion that exits non-zero naming what went wrong; on success the last line of stdout is
a JSON summary that tests/libvirt/python_test.cc checks against storage.

Run by python_test.cc with Debian's /usr/bin/python3 (python3-libvirt is not on other
interpreters' paths):  python_test.py URI POOL
The poller thread shares the connection with the main thread (libvirt connections are
thread-safe; the binding drops the GIL during calls); it only appends to its own lists,
which the main thread reads after joining it."""
import hashlib
import json
import os
import sys
import threading

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


class Poller(threading.Thread):
    """Looks the clone up by name until it exists, then calls info() on it until told to
    stop. A missing volume before the first sighting is expected (the create has not
    registered it yet); any other error, or one after the volume was seen, is recorded."""

    def __init__(self, pool, name):
        super().__init__(daemon=True)
        self.pool, self.name = pool, name
        self.stop = threading.Event()
        self.infos, self.errors = [], []

    def run(self):
        vol = None
        while not self.stop.is_set():
            try:
                if vol is None:
                    vol = self.pool.storageVolLookupByName(self.name)
                self.infos.append(vol.info())
            except libvirt.libvirtError as e:
                if vol is not None or e.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    self.errors.append(str(e))
            self.stop.wait(POLL_SECONDS)


def main(uri, pool_name):
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

    poller = Poller(pool, "py-clone")
    poller.start()
    clone = pool.createXMLFrom(volume_xml("py-clone", 0), src, 0)
    polls_during_copy = len(poller.infos)
    poller.stop.set()
    poller.join()
    check(not poller.errors, "info() during the clone failed: %s" % poller.errors)
    check(polls_during_copy > 0,
          "the poller never saw py-clone while createXMLFrom ran (%d lookups missed)"
          % len(poller.errors))
    for _, cap, alloc in poller.infos:
        check(cap in (0, SOURCE_BYTES), "info() during the copy gave capacity %d" % cap)
        check(alloc <= SOURCE_BYTES + MIB, "info() during the copy gave allocation %d" % alloc)
    check(clone.info()[1] == SOURCE_BYTES, "py-clone capacity is %d" % clone.info()[1])
    check(sha256(clone.path()) == src_sum, "py-clone's data differs from py-src's")

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

    print(json.dumps({
        "polls_during_copy": polls_during_copy,
        "source_path": src.path(),
        "source_sha256": src_sum,
        "clone_path": clone_path,
        "clone_key": clone_key,
        "refusal": refusal,
    }))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python_test.py URI POOL")
    try:
        main(sys.argv[1], sys.argv[2])
    except (CheckFailed, libvirt.libvirtError) as e:
        sys.exit("python_test.py (%s): %s" % (sys.argv[2], e))
