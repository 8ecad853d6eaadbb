#!/usr/bin/env bash
# Runs every test: installs the Debian packages they need (as root), fills tftproot/ from
# Debian's ipxe package, builds the boot images, then `cargo test` over the whole workspace
# with the etcd inventory built in (cargo feature `etcd`).
# Network, dnsmasq and QEMU tests need root; with CI=true they fail rather than skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# Under sudo, root's PATH (sudo's secure_path) has no cargo: use the invoking user's rustup
# toolchain, as `sudo scripts/test.sh` on a fresh machine with rustup for that user needs.
if ! command -v cargo >/dev/null 2>&1 && [ -n "${SUDO_USER:-}" ]; then
  home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [ -x "$home/.cargo/bin/cargo" ]; then
    export PATH="$home/.cargo/bin:$PATH"
    export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}" CARGO_HOME="${CARGO_HOME:-$home/.cargo}"
    # What root builds and downloads here goes back to that user, so their own `cargo run`
    # (README command 1) can still write to target/ and the crate cache afterwards.
    give_back() {
      chown -R "$SUDO_UID:$SUDO_GID" target .cache tftproot images "$CARGO_HOME/registry" \
        "$CARGO_HOME/git" 2>/dev/null || true
    }
    trap give_back EXIT
  fi
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

if [ "${MAYU_DEPS_INSTALLED:-}" = 1 ]; then
  :
elif [ "$(id -u)" -eq 0 ]; then
  scripts/install-deps.sh
else
  echo "test.sh: not root; skipping package installs (network and QEMU tests will not run)" >&2
fi
for prep in scripts/fill-tftproot.sh scripts/build-discovery.sh scripts/build-test-image.sh \
  scripts/build-install-image.sh; do
  if [ -x "$prep" ]; then "$prep"; fi
done
# Snapshots are committed; a test never writes new ones here.
export INSTA_UPDATE=no
# With the etcd inventory (cargo feature `etcd`; protoc from protobuf-compiler builds it): its
# tests start real etcd clusters.
cargo test --workspace --locked --features mayu/etcd,mayu-console/etcd
