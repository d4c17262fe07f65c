#!/usr/bin/env bash
# `meson install` of a build directory, for real, in a private mount and PID namespace whose
# /usr, /etc, /var/lib, /var/cache and /var/log (and /lib, /bin, /sbin and the install
# prefix where they are not under /usr) are overlays on a tmpfs, and /run a tmpfs: the host's files, its dpkg database and a libvirtd running
# on it are never touched, and every process the test starts dies with the namespace.
# Checks what a distro package would leave: the stock fs module diverted by dpkg to
# *.distrib and unchanged (checksum, build-id), the loader at the stock name, the shim and
# sdmd where the loader and the unit file name them; a second install changes nothing; a
# real libvirtd loads the loader, the stock module and the shim from the installed paths,
# and a stock dir pool and a storage-domain pool (the installed sdmd) work; the installed
# `divert.sh remove` (twice) gives libvirt back its stock module; DESTDIR diverts nothing.
#
#   install_test.sh BUILD_DIR      exit 77 (skipped) when not root or a tool is missing
set -euo pipefail

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

if [ "${1:-}" != --inside ]; then
    build=$(realpath "${1:?usage: install_test.sh BUILD_DIR}")
    [ "$(id -u)" = 0 ] || { echo "SKIP: needs root (mount namespaces, overlays)"; exit 77; }
    for tool in unshare dpkg-divert libvirtd virsh readelf meson python3; do
        command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed"; exit 77; }
    done
    work=$(mktemp -d /tmp/sdm-install-test.XXXXXX)
    status=0
    unshare --mount --propagation private --pid --fork --mount-proc \
        "$0" --inside "$build" "$work" || status=$?
    if [ "$status" != 0 ] && [ "$status" != 77 ]; then
        for log in "$work"/*.log; do
            [ -f "$log" ] && { echo "--- $log ---"; tail -40 "$log"; }
        done
    fi
    rm -rf "$work"
    exit "$status"
fi

# --- inside the namespace -----------------------------------------------------------------
build=$2
work=$3
option() {
    meson introspect --buildoptions "$build" |
        python3 -c 'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$1"
}
prefix=$(option prefix)
absolute() { case $1 in /*) echo "$1" ;; *) echo "$prefix/$1" ;; esac; }
libdir=$(absolute "$(option libdir)")
sbindir=$(absolute "$(option sbindir)")
bindir=$(absolute "$(option bindir)")
libexecdir=$(absolute "$(option libexecdir)")

mkdir -p "$work/ov"
mount -t tmpfs tmpfs "$work/ov"
overlay() {
    local dir=$1 n
    n=$(echo "$dir" | tr / _)
    mkdir -p "$work/ov/$n.up" "$work/ov/$n.work"
    mount -t overlay overlay \
        -o "lowerdir=$dir,upperdir=$work/ov/$n.up,workdir=$work/ov/$n.work" "$dir"
}
for dir in /usr /etc /var/lib /var/cache /var/log /lib /bin /sbin; do
    [ ! -d "$dir" ] || [ -L "$dir" ] || overlay "$dir"
done
case $prefix in
/usr | /usr/*) ;;
*)
    [ -d "$prefix" ] || { echo "SKIP: the prefix $prefix does not exist on this host"; exit 77; }
    overlay "$prefix"
    ;;
esac
mount -t tmpfs tmpfs /run

arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
backend_dir=/usr/lib/$arch/libvirt/storage-backend
stock=$backend_dir/libvirt_storage_backend_fs.so
distrib=$stock.distrib
installed_loader=$libdir/libvirt-sdm/libvirt_storage_backend_fs.so
installed_shim=$libdir/libvirt-sdm/libsdm-libvirt-shim.so
unit=/lib/systemd/system/sdmd.service
divert=$libexecdir/libvirt-sdm/divert.sh

if [ -n "$(dpkg-divert --listpackage "$stock")" ] || [ -L "$stock" ]; then
    echo "SKIP: $stock is already diverted on this host"
    exit 77
fi
[ -f "$stock" ] || fail "libvirt's stock module $stock is missing"

build_id() { readelf -n "$1" | awk '/Build ID:/ {print $3; exit}'; }
sum() { sha256sum <"$1" | cut -d' ' -f1; }
stock_sum=$(sum "$stock")
stock_id=$(build_id "$stock")
loader_id=$(build_id "$build/backend/libvirt/libvirt_storage_backend_fs.so")
backends_before=$(ls "$backend_dir")
[ -n "$stock_id" ] && [ -n "$loader_id" ] || fail "no build-ids in $stock or the build's loader"

# DESTDIR: the files land in the staging tree, nothing is diverted.
DESTDIR=$work/dest meson install -C "$build" --no-rebuild >"$work/install-destdir.log" 2>&1 ||
    fail "meson install with DESTDIR failed; see install-destdir.log"
[ -f "$work/dest$installed_loader" ] || fail "DESTDIR install has no loader at $work/dest$installed_loader"
[ -z "$(dpkg-divert --listpackage "$stock")" ] || fail "DESTDIR install diverted $stock"
[ "$(sum "$stock")" = "$stock_sum" ] || fail "DESTDIR install changed $stock"
rm -rf "$work/dest"

check_installed() {
    local round=$1 diversions target exec_path
    diversions=$(dpkg-divert --list '*libvirt_storage_backend_fs*')
    [ "$diversions" = "diversion of $stock to $distrib by libvirt-sdm" ] ||
        fail "after install $round, dpkg-divert --list says: '$diversions'"
    [ "$(dpkg-divert --truename "$stock")" = "$distrib" ] || fail "dpkg's true name of $stock is not $distrib"
    [ -f "$distrib" ] && [ ! -L "$distrib" ] || fail "$distrib is not a regular file"
    [ "$(sum "$distrib")" = "$stock_sum" ] || fail "$distrib is not the stock module (checksum differs)"
    [ "$(build_id "$distrib")" = "$stock_id" ] || fail "$distrib has another build-id than the stock module"
    [ -L "$stock" ] || fail "$stock is not a link to the loader"
    target=$(realpath "$stock")
    [ "$target" = "$(realpath "$installed_loader")" ] || fail "$stock points to $target, not $installed_loader"
    [ "$(build_id "$target")" = "$loader_id" ] || fail "$target is not the build's loader (build-id)"
    [ "$(printf '%s\n' "$backends_before" "$(basename "$distrib")" | sort)" = "$(ls "$backend_dir" | sort)" ] ||
        fail "$backend_dir after install $round holds: $(ls "$backend_dir" | tr '\n' ' ')"
    [ -f "$installed_shim" ] || fail "the shim is not at $installed_shim"
    grep -qaF "$installed_shim" "$target" || fail "the loader does not name the shim as $installed_shim"
    [ -f "$unit" ] || fail "the unit $unit is not installed"
    exec_path=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
    [ "$exec_path" = "$sbindir/sdmd" ] || fail "$unit starts '$exec_path', not $sbindir/sdmd"
    [ -x "$exec_path" ] || fail "$unit starts $exec_path, which is not installed"
    [ -x "$bindir/sdm" ] || fail "sdm is not at $bindir/sdm"
    [ -x "$divert" ] || fail "divert.sh is not installed at $divert"
}

meson install -C "$build" --no-rebuild >"$work/install-1.log" 2>&1 ||
    fail "meson install failed; see install-1.log"
check_installed 1
distrib_inode=$(stat -c %i "$distrib")
meson install -C "$build" --no-rebuild >"$work/install-2.log" 2>&1 ||
    fail "a second meson install failed; see install-2.log"
check_installed 2
[ "$(stat -c %i "$distrib")" = "$distrib_inode" ] || fail "the second install replaced $distrib"

# A real libvirtd from the installed paths: no LIBVIRT_STORAGE_BACKEND_DIR, no SDM_LIBVIRT_SHIM.
# Only the storage and secret drivers, as tests/libvirt/private-libvirtd.sh does.
for dir in /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do mkdir -p "$dir"; done
mkdir -p "$work/drivers" "$work/sock"
for d in storage secret; do
    ln -sfn "/usr/lib/$arch/libvirt/connection-driver/libvirt_driver_$d.so" "$work/drivers/"
done
cat >"$work/libvirtd.conf" <<CONF
unix_sock_dir = "$work/sock"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_filters = "2:storage"
log_outputs = "2:stderr"
CONF
uri="storage:///system?socket=$work/sock/libvirt-sock"
libvirtd_pid=
start_libvirtd() {
    local log=$1
    LIBVIRT_DRIVER_DIR=$work/drivers libvirtd -f "$work/libvirtd.conf" >"$log" 2>&1 &
    libvirtd_pid=$!
    for _ in $(seq 200); do
        virsh -q -c "$uri" pool-list --all >/dev/null 2>&1 && return 0
        kill -0 "$libvirtd_pid" 2>/dev/null || break
        sleep 0.05
    done
    fail "libvirtd did not start; see $(basename "$log")"
}
stop_libvirtd() {
    kill -TERM "$libvirtd_pid"
    wait "$libvirtd_pid" || true
}
v() { virsh -q -c "$uri" "$@"; }

start_libvirtd "$work/libvirtd-1.log"
maps=/proc/$libvirtd_pid/maps
for object in "$(realpath "$installed_loader")" "$distrib" "$(realpath "$installed_shim")"; do
    grep -qF "$object" "$maps" || fail "libvirtd has not loaded $object"
done
grep -qF "storage-domain backend registered" "$work/libvirtd-1.log" ||
    fail "libvirtd's log does not say the storage-domain backend registered"
! grep -q "libvirt-sdm: " "$work/libvirtd-1.log" || fail "the loader complained: $(grep "libvirt-sdm: " "$work/libvirtd-1.log")"

v pool-define-as stock dir --target "$work/stock" >/dev/null
v pool-build stock >/dev/null
v pool-start stock >/dev/null
v vol-create-as stock plain.img 1M >/dev/null
[ "$(v vol-list stock | awk '{print $1}')" = plain.img ] || fail "the stock pool lists: $(v vol-list stock)"
[ "$(stat -c %s "$work/stock/plain.img")" = 1048576 ] || fail "the stock pool's volume is not $work/stock/plain.img of 1 MiB"

mkdir -p "$work/sdmd"
printf '[sdmd]\nsocket=%s\nlease_backend=local\ngc_interval=0\n' "$work/sdmd/sdmd.sock" >"$work/sdmd.conf"
"$sbindir/sdmd" --foreground --config "$work/sdmd.conf" >"$work/sdmd.log" 2>&1 &
sdmd_pid=$!
for _ in $(seq 200); do
    [ -S "$work/sdmd/sdmd.sock" ] && break
    kill -0 "$sdmd_pid" 2>/dev/null || fail "the installed sdmd exited; see sdmd.log"
    sleep 0.05
done
cat >"$work/sd.xml" <<XML
<pool type='dir' xmlns:sdm='http://libvirt-sdm.org/schemas/storagepool/1.0'>
  <name>sd</name>
  <target><path>$work/domain</path></target>
  <sdm:domain socket='$work/sdmd/sdmd.sock'/>
</pool>
XML
v pool-define "$work/sd.xml" >/dev/null
v pool-build sd >/dev/null
v pool-start sd >/dev/null
v vol-create-as sd disk1 1M --format qcow2 >/dev/null
[ "$(v vol-list sd | awk '{print $1}')" = disk1 ] || fail "the storage-domain pool lists: $(v vol-list sd)"
case $(v vol-path --pool sd disk1) in
"$work/domain/images/"*) ;;
*) fail "disk1's path $(v vol-path --pool sd disk1) is not a storage-domain volume" ;;
esac
v pool-destroy sd >/dev/null
stop_libvirtd
kill -TERM "$sdmd_pid"
wait "$sdmd_pid" || fail "sdmd exited with an error on SIGTERM; see sdmd.log"

# Uninstall: the installed divert.sh gives the stock module back, twice without harm.
for round in 1 2; do
    "$divert" remove >"$work/remove-$round.log" 2>&1 || fail "divert.sh remove (round $round) failed"
    [ -z "$(dpkg-divert --list '*libvirt_storage_backend_fs*')" ] ||
        fail "after divert.sh remove: $(dpkg-divert --list '*libvirt_storage_backend_fs*')"
    [ -f "$stock" ] && [ ! -L "$stock" ] || fail "$stock is not a regular file after divert.sh remove"
    [ "$(sum "$stock")" = "$stock_sum" ] || fail "$stock is not the stock module after divert.sh remove"
    [ ! -e "$distrib" ] || fail "$distrib is left after divert.sh remove"
    [ "$(ls "$backend_dir")" = "$backends_before" ] || fail "$backend_dir after remove: $(ls "$backend_dir" | tr '\n' ' ')"
done

# libvirtd now loads the stock module under its own name and nothing of ours.
start_libvirtd "$work/libvirtd-2.log"
grep -qF "$stock" "/proc/$libvirtd_pid/maps" || fail "libvirtd did not load the stock $stock"
! grep -qF libvirt-sdm "/proc/$libvirtd_pid/maps" || fail "libvirtd still maps libvirt-sdm code after remove"
# The pool is still active: libvirtd keeps its pools' state in /run across restarts.
v pool-refresh stock >/dev/null
[ "$(v vol-list stock | awk '{print $1}')" = plain.img ] || fail "after remove the stock pool lists: $(v vol-list stock)"
stop_libvirtd
echo "PASS: meson install diverts, loads and is undone by divert.sh remove"
