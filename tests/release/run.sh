#!/usr/bin/env bash
# The release checks (CI runs them after tests/check.sh): Debian 13 in a root made from the
# registry beside this Debian 12 host, and the Debian packages of both releases.
#
#   1. roots        make-chroot.sh: the trixie dev root, minimal roots of both releases
#   2. deb-bookworm the packages built on this host (build-deb.sh: dpkg-buildpackage -b,
#                   lintian); the unit tests ran with sanitizers in tests/check.sh already
#   3. deb-trixie   the same inside the trixie root, running the unit suite (dh_auto_test)
#   4. trixie-libvirt  the virsh and two-host suites on trixie's libvirtd, from that build
#   5. trixie-demo  tests/demo/libvirt-demo.sh on trixie (sanlock, sdmd, libvirtd, virsh)
#   6. abi-cross    each release's libvirtd refuses the other's module (abi_cross_test.sh)
#   7. package-bookworm, package-trixie   package_test.sh on a fresh root of each release
#
# Each step is one test case of build/release/results.junit.xml; the meson suites of steps 3
# and 4 write their own JUnit logs in the trixie package's build directory. .ci/run counts
# them all. Logs: build/release/*.log. Run as root; exit status 0 when every step passed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)
cd "$tree"
out=build/release
roots=build/roots
trixie=$roots/trixie
trixie_obj=build/deb/trixie/src/obj-$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo x86_64-linux-gnu)
bookworm_obj=${trixie_obj/deb\/trixie/deb\/bookworm}
mkdir -p "$out"
rm -f "$out"/*.log "$out/results.junit.xml"

cases=()
failed=0
# step NAME COMMAND...: runs it with its output in $out/NAME.log, one test case.
step() {
    local name=$1 start status
    shift
    start=$(date +%s)
    echo "release: $name ..."
    "$@" >"$out/$name.log" 2>&1
    status=$?
    local took=$(($(date +%s) - start))
    if [ "$status" = 0 ]; then
        echo "release: $name ok (${took} s)"
        cases+=("<testcase classname=\"release\" name=\"$name\" time=\"$took\"/>")
    else
        failed=$((failed + 1))
        echo "release: $name FAILED (exit $status, ${took} s); the end of $out/$name.log:"
        tail -30 "$out/$name.log" | sed 's/^/    /'
        cases+=("<testcase classname=\"release\" name=\"$name\" time=\"$took\"><failure message=\"exit $status; see $out/$name.log\"/></testcase>")
    fi
    return "$status"
}
# A step that cannot run because one it needs failed.
not_run() {
    failed=$((failed + 1))
    echo "release: $1 not run: $2"
    cases+=("<testcase classname=\"release\" name=\"$1\"><failure message=\"not run: $2\"/></testcase>")
}
in_trixie() { "$here/in-root.sh" "$trixie" "$@"; }

make_roots() {
    "$here/make-chroot.sh" dev trixie "$trixie" &&
        for release in bookworm trixie; do
            [ -f "$roots/$release-base.tar" ] ||
                "$here/make-chroot.sh" base "$release" "$roots/$release-base.tar" || return 1
        done
}

step roots make_roots && roots_ok=1 || roots_ok=0
DEB_BUILD_OPTIONS=nocheck step deb-bookworm "$here/build-deb.sh" build/deb/bookworm &&
    bookworm_ok=1 || bookworm_ok=0
if [ "$roots_ok" = 1 ]; then
    step deb-trixie in_trixie "$here/build-deb.sh" build/deb/trixie && trixie_ok=1 || trixie_ok=0
else
    trixie_ok=0
    not_run deb-trixie "the trixie root could not be made"
fi
if [ "$trixie_ok" = 1 ]; then
    step trixie-libvirt in_trixie meson test -C "$trixie_obj" --no-rebuild --print-errorlogs \
        --num-processes 2 --logbase trixie-libvirt virsh libvirt-two-hosts shim-symbols
    step trixie-demo in_trixie tests/demo/libvirt-demo.sh "$trixie_obj" /var/tmp/sdm-demo
else
    for name in trixie-libvirt trixie-demo; do not_run $name "the trixie build failed"; done
fi
if [ "$trixie_ok" = 1 ] && [ "$bookworm_ok" = 1 ]; then
    step abi-cross "$here/abi_cross_test.sh" "$trixie" "$bookworm_obj" "$trixie_obj"
else
    not_run abi-cross "a package build failed"
fi
for release in bookworm trixie; do
    ok=bookworm_ok
    [ $release = trixie ] && ok=trixie_ok
    if [ "${!ok}" = 1 ] && [ "$roots_ok" = 1 ]; then
        step package-$release "$here/package_test.sh" "$roots/$release-base.tar" \
            build/deb/$release "$roots/apt-cache-$release"
    else
        not_run package-$release "no $release packages or no $release root"
    fi
done

{
    echo '<?xml version="1.0" encoding="UTF-8"?>'
    echo "<testsuites><testsuite name=\"release\" tests=\"${#cases[@]}\" failures=\"$failed\">"
    printf '%s\n' "${cases[@]}"
    echo '</testsuite></testsuites>'
} >"$out/results.junit.xml"
[ "$failed" = 0 ]
