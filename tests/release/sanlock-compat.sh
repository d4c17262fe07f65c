#!/bin/sh
# Stopgap for building on sanlock >= 3.9 until the engine no longer embeds a sanlk_resource
# inside another struct (backend/sanlock/sanlock_lease.cc, SlotResource::WithDisk):
# sanlock 3.9 declares `struct sanlk_disk disks[];` where 3.8 had `disks[0]`, and g++
# refuses a flexible array member that is not at the end of the enclosing struct. When the
# installed sanlock.h has the new form, writes DIR/sanlock.h, the same header with the old
# declaration (the same layout: the engine's static_assert checks the offset), and prints
# the compiler flag that puts DIR first; else prints nothing.
#   sanlock-compat.sh DIR
set -eu
dir=$1
header=/usr/include/sanlock.h
grep -q 'struct sanlk_disk disks\[\];' "$header" || exit 0
mkdir -p "$dir"
sed 's/struct sanlk_disk disks\[\];/struct sanlk_disk disks[0];/' "$header" >"$dir/sanlock.h"
echo "-isystem $(cd "$dir" && pwd)"
