#!/usr/bin/env bash
# mayu beside nginx and plain-disk baselines, on loopback: every row of issue 12's table
# (assets, Range, /ipxe, /boot.ipxe, registration storms and continuous registrations with the
# git audit on, 10,000 machines: list, asset lookup, RSS, start-up). Three interleaved rounds,
# medians, the median of per-round ratios, load average noted. See BENCHMARKS.md.
#
#   scripts/bench.sh                     build (cargo build --release) and measure HEAD
#   MAYU_BIN=path scripts/bench.sh       measure that `mayu` binary instead
#   scripts/bench.sh --before BIN --before-label fc79e8e --out BENCHMARKS.md
#                                        measure BIN beside the build, rewrite the results part
#                                        of BENCHMARKS.md (between its bench:begin/end markers)
#   scripts/bench.sh --smoke             every measure tiny and once (CI): proves the script
#                                        works; checks answers, never timings
#   scripts/bench.sh --only small --section ipxe --before BIN --out BENCHMARKS.md
#                                        measure only block A (assets, /ipxe, /boot.ipxe) and
#                                        write it between <!-- bench:ipxe:begin/end --> markers
# Other options: --label L (the measured binary's column; default: its commit), --rounds N,
# --json FILE (every number), --keep (leave the run folder), --from-json FILE (measure nothing:
# write the report again from a --json file, with --out). BENCH_TMPDIR picks where the run
# folder goes (default /var/tmp: a disk, as the fsync rows need, not tmpfs).
# Needs: wrk, nginx (Debian nginx-light), python3, git (scripts/install-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }

smoke=
before=
before_label=before
label=
out=
rounds=
json=
keep=
from_json=
only=
section=
while [ $# -gt 0 ]; do
  case "$1" in
  --smoke) smoke=1; shift ;;
  --before) before=$2; shift 2 ;;
  --before-label) before_label=$2; shift 2 ;;
  --label) label=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --rounds) rounds=$2; shift 2 ;;
  --json) json=$2; shift 2 ;;
  --keep) keep=1; shift ;;
  --from-json) from_json=$2; shift 2 ;;
  --only) only=$2; shift 2 ;;
  --section) section=$2; shift 2 ;;
  -h | --help) usage; exit 0 ;;
  *) echo "bench.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ -n "$from_json" ]; then
  exec python3 scripts/bench/run.py --from-json "$from_json" ${out:+--out "$out"} ${smoke:+--smoke}
fi

for tool in wrk nginx python3 git; do
  if ! command -v "$tool" > /dev/null 2>&1 && ! [ -x "/usr/sbin/$tool" ]; then
    echo "bench.sh: $tool is missing (scripts/install-deps.sh installs it)" >&2
    exit 1
  fi
done
export PATH="$PATH:/usr/sbin"

if [ -n "${MAYU_BIN:-}" ]; then
  bin=$MAYU_BIN
  label=${label:-$(basename "$bin")}
else
  cargo build --release --locked -p mayu-console --bin mayu
  bin="${CARGO_TARGET_DIR:-target}/release/mayu"
  if [ -z "$label" ]; then
    label=$(git rev-parse --short HEAD)
    if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
      label="$label+wip"
    fi
  fi
fi
if ! [ -x "$bin" ]; then
  echo "bench.sh: $bin is not an executable mayu binary" >&2
  exit 1
fi
if [ -n "$before" ] && ! [ -x "$before" ]; then
  echo "bench.sh: --before $before is not an executable mayu binary" >&2
  exit 1
fi

# 1,000 connections at once, and nginx's 4,096 per worker.
ulimit -n "$(ulimit -Hn)" 2> /dev/null || true

tmp=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/mayu-bench.XXXXXX")
driver=
cleanup() {
  local pid cmd
  if [ -n "$driver" ] && kill -0 "$driver" 2> /dev/null; then
    kill -TERM "$driver" 2> /dev/null || true
    wait "$driver" 2> /dev/null || true
  fi
  # Whatever the driver started and did not stop (it records every pid it starts).
  if [ -f "$tmp/pids" ]; then
    # Only if the pid is still ours: a server started with this run's folder, or an nginx
    # worker (their command line is only a title).
    while read -r pid; do
      [ -r "/proc/$pid/cmdline" ] || continue
      cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null) || continue
      case "$cmd" in
      *"$tmp"* | "nginx: worker process"*) kill -KILL "$pid" 2> /dev/null || true ;;
      esac
    done < "$tmp/pids"
  fi
  if [ -n "$keep" ]; then
    echo "bench.sh: run folder kept: $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

args=(--tmp "$tmp" --now "$bin" --now-label "$label")
if [ -n "$before" ]; then
  args+=(--before "$before" --before-label "$before_label")
fi
if [ -n "$smoke" ]; then
  args+=(--smoke)
fi
if [ -n "$rounds" ]; then
  args+=(--rounds "$rounds")
fi
if [ -n "$out" ]; then
  args+=(--out "$out")
fi
if [ -n "$json" ]; then
  args+=(--json "$json")
fi
if [ -n "$only" ]; then
  args+=(--only "$only")
fi
if [ -n "$section" ]; then
  args+=(--section "$section")
fi

python3 scripts/bench/run.py "${args[@]}" &
driver=$!
status=0
wait "$driver" || status=$?
driver=
exit "$status"
