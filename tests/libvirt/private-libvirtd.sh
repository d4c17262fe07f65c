#!/usr/bin/env bash
# Starts or stops a private libvirtd for tests and the demo: its own mount namespace (tmpfs
# on /run; private /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt, and
# /run/libvirt, which outlives a libvirtd restart as a host's /run does),
# its own sockets under DIR, only the storage and secret drivers (plus qemu with
# SDM_LIBVIRT_QEMU=1, for virt-install), and storage backends from DIR/backends: symlinks to
# every stock backend except fs, whose place the loader takes. The distro's libvirt is not
# touched and a libvirtd already running on the host is not disturbed.
#
#   private-libvirtd.sh start DIR LOADER SHIM   prints the connection URI
#   private-libvirtd.sh stop DIR
set -euo pipefail

cmd=${1:?usage: private-libvirtd.sh start DIR LOADER SHIM | stop DIR}
dir=$(realpath -m "${2:?DIR missing}")
arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libvirt_lib=/usr/lib/$arch/libvirt

stop() {
    [ -f "$dir/libvirtd.pid" ] || return 0
    local pid
    pid=$(cat "$dir/libvirtd.pid")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/libvirtd.pid"
}

case $cmd in
stop)
    stop
    exit 0
    ;;
start) ;;
*)
    echo "private-libvirtd.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac

loader=$(realpath "${3:?LOADER missing}")
shim=$(realpath "${4:?SHIM missing}")
mkdir -p "$dir"/{etc,run,run-libvirt,lib,cache,log,backends,drivers}
for module in "$libvirt_lib"/storage-backend/libvirt_storage_backend_*.so; do
    case $(basename "$module") in
    libvirt_storage_backend_fs.so) ln -sfn "$loader" "$dir/backends/libvirt_storage_backend_fs.so" ;;
    *) ln -sfn "$module" "$dir/backends/$(basename "$module")" ;;
    esac
done
drivers="storage secret"
[ "${SDM_LIBVIRT_QEMU:-0}" = 1 ] && drivers="$drivers qemu"
for d in $drivers; do
    ln -sfn "$libvirt_lib/connection-driver/libvirt_driver_$d.so" "$dir/drivers/"
done
cat >"$dir/libvirtd.conf" <<CONF
unix_sock_dir = "$dir/run"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "${SDM_LIBVIRT_LOG_LEVEL:-3}:stderr"
CONF
touch "$dir/etc/libvirtd.conf"

stop
# Environment for libvirtd (inherited through unshare): where it finds backends, drivers
# and the shim.
export LIBVIRT_STORAGE_BACKEND_DIR="$dir/backends"
export LIBVIRT_DRIVER_DIR="$dir/drivers"
export SDM_LIBVIRT_SHIM="$shim"
unshare -m --propagation private sh -c '
    d=$1
    mkdir -p /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
    mount -t tmpfs tmpfs /run
    mkdir -p /run/libvirt
    mount --bind "$d/run-libvirt" /run/libvirt
    mount --bind "$d/etc" /etc/libvirt
    mount --bind "$d/lib" /var/lib/libvirt
    mount --bind "$d/cache" /var/cache/libvirt
    mount --bind "$d/log" /var/log/libvirt
    exec libvirtd -f "$d/libvirtd.conf"
' sh "$dir" >>"$dir/libvirtd.log" 2>&1 &
echo $! >"$dir/libvirtd.pid"

uri="storage:///system?socket=$dir/run/libvirt-sock"
for _ in $(seq 200); do
    if virsh -q -c "$uri" pool-list --all >/dev/null 2>&1; then
        echo "$uri"
        exit 0
    fi
    if ! kill -0 "$(cat "$dir/libvirtd.pid")" 2>/dev/null; then
        break
    fi
    sleep 0.05
done
echo "private-libvirtd.sh: libvirtd did not start; its log ($dir/libvirtd.log) ends:" >&2
tail -20 "$dir/libvirtd.log" >&2
stop
exit 1
