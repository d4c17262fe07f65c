#!/usr/bin/env bash
# Writes the seed corpus of tests/fuzz/dbus_fuzz.cc into tests/fuzz/corpus/dbus/: one file
# per call below, "Method\n" then the arguments serialized as a GVariant of the method's
# input type (the seeds are listed in GVariant text form, which is easier to review).
# Run it again after changing a seed; the files are committed, so fuzzing needs no setup.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/corpus/dbus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/serialize.c" <<'C'
#include <glib.h>
#include <stdio.h>
/* serialize TYPE TEXT: the GVariant TEXT of TYPE, in its serialized form, on stdout. */
int main(int argc, char **argv)
{
    GError *error = NULL;
    if (argc != 3)
        return 2;
    GVariant *value = g_variant_parse(G_VARIANT_TYPE(argv[1]), argv[2], NULL, NULL, &error);
    if (!value) {
        fprintf(stderr, "%s: %s\n", argv[2], error->message);
        return 1;
    }
    fwrite(g_variant_get_data(value), 1, g_variant_get_size(value), stdout);
    return 0;
}
C
# shellcheck disable=SC2046
cc -o "$tmp/serialize" "$tmp/serialize.c" $(pkg-config --cflags --libs glib-2.0)

seed() {  # FILE METHOD TYPE TEXT
    { printf '%s\n' "$2"; "$tmp/serialize" "$3" "$4"; } >"$out/$1"
}

rm -rf "$out"
mkdir -p "$out"
uuid=0b6f1c4e-3f5a-4d2b-9a7c-1e2d3c4b5a69
image=5d7e8f90-1a2b-4c3d-8e4f-a0b1c2d3e4f5
seed format FormatDomain '(sa{sv})' \
    "('/srv/sdm/d1', {'io_timeout': <uint32 10>, 'sector_size': <uint32 4096>, 'alignment': <uint64 8388608>})"
seed format-relative FormatDomain '(sa{sv})' "('srv/d1', @a{sv} {})"
seed format-wrong-type FormatDomain '(sa{sv})' "('/srv/d1', {'io_timeout': <'10'>})"
seed attach AttachDomain '(s)' "('/srv/sdm/d1',)"
seed remove RemoveDomain '(s)' "('relative',)"
seed plan PlanVolume '(ssa{sv})' "('$uuid', 'top', {'backing': <'base'>})"
seed create CreateVolume '(ssta{sv})' \
    "('/srv/sdm/d1', 'disk', 1073741824, {'format': <'qcow2'>, 'prealloc': <'metadata'>, 'uuid': <'$uuid'>, 'image': <'$image'>})"
seed create-layer CreateVolume '(ssta{sv})' "('d', 'layer', 0, {'backing': <'base'>})"
seed create-bad-name CreateVolume '(ssta{sv})' "('d', '../x', 1, @a{sv} {})"
seed create-unknown-option CreateVolume '(ssta{sv})' "('d', 'v', 1, {'compression': <true>})"
seed clone CloneVolume '(sssa{sv})' "('d', 'base', 'copy', {'format': <'raw'>})"
seed delete DeleteVolume '(ss)' "('d', 'disk')"
seed resize ResizeVolume '(sst)' "('d', 'disk', 2147483648)"
seed lookup LookupVolume '(ss)' "('d', '.')"
seed lease GetLeaseXml '(ss)' "('d', 'disk')"
seed upload UploadVolume '(sstthha{sv})' "('d', 'disk', 0, 4096, handle 0, handle 1, @a{sv} {})"
seed download DownloadVolume '(ssttha{sv})' "('d', 'disk', 512, 0, handle 0, {'sparse': <true>})"
seed wipe WipeVolume '(ssa{sv})' "('d', 'disk', {'algorithm': <'dod'>})"
seed import ImportVolume '(ssha{sv})' \
    "('d', 'imported', handle 0, {'source_format': <'qcow2'>, 'format': <'raw'>, 'capacity': <uint64 1048576>, 'uuid': <'NOT-A-UUID'>})"
seed reply-domain 'reply:domain' '(a{sv})' \
    "({'uuid': <'$uuid'>, 'path': <'/srv/d1'>, 'version': <uint32 1>, 'joined': <true>},)"
seed reply-job 'reply:job' '(a{sv})' \
    "({'id': <'job-1'>, 'state': <'failed'>, 'error_code': <'NoSpace'>, 'result': <{'uuid': <'$uuid'>}>},)"
seed reply-gc 'reply:gc' '(a{sv})' "({'seen': <uint32 2>, 'lines': <['a', 'b']>},)"
echo "wrote $(find "$out" -type f | wc -l) seeds to $out"
