#!/usr/bin/env bash
# Runs a command inside a Debian root made by make-chroot.sh, as root, in a mount and PID
# namespace of its own: /proc, /sys, /dev, a fresh /run and /dev/shm, the host's
# resolv.conf, and this source tree (and its git repository) at the same path as on the
# host (so build directories made inside the root live in the tree). Every process the command starts (daemons
# included) dies with it; nothing is mounted on the host afterwards.
#
#   in-root.sh ROOT COMMAND [ARGS...]    the exit status is the command's
#
# The environment is the root's own (PATH, HOME=/root, LANG) plus the caller's SDM_*, CI
# and DEB_BUILD_OPTIONS variables.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)

if [ "${1:-}" != --inside ]; then
    root=$(realpath "${1:?usage: in-root.sh ROOT COMMAND [ARGS...]}")
    shift
    [ $# -gt 0 ] || { echo "usage: in-root.sh ROOT COMMAND [ARGS...]" >&2; exit 2; }
    [ -x "$root/bin/sh" ] || { echo "in-root.sh: $root is not a root (no /bin/sh)" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "in-root.sh: needs root" >&2; exit 1; }
    # unshare ignores SIGTERM while its child runs: on a signal, end it with SIGKILL, which
    # --kill-child passes to the namespace's first process, ending the namespace.
    unshare --mount --propagation private --pid --fork --kill-child \
        "$0" --inside "$root" "$PWD" "$@" <&0 &
    unshare=$!
    trap 'kill -KILL "$unshare"; exit 143' TERM INT HUP
    wait "$unshare"
    exit
fi

root=$2
cwd=$3
shift 3
# The root a mount point of its own: inside, `unshare -m --propagation private` (the
# tests' private daemons) changes the propagation of /, which must be a mount.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/dev/shm"
mount -t tmpfs tmpfs "$root/run"
mkdir -p "$root/run/lock"
[ -e "$root/etc/resolv.conf" ] || touch "$root/etc/resolv.conf"
mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root$tree"
mount --rbind "$tree" "$root$tree"
# A git worktree keeps its repository elsewhere: that too, for git inside the root.
if [ -f "$tree/.git" ]; then
    common=$(git -C "$tree" rev-parse --path-format=absolute --git-common-dir)
    mkdir -p "$root$common"
    mount --rbind "$common" "$root$common"
fi
case $cwd in "$tree" | "$tree"/*) ;; *) cwd=$tree ;; esac

vars=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
      LANG=C.UTF-8 TERM="${TERM:-dumb}")
while IFS= read -r name; do
    vars+=("$name=${!name}")
done < <(compgen -e | grep -E '^(SDM_[A-Z0-9_]*|CI|DEB_BUILD_OPTIONS)$' || true)
# bash as PID 1 reaps the orphans (daemons whose starter exited) as init would; the
# command itself runs as its child, with this stdin.
exec chroot "$root" /usr/bin/env -i "${vars[@]}" /bin/bash -c '
    cd "$1" || exit 1
    shift
    "$@" <&0 &
    wait $!
' in-root "$cwd" "$@"
