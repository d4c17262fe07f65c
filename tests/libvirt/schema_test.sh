#!/usr/bin/env bash
# The RelaxNG schema of the pool namespace (xml/storagepool-sdm.rng) accepts the sample
# pool's element and what the shim accepts, and refuses what the shim refuses.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
schema=$root/xml/storagepool-sdm.rng
ns="xmlns='http://libvirt-sdm.org/schemas/storagepool/1.0'"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # expect(valid|invalid) element
    echo "$2" >"$tmp/el.xml"
    if xmllint --noout --relaxng "$schema" "$tmp/el.xml" 2>/dev/null; then got=valid; else got=invalid; fi
    if [ "$got" != "$1" ]; then
        echo "FAIL: expected $1, got $got: $2"
        fail=1
    fi
}
sample=$(grep -o "<sdm:domain[^>]*/>" "$root/xml/samples/pool-sdm.xml" | sed "s|sdm:domain|domain $ns|")
check valid "$sample"
check valid "<domain $ns/>"
check valid "<domain $ns io_timeout='1'/>"
check invalid "<domain $ns io_timeout='0'/>"
check invalid "<domain $ns io_timeout='301'/>"
check invalid "<domain $ns io_timeout='ten'/>"
check invalid "<domain $ns socket='relative/sock'/>"
check invalid "<domain $ns colour='red'/>"
check invalid "<domain $ns><child/></domain>"
exit $fail
