#!/usr/bin/env bash
# Fuzz smoke test: builds the cargo-fuzz targets in fuzz/ (nightly; the only nightly use in CI)
# and runs each briefly from its committed seed corpus (fuzz/corpus/<target>/), failing on any
# crash. The reproducer of a crash is left in fuzz/artifacts/<target>/.
#
#   FUZZ_SECONDS=60 scripts/fuzz-smoke.sh            # longer runs
#   FUZZ_TARGETS="config leases" scripts/fuzz-smoke.sh
#   MAYU_FUZZ_TARGET_DIR=DIR                         # build folder (default /var/tmp/mayu-fuzz-target)
#
# New inputs go to a temporary corpus, so a run never changes the committed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-15}"
targets="${FUZZ_TARGETS:-config dnsmasq_log leases machine_id template_context}"
# Overflow checks on (-a): an arithmetic overflow is a crash here, as it is in a debug build.
# --dev with fuzz/Cargo.toml's opt-level 1: the mayu crate builds in under 2 minutes instead of
# 6-9 (CI rebuilds it from every clone), and runs about half as many inputs a second as -O.
# 16 codegen units: a much faster build of the mayu crate on 2 cores, for a little speed.
# The nightly, instrumented build shares nothing with the stable one and takes long from nothing
# on 2 cores: its target folder lives outside the clone, so CI on the same machine reuses it.
target_dir="${MAYU_FUZZ_TARGET_DIR:-/var/tmp/mayu-fuzz-target}"
flags=(-a --dev --codegen-units 16 --fuzz-dir fuzz --target-dir "$target_dir")

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

echo "fuzz-smoke: building ${targets}"
cargo +nightly fuzz build "${flags[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
  mkdir -p "$scratch/$t"
  echo "fuzz-smoke: ${t} for ${seconds}s"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a blow-up is a crash too.
  if ! cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log"
    failed+=("$t")
  else
    grep -E '^stat::number_of_executed_units|^Done' "$scratch/$t.log" || true
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: crashes in: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz-smoke: no crashes"
