#!/bin/sh
# Turns one of docs/*.[18].md into a roff man page with lowdown: the heading
# "# NAME(S) — summary" becomes the title and the NAME section (what whatis and apropos
# read), each "## Section" a section heading in capitals.
#   md2man.sh PAGE.md VERSION OUT
set -eu
in=$1
version=$2
out=$3
head=$(head -n 1 "$in")
name=$(printf '%s\n' "$head" | sed -n 's/^# \([^(]*\)(\([0-9]\)) — \(.*\)$/\1/p')
section=$(printf '%s\n' "$head" | sed -n 's/^# \([^(]*\)(\([0-9]\)) — \(.*\)$/\2/p')
summary=$(printf '%s\n' "$head" | sed -n 's/^# \([^(]*\)(\([0-9]\)) — \(.*\)$/\3/p')
if [ -z "$name" ] || [ -z "$summary" ]; then
    echo "md2man.sh: $in must start with '# name(N) — summary'" >&2
    exit 1
fi
{
    printf '# NAME\n\n%s \\- %s\n\n' "$name" "$summary"
    tail -n +2 "$in" | sed 's/^## \(.*\)$/# \U\1/'
} | lowdown -s -Tman --parse-no-super -M "title:$name" -M "section:$section" \
    -M "source:libvirt-sdm $version" -M "date:" |
    # A '|' inside a table's code span is written '\|' in Markdown; roff needs it bare.
    # The first line tells man(1) to run the pages' tables through tbl.
    sed -e 's/\\e|/|/g' -e "1i '\\\\\" t" >"$out.tmp"
mv "$out.tmp" "$out"
