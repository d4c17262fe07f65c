#!/usr/bin/env bash
# The Debian packages on a fresh machine of their release: unpacks BASE (a minimal root from
# `make-chroot.sh base`) into a scratch directory, installs the .deb files of DEBS with apt
# (which brings libvirt, sanlock and qemu-utils from the registry), and as an admin would:
# starts sanlock, the installed sdmd (the unit's command line) and libvirtd; defines, builds
# and starts a storage-domain pool on sanlock leases and a stock dir pool with virsh;
# creates and clones a volume; installs the same package over itself; removes it (the
# diversion is gone, libvirt's own module is back, the stock pool keeps working) and purges
# it (configuration and state gone, the domain's files untouched). The scratch root is
# deleted at the end; apt's downloads are kept in CACHE for the next run.
#
#   package_test.sh BASE.tar DEBS_DIR CACHE_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)

if [ "${1:-}" = --inside ]; then
    shift
else
    base=$(realpath "${1:?usage: package_test.sh BASE.tar DEBS_DIR CACHE_DIR}")
    debs=$(realpath "${2:?DEBS_DIR missing}")
    cache=$(realpath -m "${3:?CACHE_DIR missing}")
    [ "$(id -u)" = 0 ] || { echo "SKIP: needs root"; exit 77; }
    case $debs/ in "$tree"/*) ;; *) echo "package_test.sh: DEBS_DIR must be inside $tree" >&2; exit 2 ;; esac
    case $cache/ in "$tree"/*) ;; *) echo "package_test.sh: CACHE_DIR must be inside $tree" >&2; exit 2 ;; esac
    mkdir -p "$cache/partial" "$tree/build/roots"
    root=$(mktemp -d "$tree/build/roots/fresh.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    tar -xf "$base" -C "$root"
    "$here/in-root.sh" "$root" "$0" --inside "$debs" "$cache"
    exit 0
fi

# --- inside the fresh root ---------------------------------------------------------------
debs=$1
cache=$2
work=/var/tmp/package-test
mkdir -p "$work"
step() { echo "--- $*"; }
fail() {
    echo "FAIL: $*" >&2
    for log in "$work"/*.log; do
        [ -f "$log" ] && { echo "--- $log:"; tail -25 "$log"; } >&2
    done
    exit 1
}
apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dir::Cache::Archives="$cache/" \
        --no-install-recommends "$@"
}
arch=$(dpkg --print-architecture)
deb=$(ls "$debs"/libvirt-sdm_*_"$arch".deb)
dev_deb=$(ls "$debs"/libsdm-client-dev_*_"$arch".deb)
. /etc/os-release

step "install on a fresh Debian $VERSION_ID ($VERSION_CODENAME): $(basename "$deb") $(basename "$dev_deb")"
apt_get update >"$work/apt.log" 2>&1 || fail "apt-get update"
# libvirt as an admin installs it (the system daemon, its accounts, virsh); the package
# brings everything it needs itself.
apt_get install libvirt-daemon-system libvirt-clients "$deb" "$dev_deb" >>"$work/apt.log" 2>&1 ||
    fail "apt-get install of the packages"
# A fresh root has no dpkg-architecture: the triplet is the directory libvirt installed in.
backend_dir=$(ls -d /usr/lib/*/libvirt/storage-backend)
multiarch=$(basename "$(dirname "$(dirname "$backend_dir")")")
stock=$backend_dir/libvirt_storage_backend_fs.so
distrib=$stock.distrib

stock_md5=$(awk -v p="${stock#/}" '$2 == p {print $1}' /var/lib/dpkg/info/*.md5sums)
[ -n "$stock_md5" ] || fail "no libvirt package lists $stock in its md5sums"
check_diverted() {
    local list
    list=$(dpkg-divert --list '*libvirt_storage_backend_fs*')
    [ "$list" = "diversion of $stock to $distrib by libvirt-sdm" ] || fail "diversions: '$list'"
    [ "$(md5sum <"$distrib" | cut -d' ' -f1)" = "$stock_md5" ] || fail "$distrib is not libvirt's module"
    [ -L "$stock" ] || fail "$stock is not our loader's link"
    [ "$(realpath "$stock")" = "/usr/lib/$multiarch/libvirt-sdm/libvirt_storage_backend_fs.so" ] ||
        fail "$stock points to $(realpath "$stock")"
}
check_diverted
for page in sdm.1 sdm-local.1 sdmd.8; do
    f=/usr/share/man/man${page##*.}/$page.gz
    [ -f "$f" ] || fail "man page $f is not installed"
    zcat "$f" | grep -q '^\.TH' || fail "$f is not a roff page"
done
unit=$(dpkg -L libvirt-sdm | grep '/systemd/system/sdmd.service$') || fail "no sdmd.service in the package"
[ -f /etc/libvirt-sdm/sdmd.conf ] || fail "no /etc/libvirt-sdm/sdmd.conf"
[ -L /etc/systemd/system/multi-user.target.wants/sdmd.service ] || fail "sdmd.service is not enabled"

step "sanlock, sdmd (the unit's command line) and libvirtd"
mkdir -p /run/sanlock
# No watchdog and no CAP_SYS_RESOURCE here (DESIGN.md: sanlock without systemd).
SANLOCK_PRIVILEGED=0 sanlock daemon -D -w 0 -U root -G root -e package-test >"$work/sanlock.log" 2>&1 &
sanlock_pid=$!
sed -i 's/^lease_backend=.*/lease_backend=sanlock/; s/^gc_interval=.*/gc_interval=0/' /etc/libvirt-sdm/sdmd.conf
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
sdmd_pid=
start_sdmd() {
    mkdir -p /run/sdmd  # RuntimeDirectory= of the unit
    $exec_start >>"$work/sdmd.log" 2>&1 &
    sdmd_pid=$!
    for _ in $(seq 100); do
        sdm status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "the installed sdmd did not answer on its socket"
}
start_sdmd
# libvirtd's own configuration, but no polkit (no D-Bus in a root without init).
printf 'auth_unix_rw = "none"\nauth_unix_ro = "none"\n' >>/etc/libvirt/libvirtd.conf
libvirtd_pid=
start_libvirtd() {
    libvirtd >>"$work/libvirtd.log" 2>&1 &
    libvirtd_pid=$!
    for _ in $(seq 200); do
        virsh -q -c "$uri" pool-list --all >/dev/null 2>&1 && return 0
        kill -0 "$libvirtd_pid" 2>/dev/null || break
        sleep 0.05
    done
    fail "libvirtd did not start"
}
stop_libvirtd() {
    kill -TERM "$libvirtd_pid"
    wait "$libvirtd_pid" 2>/dev/null || true
}
uri="storage:///system?socket=/run/libvirt/libvirt-sock"
v() { virsh -q -c "$uri" "$@"; }
start_libvirtd
grep -qF "/usr/lib/$multiarch/libvirt-sdm/libsdm-libvirt-shim.so" "/proc/$libvirtd_pid/maps" ||
    fail "libvirtd has not loaded the shim: $(grep libvirt-sdm "$work/libvirtd.log")"

step "a storage-domain pool and a stock dir pool"
domain=/srv/shared/domain1
cat >"$work/domain1.xml" <<XML
<pool type='dir' xmlns:sdm='http://libvirt-sdm.org/schemas/storagepool/1.0'>
  <name>domain1</name>
  <target><path>$domain</path></target>
  <sdm:domain io_timeout='1'/>
</pool>
XML
v pool-define "$work/domain1.xml" >/dev/null || fail "pool-define domain1"
v pool-build domain1 >/dev/null || fail "pool-build domain1"
v pool-start domain1 >/dev/null || fail "pool-start domain1"
v vol-create-as domain1 disk1 16M --format qcow2 >/dev/null || fail "vol-create-as disk1"
v vol-clone disk1 disk2 --pool domain1 >/dev/null || fail "vol-clone disk1 disk2"
[ "$(v vol-list domain1 | awk '{print $1}' | sort | tr '\n' ' ')" = "disk1 disk2 " ] ||
    fail "domain1 lists: $(v vol-list domain1)"
case $(v vol-path --pool domain1 disk2) in "$domain/images/"*) ;; *) fail "disk2 is not a domain volume" ;; esac
sdm domains | grep -qF "$domain" || fail "sdmd does not serve $domain"
v pool-define-as stock dir --target /srv/stock >/dev/null && v pool-build stock >/dev/null &&
    v pool-start stock >/dev/null || fail "the stock dir pool"
v vol-create-as stock plain.img 1M >/dev/null || fail "vol-create-as in the stock pool"

step "the same package installed over itself"
apt_get install --reinstall "$deb" >>"$work/apt.log" 2>&1 || fail "reinstalling $(basename "$deb")"
check_diverted
stop_libvirtd
start_libvirtd
[ "$(v vol-list domain1 | awk '{print $1}' | sort | tr '\n' ' ')" = "disk1 disk2 " ] ||
    fail "after the upgrade domain1 lists: $(v vol-list domain1)"
v vol-create-as domain1 disk3 1M >/dev/null || fail "vol-create-as after the upgrade"
v pool-destroy domain1 >/dev/null || fail "pool-destroy domain1"
stop_libvirtd
kill -TERM "$sdmd_pid"
wait "$sdmd_pid" || fail "sdmd exited with an error on SIGTERM"
# sanlock leaves the lockspace (its last write to the domain's ids file) after sdmd asked.
for _ in $(seq 100); do
    sanlock client status 2>/dev/null | grep -q '^s ' || break
    sleep 0.2
done
sanlock client status | grep '^s ' && fail "sanlock still holds the domain's lockspace"
kill -TERM "$sanlock_pid"
wait "$sanlock_pid" || true
snapshot() { (cd "$domain" && find . -printf '%p %y %s %T@ %l\n' | sort && find . -type f -exec sha256sum {} + | sort); }
before=$(snapshot)

step "remove: libvirt's module back, no diversion, stock pools work"
apt_get remove libvirt-sdm >>"$work/apt.log" 2>&1 || fail "apt-get remove libvirt-sdm"
[ -z "$(dpkg-divert --list '*libvirt_storage_backend_fs*')" ] ||
    fail "a diversion is left: $(dpkg-divert --list '*libvirt_storage_backend_fs*')"
[ -f "$stock" ] && [ ! -L "$stock" ] || fail "$stock is not a regular file"
[ "$(md5sum <"$stock" | cut -d' ' -f1)" = "$stock_md5" ] || fail "$stock is not libvirt's module"
[ ! -e "$distrib" ] || fail "$distrib is left"
start_libvirtd
! grep -q libvirt-sdm "/proc/$libvirtd_pid/maps" || fail "libvirtd still maps libvirt-sdm"
v pool-refresh stock >/dev/null || fail "pool-refresh stock after the removal"
v vol-create-as stock plain2.img 1M >/dev/null || fail "vol-create-as in the stock pool after the removal"
[ -f /srv/stock/plain2.img ] || fail "the stock pool made no /srv/stock/plain2.img"
stop_libvirtd
[ -f /etc/libvirt-sdm/sdmd.conf ] || fail "remove (not purge) deleted the configuration"

step "purge: configuration and state gone, the domain untouched"
apt_get purge libvirt-sdm >>"$work/apt.log" 2>&1 || fail "apt-get purge libvirt-sdm"
for gone in /etc/libvirt-sdm /run/sdmd /etc/systemd/system/multi-user.target.wants/sdmd.service \
    "/usr/lib/$multiarch/libvirt-sdm"; do
    [ ! -e "$gone" ] || fail "$gone is left after purge"
done
[ "$(dpkg-query -W -f='${db:Status-Status}' libvirt-sdm 2>/dev/null || echo not-installed)" = not-installed ] ||
    fail "dpkg still knows libvirt-sdm"
[ "$(snapshot)" = "$before" ] || fail "the domain's files changed: $(diff <(echo "$before") <(snapshot))"
echo "PASS: $(basename "$deb") on Debian $VERSION_ID: install, pools, upgrade, remove, purge"
