#!/usr/bin/env bash
# Puts the loader in the place of libvirt's stock fs storage backend the way a distro
# package does, or takes it out again:
#
#   divert.sh install LOADER   dpkg-divert --rename the stock module to *.distrib (where the
#                              loader finds it) and link LOADER in its place
#   divert.sh remove           remove the link and give the stock module its name back
#
# Run by `meson install` (not when DESTDIR is set: a package does this in its maintainer
# scripts). Restart libvirtd afterwards.
set -euo pipefail
arch=$(gcc -print-multiarch 2>/dev/null || dpkg-architecture -qDEB_HOST_MULTIARCH)
stock=/usr/lib/$arch/libvirt/storage-backend/libvirt_storage_backend_fs.so

case ${1:-} in
install)
    loader=${2:?usage: divert.sh install LOADER}
    if [ -n "${DESTDIR:-}" ]; then
        echo "divert.sh: DESTDIR is set; the package's maintainer scripts divert $stock"
        exit 0
    fi
    dpkg-divert --package libvirt-sdm --rename --divert "$stock.distrib" --add "$stock"
    ln -sfn "$loader" "$stock"
    echo "divert.sh: $stock is now the libvirt-sdm loader; restart libvirtd"
    ;;
remove)
    if [ -L "$stock" ]; then
        rm -f "$stock"
    fi
    dpkg-divert --package libvirt-sdm --rename --remove "$stock"
    echo "divert.sh: $stock is the stock module again; restart libvirtd"
    ;;
*)
    echo "usage: divert.sh install LOADER | remove" >&2
    exit 2
    ;;
esac
