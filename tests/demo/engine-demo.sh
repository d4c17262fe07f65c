#!/usr/bin/env bash
# The engine demo: a storage domain driven through sdm-local. Shows create (raw and
# qcow2), a snapshot layer, a clone with progress, a delete, an operation killed half-way
# and the garbage collector sweeping what it left.
# Usage: engine-demo.sh SDM_LOCAL_BINARY DEMO_DIR
set -euo pipefail
sdm=$(realpath "$1")
base=$2
domain=$base/domain

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$sdm|sdm-local|"; "$@"; }

rm -rf "$base"
mkdir -p "$domain"

say "Format an empty directory as a storage domain"
run "$sdm" format "$domain" --io-timeout 10
run ls "$domain"

say "Create a raw sparse volume and a qcow2 volume"
run "$sdm" create "$domain" vm1-disk 1G
run "$sdm" create "$domain" vm2-disk 2G --format qcow2 --prealloc metadata

say "Write 256 MiB into vm1-disk, as a guest would"
vm1=$("$sdm" show "$domain" vm1-disk | awk '/^path:/ { print $2 }')
run dd if=/dev/urandom of="$vm1" bs=1M count=256 conv=notrunc status=none
run "$sdm" list "$domain"

say "Add a snapshot layer on vm2-disk"
run "$sdm" create "$domain" vm2-snap1 0 --format qcow2 --backing vm2-disk

say "Clone vm1-disk into a new image (progress is reported by the job)"
run "$sdm" clone "$domain" vm1-disk vm1-clone

say "Delete the clone"
run "$sdm" delete "$domain" vm1-clone

say "Kill a clone half-way (SDM_CRASH_AT stops the process at a named step)"
printf '$ SDM_CRASH_AT=clone.copied sdm-local clone %s vm1-disk half-clone\n' "$domain"
set +e
SDM_CRASH_AT=clone.copied "$sdm" clone "$domain" vm1-disk half-clone
echo "(exit status $?: killed by SIGKILL)"
set -e
say "What it left: a transaction directory with its marker and its garbage"
run ls -R "$domain/tx"
run cat "$domain"/tx/*/marker
say "Users never see it: the half-made clone is not a volume"
run "$sdm" list "$domain"
run "$sdm" check "$domain" || true

say "The garbage collector sweeps it (its owner is dead: the lease it held is free)"
run "$sdm" gc "$domain"
run "$sdm" check "$domain"
run ls "$domain/tx"

say "Done"
cat <<TXT
The domain is at $domain. Try, for example:
  $sdm list $domain
  $sdm steps clone
  $sdm --help
Remove it with: rm -rf $base
TXT
