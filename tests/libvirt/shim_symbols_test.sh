#!/usr/bin/env bash
# The shim loads into libvirtd only if every libvirt symbol it needs is exported there:
# private ones carry the LIBVIRT_PRIVATE_<version> node; the storage driver's own exports
# are unversioned and listed here. Anything else (e.g. a vir_g_* glib wrapper that
# libvirt's glibcompat.h substitutes but libvirt.so does not export) breaks loading.
set -euo pipefail
shim=${1:?usage: shim_symbols_test.sh SHIM}
driver=$(dirname "$(realpath /usr/lib/*/libvirt/connection-driver/libvirt_driver_storage.so)")/libvirt_driver_storage.so
bad=0
while read -r symbol; do
    case $symbol in
    *@*) ;; # versioned: bound to libvirt.so's public or private node
    vir*)
        if ! nm -D --defined-only "$driver" | awk '{print $3}' | grep -qx "$symbol"; then
            echo "FAIL: $symbol is not exported by libvirt_driver_storage.so" >&2
            bad=1
        fi
        ;;
    esac
done < <(nm -D --undefined-only "$shim" | awk '{print $2}')
exit $bad
