#!/usr/bin/env bash
# Builds the Debian packages of this tree for the release it runs on (the host, or a root
# through in-root.sh) and checks them with lintian: a copy of the tree's files (tracked and
# new, not ignored) in OUT/src, `dpkg-buildpackage -b`, the .deb files in OUT.
#
#   build-deb.sh OUT        exits non-zero when the build fails or lintian reports an
#                           error or a warning that debian/*.lintian-overrides does not justify
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tree=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:?usage: build-deb.sh OUT}")

rm -rf "$out"
mkdir -p "$out/src"
git -C "$tree" ls-files -z --cached --others --exclude-standard |
    (cd "$tree" && xargs -0 tar -cf - --) | tar -xf - -C "$out/src"
cd "$out/src"
DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }parallel=2" \
    nice -n 10 dpkg-buildpackage -b -uc --no-sign >"$out/build.log" 2>&1 || {
    tail -40 "$out/build.log" >&2
    echo "build-deb.sh: dpkg-buildpackage failed; the whole log is $out/build.log" >&2
    exit 1
}
changes=$(ls "$out"/libvirt-sdm_*.changes)
# --fail-on warning: a warning is a defect unless an override in debian/ says why not.
lintian --fail-on error,warning --tag-display-limit 0 "$changes" | tee "$out/lintian.log"
ls "$out"/*.deb
