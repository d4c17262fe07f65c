#!/usr/bin/env bash
# Every source file with translatable messages is listed in po/POTFILES, and every listed
# file exists: otherwise its messages silently miss the template.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
while read -r f; do
    [ -f "$f" ] || { echo "po/POTFILES lists $f, which does not exist"; status=1; }
done < po/POTFILES
for f in $(grep -l '\b_("' backend -r --include='*.cc' --include='*.c' | sort); do
    grep -qx "$f" po/POTFILES || { echo "$f uses _() but is not in po/POTFILES"; status=1; }
done
exit $status
