#!/usr/bin/env bash
# Prints the directory of libvirt's source for the exact version installed here, fetching it
# with `apt-get source` into CACHE (argument 1) the first time. The stage-2 shim compiles
# against libvirt's internal headers, which no -dev package ships; they must match the
# running libvirt byte for byte, so nothing but the installed version's source will do.
# Adds a deb-src entry for this Debian release's archive if none is configured.
set -euo pipefail

cache=${1:?usage: fetch-source.sh CACHE_DIR}
version=$(dpkg-query -W -f='${Version}' libvirt-daemon 2>/dev/null || true)
if [ -z "$version" ]; then
    echo "fetch-source.sh: libvirt-daemon is not installed; run tests/setup-deps.sh" >&2
    exit 1
fi
dir="$cache/libvirt-$version"
if [ -f "$dir/src/storage/storage_backend.h" ]; then
    echo "$dir"
    exit 0
fi

# A mirror may lack the .dsc of a version it carries the tarballs of (seen with trixie's
# security updates): fetch those by apt's own transport, each checked against the hash in
# the signed Sources index.
fetch_without_dsc() {
    apt-get source --print-uris "libvirt=$version" | grep "^'" |
        while read -r uri file _size hash; do
            case $file in *.dsc | *.asc) continue ;; esac
            /usr/lib/apt/apt-helper download-file "${uri//\'/}" "$file" "$hash" || return 1
        done
    ls libvirt_*.orig.tar.* libvirt_*.debian.tar.* >/dev/null
}

mkdir -p "$cache"
work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get source --download-only "libvirt=$version" >fetch.log 2>&1; then
    if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        release=$(. /etc/os-release && echo "$VERSION_CODENAME")
        $sudo tee /etc/apt/sources.list.d/libvirt-sdm-src.sources >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        $sudo apt-get update -q >>fetch.log 2>&1
    fi
    if ! apt-get source --download-only "libvirt=$version" >>fetch.log 2>&1 &&
        ! fetch_without_dsc >>fetch.log 2>&1; then
        echo "fetch-source.sh: cannot fetch the source of libvirt $version:" >&2
        tail -5 fetch.log >&2
        exit 1
    fi
fi
if [ -f "libvirt_$version.dsc" ]; then
    dpkg-source -x --no-check "libvirt_$version.dsc" src >>fetch.log 2>&1
else
    # What dpkg-source does for a "3.0 (quilt)" source: the upstream tarball, the debian/
    # tarball over it, then debian/patches/series in order.
    mkdir src
    tar -xf libvirt_*.orig.tar.* -C src --strip-components=1
    tar -xf libvirt_*.debian.tar.* -C src
    if [ -f src/debian/patches/series ]; then
        sed -e 's/#.*//' -e '/^[[:space:]]*$/d' src/debian/patches/series |
            while read -r patch options; do
                patch -d src -s -p1 ${options:-} <"src/debian/patches/$patch"
            done >>fetch.log 2>&1
    fi
fi
rm -rf "$dir"
mv src "$dir"
echo "$dir"
