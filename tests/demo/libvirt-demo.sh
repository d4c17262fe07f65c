#!/usr/bin/env bash
# The main demo: a storage domain driven through plain virsh on the distro's libvirt.
#
# Starts, privately and without touching the host's services, a sanlock daemon (own run dir
# and log, in a mount namespace), sdmd on sanlock leases, and a libvirtd whose fs storage
# backend is our loader (tests/libvirt/private-libvirtd.sh). Then, through virsh: defines
# a storage-domain pool, builds and starts it, creates raw and qcow2 volumes and a snapshot
# layer, clones and deletes, kills sdmd in the middle of a clone and shows the garbage
# collector sweeping what it left, and prints the <lease> element a VM needs. Everything
# keeps running afterwards; the script prints how to use and how to stop it.
#
#   libvirt-demo.sh BUILD_DIR [DEMO_DIR]
set -euo pipefail

build=$(realpath "${1:?usage: libvirt-demo.sh BUILD_DIR [DEMO_DIR]}")
demo=$(realpath -m "${2:-/var/tmp/sdm-demo}")
here=$(cd "$(dirname "$0")/../.." && pwd)
sdmd=$build/backend/daemon/sdmd
sdm=$build/backend/cli/sdm
loader=$build/backend/libvirt/libvirt_storage_backend_fs.so
shim=$build/backend/libvirt/libsdm-libvirt-shim.so
domain=$demo/domain

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() {
    printf '$ %s\n' "$*"
    "$@"
}

# ---- stop whatever a previous run left, then start afresh ----
if [ -x "$demo/stop.sh" ]; then
    "$demo/stop.sh" >/dev/null 2>&1 || true
fi
rm -rf "$demo"
mkdir -p "$demo"/{sanlock-run,sanlock-log,sdmd,libvirt}

step "sanlock: a private daemon (no watchdog; host name sdm-demo)"
SANLOCK_RUN_DIR=$demo/sanlock-run SANLOCK_PRIVILEGED=0 unshare -m --propagation private \
    sh -c 'mount --bind "$1" /var/log && exec sanlock daemon -D -w 0 -U root -G root -e sdm-demo' \
    sh "$demo/sanlock-log" >"$demo/sanlock.log" 2>&1 &
echo $! >"$demo/sanlock.pid"
for _ in $(seq 100); do
    [ -S "$demo/sanlock-run/sanlock.sock" ] && break
    sleep 0.05
done
echo "sanlock daemon running (pid $(cat "$demo/sanlock.pid"), run dir $demo/sanlock-run)"

step "sdmd: host id 1, sanlock leases, socket $demo/sdmd/sdmd.sock"
cat >"$demo/sdmd/sdmd.conf" <<CONF
[sdmd]
socket=$demo/sdmd/sdmd.sock
host_id=1
lease_backend=sanlock
sanlock_run_dir=$demo/sanlock-run
gc_interval=0
log_level=info
CONF
"$sdmd" --foreground --config "$demo/sdmd/sdmd.conf" >>"$demo/sdmd/sdmd.log" 2>&1 &
echo $! >"$demo/sdmd.pid"
for _ in $(seq 100); do
    "$sdm" --socket "$demo/sdmd/sdmd.sock" status >/dev/null 2>&1 && break
    sleep 0.05
done
"$sdm" --socket "$demo/sdmd/sdmd.sock" status

step "libvirtd: private (mount namespace, own sockets), our loader as the fs backend"
uri=$("$here/tests/libvirt/private-libvirtd.sh" start "$demo/libvirt" "$loader" "$shim")
echo "$uri"
virsh() { command virsh -c "$uri" "$@"; }
sdm() { "$sdm" --socket "$demo/sdmd/sdmd.sock" "$@"; }

cat >"$demo/stop.sh" <<STOP
#!/bin/sh
# Stops the demo's libvirtd, sdmd and sanlock daemon.
"$here/tests/libvirt/private-libvirtd.sh" stop "$demo/libvirt"
kill \$(cat "$demo/sdmd.pid") 2>/dev/null
sleep 1
SANLOCK_RUN_DIR="$demo/sanlock-run" sanlock client shutdown -f 1 >/dev/null 2>&1
# The daemon ignores SIGTERM while it holds a lockspace: give it time, then make sure.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 \$(cat "$demo/sanlock.pid") 2>/dev/null || break
    sleep 0.5
done
kill -KILL \$(cat "$demo/sanlock.pid") 2>/dev/null
echo "demo stopped; its files stay in $demo"
STOP
chmod +x "$demo/stop.sh"

step "define a storage-domain pool: a dir pool carrying <sdm:domain/>"
cat >"$demo/pool.xml" <<XML
<pool type='dir' xmlns:sdm='http://libvirt-sdm.org/schemas/storagepool/1.0'>
  <name>demo</name>
  <target><path>$domain</path></target>
  <sdm:domain socket='$demo/sdmd/sdmd.sock' io_timeout='1'/>
</pool>
XML
cat "$demo/pool.xml"
show virsh pool-define "$demo/pool.xml"
show virsh pool-build demo
show virsh pool-start demo
show ls "$domain"

step "volumes: raw, qcow2, a snapshot layer"
show virsh vol-create-as demo base 1G --format raw
show virsh vol-create-as demo disk 512M --format qcow2 --prealloc-metadata
cat >"$demo/layer.xml" <<XML
<volume><name>disk-snap</name><capacity>0</capacity><target><format type='qcow2'/></target>
  <backingStore><path>$(virsh vol-path disk --pool demo)</path><format type='qcow2'/></backingStore></volume>
XML
show virsh vol-create demo "$demo/layer.xml"
dd if=/dev/urandom of="$(virsh vol-path base --pool demo)" bs=1M count=64 conv=notrunc status=none
echo "(64 MiB of data written into base)"
show virsh vol-list demo --details

step "clone and delete"
show virsh vol-clone base base-copy --pool demo
show virsh vol-delete base-copy --pool demo
show virsh vol-dumpxml disk-snap --pool demo

step "an operation killed half-way: sdmd dies during a clone"
dd if=/dev/urandom of="$(virsh vol-path base --pool demo)" bs=1M count=768 seek=64 \
    conv=notrunc status=none
virsh vol-clone base doomed --pool demo >"$demo/doomed.out" 2>&1 &
clone=$!
for _ in $(seq 200); do
    [ -n "$(ls -A "$domain/tx" 2>/dev/null)" ] && break
    sleep 0.01
done
echo "transaction in progress: $(ls "$domain/tx")"
kill -KILL "$(cat "$demo/sdmd.pid")"
wait "$clone" || true
echo "virsh said:"
sed 's/^/    /' "$demo/doomed.out"
echo "left on storage: tx/$(ls "$domain/tx")"
"$sdmd" --foreground --config "$demo/sdmd/sdmd.conf" >>"$demo/sdmd/sdmd.log" 2>&1 &
echo $! >"$demo/sdmd.pid"
for _ in $(seq 100); do
    sdm status >/dev/null 2>&1 && break
    sleep 0.05
done
show sdm attach "$domain"
show sdm gc "$domain"
show sdm check "$domain"
show virsh pool-refresh demo
show virsh vol-list demo

step "the <lease> element a VM using 'disk' needs (libvirt's sanlock lock manager takes it)"
show sdm lease-xml "$domain" disk

cat <<EOF

The demo keeps running. Use the pool with:
    virsh -c '$uri' vol-list demo
    $sdm --socket $demo/sdmd/sdmd.sock status
Stop everything with:
    $demo/stop.sh
EOF
