#!/usr/bin/env bash
# Builds the Debian package: target/debian/mayu_<version>-<revision>_amd64.deb (cargo-deb, from
# [package.metadata.deb] in ui/Cargo.toml and packaging/debian/). Prints the package's path last.
#   1. release builds of `mayu` (with the etcd inventory, cargo feature `etcd`: needs `protoc`,
#      Debian protobuf-compiler and libprotobuf-dev) and `mayuctl` (over the same engine build);
#   2. bash/zsh/fish completions and man pages from the binaries' own clap definitions (hidden
#      subcommands `completions SHELL` and `man --out-dir DIR`) into packaging/debian/generated/;
#   3. cargo deb --no-build.
# Needs cargo-deb (`cargo install cargo-deb --locked`), dpkg-dev (dpkg-shlibdeps, for the
# `$auto` dependencies), protobuf-compiler and libprotobuf-dev; scripts/install-deps.sh installs the Debian ones.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "build-deb.sh: cargo-deb not found; install it with: cargo install cargo-deb --locked" >&2
  exit 1
fi

# The changelog's newest entry names the version being packaged (cargo-deb's default revision 1).
version=$(cargo metadata --format-version 1 --no-deps --locked |
  sed -n 's/.*"name":"mayu-console","version":"\([^"]*\)".*/\1/p')
top=$(sed -n '1s/^mayu (\([^)]*\)).*/\1/p' packaging/debian/changelog)
if [ "$top" != "$version-1" ]; then
  echo "build-deb.sh: packaging/debian/changelog starts with $top, but the package is $version-1: add an entry" >&2
  exit 1
fi

if ! command -v protoc >/dev/null 2>&1; then
  echo "build-deb.sh: protoc not found (the etcd client's build needs it); install protobuf-compiler (scripts/install-deps.sh)" >&2
  exit 1
fi
# One build for both binaries: the library and its dependencies are compiled once.
cargo build --release --locked -p mayu-console -p mayu --features mayu-console/etcd,mayu/etcd \
  --bin mayu --bin mayuctl
bin="${CARGO_TARGET_DIR:-target}/release"

# ui/Cargo.toml's assets name this path (ignored by git).
assets=packaging/debian/generated
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
for b in mayu mayuctl; do
  "$bin/$b" man --out-dir "$assets/man"
  "$bin/$b" completions bash > "$assets/completions/$b.bash"
  "$bin/$b" completions zsh > "$assets/completions/_$b"
  "$bin/$b" completions fish > "$assets/completions/$b.fish"
done

cargo deb --no-build -p mayu-console
