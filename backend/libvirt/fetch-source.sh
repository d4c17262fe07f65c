#!/usr/bin/env bash
# Prints the directory of libvirt's source for the exact version installed here, fetching it
# with `apt-get source` into CACHE (argument 1) the first time. The stage-2 shim compiles
# against libvirt's internal headers, which no -dev package ships; they must match the
# running libvirt byte for byte, so nothing but the installed version's source will do.
# Adds a deb-src entry for Debian's archive if none is configured.
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

mkdir -p "$cache"
work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get source --download-only "libvirt=$version" >fetch.log 2>&1; then
    if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo=sudo
        $sudo tee /etc/apt/sources.list.d/libvirt-sdm-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        $sudo apt-get update -q >>fetch.log 2>&1
    fi
    if ! apt-get source --download-only "libvirt=$version" >>fetch.log 2>&1; then
        echo "fetch-source.sh: cannot fetch the source of libvirt $version:" >&2
        tail -5 fetch.log >&2
        exit 1
    fi
fi
dpkg-source -x --no-check libvirt_*.dsc src >>fetch.log 2>&1
rm -rf "$dir"
mv src "$dir"
echo "$dir"
