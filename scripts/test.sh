#!/usr/bin/env bash
# Runs every test: installs the Debian packages they need (as root), fills tftproot/ from
# Debian's ipxe package, builds the boot images, then `cargo test` over the whole workspace.
# Network, dnsmasq and QEMU tests need root; with CI=true they fail rather than skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${MAYU_DEPS_INSTALLED:-}" = 1 ]; then
  :
elif [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
else
  echo "test.sh: not root; skipping package installs (network and QEMU tests will not run)" >&2
fi
for prep in scripts/fill-tftproot.sh scripts/build-discovery.sh scripts/build-test-image.sh; do
  if [ -x "$prep" ]; then "$prep"; fi
done
# Snapshots are committed; a test never writes new ones here.
export INSTA_UPDATE=no
cargo test --workspace --locked
