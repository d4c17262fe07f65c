#!/usr/bin/env bash
# Puts the loader in the place of libvirt's stock fs storage backend the way a distro
# package does, or takes it out again:
#
#   divert.sh install LOADER   dpkg-divert --rename the stock module to *.distrib (where the
#                              loader finds it) and link LOADER in its place
#   divert.sh remove           remove the link and give the stock module its name back
#
# Both are idempotent: running one twice leaves what running it once left. `meson install`
# runs `install` (not when DESTDIR is set: a package does this in its maintainer scripts)
# and installs this script as <libexecdir>/libvirt-sdm/divert.sh for `remove`, which must
# run before the installed files are deleted. Restart libvirtd afterwards.
set -euo pipefail
arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
stock=/usr/lib/$arch/libvirt/storage-backend/libvirt_storage_backend_fs.so
distrib=$stock.distrib

fail() {
    echo "divert.sh: $*" >&2
    exit 1
}

# The package holding the diversion of $stock, empty when it is not diverted.
diverted_by() {
    dpkg-divert --listpackage "$stock"
}

if [ "$(id -u)" != 0 ] && [ -z "${DESTDIR:-}" ] && [ -n "${1:-}" ]; then
    fail "changing libvirt's modules needs root; run \`sudo $0 $*\`"
fi

case ${1:-} in
install)
    loader=${2:?usage: divert.sh install LOADER}
    if [ -n "${DESTDIR:-}" ]; then
        echo "divert.sh: DESTDIR is set; the package's maintainer scripts divert $stock"
        exit 0
    fi
    [ -f "$loader" ] || fail "the loader $loader is not installed; run \`meson install\` again"
    owner=$(diverted_by)
    if [ -z "$owner" ]; then
        # Only the distro's module may be moved aside: a link or a missing file here is
        # somebody else's install, and *.distrib must not be overwritten.
        [ -f "$stock" ] && [ ! -L "$stock" ] ||
            fail "$stock is missing or a link, not libvirt's module; reinstall libvirt-daemon, then run \`meson install\` again"
        [ ! -e "$distrib" ] ||
            fail "$distrib exists but nothing diverts $stock; move it away (or reinstall libvirt-daemon), then run \`meson install\` again"
    elif [ "$owner" != libvirt-sdm ]; then
        fail "$stock is already diverted by package $owner; remove that package's diversion first"
    fi
    dpkg-divert --quiet --package libvirt-sdm --rename --divert "$distrib" --add "$stock"
    [ -f "$distrib" ] ||
        fail "the stock module $distrib is missing; reinstall libvirt-daemon, then run \`meson install\` again"
    ln -sfn "$loader" "$stock"
    echo "divert.sh: $stock is now the libvirt-sdm loader (the stock module is $distrib); restart libvirtd"
    ;;
remove)
    owner=$(diverted_by)
    if [ -z "$owner" ]; then
        if [ -L "$stock" ]; then
            fail "$stock is a link but not diverted; remove it and reinstall libvirt-daemon"
        fi
        echo "divert.sh: $stock is not diverted; nothing to do"
        exit 0
    fi
    [ "$owner" = libvirt-sdm ] ||
        fail "$stock is diverted by package $owner, not by libvirt-sdm; leaving it"
    [ -f "$distrib" ] ||
        fail "the stock module $distrib is missing; reinstall libvirt-daemon after \`dpkg-divert --package libvirt-sdm --remove $stock\`"
    if [ -L "$stock" ]; then
        rm -f "$stock"
    fi
    dpkg-divert --quiet --package libvirt-sdm --rename --remove "$stock"
    echo "divert.sh: $stock is the stock module again; restart libvirtd"
    ;;
*)
    echo "usage: divert.sh install LOADER | remove" >&2
    exit 2
    ;;
esac
