#!/usr/bin/env bash
# Reads a machine's apt sources the way apt does: deb822 files (sources.list.d/*.sources) and
# one-line entries (sources.list, sources.list.d/*.list). Comment lines never count: stock
# Debian 12 images carry a commented snapshot URL above each `URIs:` line, and may have no
# /etc/apt/sources.list at all.
#
# Usage: scripts/apt-sources.sh [--root DIR] COMMAND
#   mirror CODENAME      the URI of the live source serving CODENAME (e.g. bookworm), then a
#                        tab and its Signed-By keyring when it names a file; exit 1 if none
#   has-suite SUITE      exit 0 when a live source enables SUITE (e.g. bookworm-backports)
#   --root DIR           read DIR/etc/apt instead of /etc/apt (the tests use fixture layouts)
set -euo pipefail

root=
if [ "${1:-}" = --root ]; then
  root=$2
  shift 2
fi
apt=$root/etc/apt

# Every live source as one line: `URI<TAB>SUITE SUITE...<TAB>SIGNED-BY`.
sources() {
  local f
  for f in "$apt"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush() {
        if (uris != "" && suites != "" && types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
          n = split(uris, u, " ")
          for (i = 1; i <= n; i++) print u[i] "\t" suites "\t" signed
        }
        types = ""; uris = ""; suites = ""; signed = ""; enabled = ""; key = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { next }  # a continuation line (e.g. an inline key block)
      {
        key = tolower($0); sub(/:.*/, "", key)
        value = $0; sub(/^[^:]*:[ \t]*/, "", value); sub(/[ \t]+$/, "", value)
        gsub(/[ \t]+/, " ", value)
        if (key == "types") types = value
        else if (key == "uris") uris = value
        else if (key == "suites") suites = value
        else if (key == "enabled") enabled = value
        else if (key == "signed-by" && value ~ /^\//) signed = value
      }
      END { flush() }
    ' "$f"
  done
  for f in "$apt"/sources.list "$apt"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '
      /^[ \t]*#/ { next }
      $1 == "deb" {
        signed = ""; i = 2
        if ($2 ~ /^\[/) {
          # options: [arch=amd64 signed-by=/path] may span several fields
          for (; i <= NF; i++) {
            if ($i ~ /signed-by=/) { s = $i; sub(/.*signed-by=/, "", s); sub(/\]$/, "", s); signed = s }
            if ($i ~ /\]$/) { i++; break }
          }
        }
        if (i + 1 <= NF) print $i "\t" $(i + 1) "\t" signed
      }
    ' "$f"
  done
}

case "${1:-}" in
mirror)
  codename=${2:?usage: apt-sources.sh mirror CODENAME}
  found=$(sources | awk -F '\t' -v want="$codename" '
    !done { n = split($2, s, " "); for (i = 1; i <= n; i++) if (s[i] == want) { print $1 "\t" $3; done = 1; break } }')
  if [ -z "$found" ]; then
    exit 1
  fi
  printf '%s\n' "$found"
  ;;
has-suite)
  suite=${2:?usage: apt-sources.sh has-suite SUITE}
  sources | awk -F '\t' -v want="$suite" '
    { n = split($2, s, " "); for (i = 1; i <= n; i++) if (s[i] == want) found = 1 }
    END { exit !found }'
  ;;
*)
  sed -n '2,11s/^# \{0,1\}//p' "$0" >&2
  exit 2
  ;;
esac
