#!/usr/bin/env bash
# The Debian package, end to end (README "Install from the Debian package"): builds it
# (scripts/build-deb.sh), checks its contents and control data, runs lintian, installs it with
# apt-get, checks what the install made (user, folders, conffile, `mayu check` on the packaged
# config, `systemd-analyze verify` on the unit), starts the installed service command as the
# unit would (user mayu, the unit's capabilities only) in a network namespace of its own, then
# purges the package and removes what the test itself left.
# Needs root, dpkg-dev, lintian and systemd (scripts/install-deps.sh) and cargo-deb (installed
# here when missing). With CI=true a missing tool or root fails; otherwise the test skips.
# It refuses to run where a `mayu` package is already installed: it would remove it.
# MAYU_DEB=PATH tests that package instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-package.sh: FAIL: $*" >&2; exit 1; }
skip() {
  if [ "${CI:-}" = true ]; then fail "$* (CI=true: a test that cannot run fails)"; fi
  echo "test-package.sh: SKIP: $*" >&2
  exit 0
}

[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i, a system user, a network namespace)"
# Under sudo, root's PATH has no cargo: use the invoking user's rustup toolchain (as
# scripts/test.sh does) and hand what was built back to them.
if ! command -v cargo >/dev/null 2>&1 && [ -n "${SUDO_USER:-}" ]; then
  home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [ -x "$home/.cargo/bin/cargo" ]; then
    export PATH="$home/.cargo/bin:$PATH"
    export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}" CARGO_HOME="${CARGO_HOME:-$home/.cargo}"
    sudo_user=$SUDO_USER
  fi
fi
command -v cargo >/dev/null 2>&1 || skip "cargo not found; install Rust (https://rustup.rs) first"
# protoc (protobuf-compiler, and libprotobuf-dev for the google/protobuf/*.proto it imports):
# the package's mayu is built with the etcd inventory.
if [ -z "${MAYU_DEB:-}" ] && ! [ -f /usr/include/google/protobuf/descriptor.proto ]; then
  apt-get install -y -q --no-install-recommends protobuf-compiler libprotobuf-dev
fi
for tool in dpkg-deb dpkg-shlibdeps lintian systemd-analyze apt-get setpriv ip python3; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool not found; run scripts/install-deps.sh"
done
if dpkg-query -W -f='${Status}' mayu 2>/dev/null | grep -q 'install ok installed'; then
  skip "a mayu package is installed on this machine; this test would purge it"
fi
if ! command -v cargo-deb >/dev/null 2>&1; then
  # Pinned: the package's layout is what this version makes of ui/Cargo.toml.
  cargo install cargo-deb --locked --version 3.8.0
fi

# What existed before, so that cleanup removes only what this test made.
had_user=; getent passwd mayu >/dev/null && had_user=1
had_state=; [ -e /var/lib/mayu ] && had_state=1
ns=mayu-pkgtest
pid=
sudo_user=${sudo_user:-}
cleanup() {
  set +e
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
  ip netns del "$ns" 2>/dev/null
  if dpkg-query -W -f='${Status}' mayu 2>/dev/null | grep -q installed; then
    apt-get purge -y -q mayu >/dev/null
  fi
  [ -n "$had_state" ] || rm -rf /var/lib/mayu
  [ -n "$had_user" ] || ! getent passwd mayu >/dev/null || deluser --system --quiet mayu 2>/dev/null
  rm -rf "$work"
  if [ -n "${sudo_user:-}" ]; then
    chown -R "$SUDO_UID:$SUDO_GID" target packaging/debian/generated "$CARGO_HOME/registry" \
      "$CARGO_HOME/git" "$CARGO_HOME/bin" 2>/dev/null
  fi
}
work=$(mktemp -d)
trap cleanup EXIT

echo "== build"
if [ -n "${MAYU_DEB:-}" ]; then
  deb=$MAYU_DEB # a package built already (scripts/build-deb.sh), when iterating on this test
else
  scripts/build-deb.sh | tee "$work/build.log"
  deb=$(tail -n 1 "$work/build.log")
fi
version=$(sed -n '1s/^mayu (\([^)]*\)).*/\1/p' packaging/debian/changelog)
[ "$(basename "$deb")" = "mayu_${version}_amd64.deb" ] || fail "built $deb, expected mayu_${version}_amd64.deb"
[ -f "$deb" ] || fail "$deb does not exist"

echo "== control data"
dpkg-deb -f "$deb" > "$work/control"
cat "$work/control"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = mayu ] || fail "Package is $(field Package)"
[ "$(field Architecture)" = amd64 ] || fail "Architecture is $(field Architecture)"
[ "$(field Version)" = "$version" ] || fail "Version is $(field Version), the changelog says $version"
depends=$(field Depends)
# dpkg-shlibdeps ($auto) names libc6; the rest are declared.
for dep in libc6 adduser dnsmasq-base ipxe gpgv; do
  echo "$depends" | tr ',' '\n' | grep -q "^ *$dep\( \|$\)" || fail "Depends lacks $dep: $depends"
done
dpkg-deb --info "$deb" conffiles > "$work/conffiles"
grep -qx /etc/mayu/config.yaml "$work/conffiles" || fail "/etc/mayu/config.yaml is no conffile"
for script in postinst postrm prerm; do
  dpkg-deb --info "$deb" "$script" > "$work/$script" || fail "no $script"
done
grep -q 'adduser --system' "$work/postinst" || fail "postinst makes no system user"
grep -q 'deb-systemd-helper' "$work/postinst" || fail "postinst does not register the unit"

echo "== contents"
dpkg-deb -c "$deb" | awk '{print $1, $NF}' > "$work/contents"
want() { # MODE PATH
  grep -qxF -e "$1 ./$2" "$work/contents" || fail "no $2 with mode $1 in the package: $(grep -F -e "$2" "$work/contents" || echo absent)"
}
want -rwxr-xr-x usr/bin/mayu
want -rwxr-xr-x usr/bin/mayuctl
want -rw-r--r-- usr/lib/systemd/system/mayu.service
want -rw-r--r-- etc/mayu/config.yaml
want -rw-r--r-- usr/share/mayu/templates/dnsmasq.conf
want -rw-r--r-- usr/share/mayu/templates/flatcar.ipxe
want -rw-r--r-- usr/share/mayu/templates/snippets/boot-complete.service
want -rw-r--r-- usr/share/doc/mayu/copyright
want -rw-r--r-- usr/share/doc/mayu/changelog.Debian.gz
want -rw-r--r-- usr/share/lintian/overrides/mayu
for b in mayu mayuctl; do
  want -rw-r--r-- "usr/share/bash-completion/completions/$b"
  want -rw-r--r-- "usr/share/zsh/vendor-completions/_$b"
  want -rw-r--r-- "usr/share/fish/vendor_completions.d/$b.fish"
  want -rw-r--r-- "usr/share/man/man1/$b.1.gz"
done
want -rw-r--r-- usr/share/man/man1/mayu-check.1.gz
want -rw-r--r-- usr/share/man/man1/mayuctl-list.1.gz
want -rw-r--r-- usr/share/man/man1/mayuctl-token-add.1.gz
# The hidden generators are no pages of their own.
! grep -q 'man1/mayu\(ctl\)\?-\(man\|completions\)\.1' "$work/contents" || fail "a man page for a hidden subcommand"

echo "== lintian"
# Clean at warning level; every override in packaging/debian/lintian-overrides says why.
lintian --fail-on error,warning --display-info "$deb" || fail "lintian"

echo "== install"
apt-get install -y -q "$(realpath "$deb")"
getent passwd mayu | grep -q ':/var/lib/mayu:' || fail "no system user mayu with home /var/lib/mayu"
[ "$(getent passwd mayu | cut -d: -f3)" -lt 1000 ] || fail "mayu is no system user"
for dir in /var/lib/mayu /var/log/mayu; do
  [ "$(stat -c '%U:%G %a' "$dir")" = "mayu:mayu 750" ] || fail "$dir is $(stat -c '%U:%G %a' "$dir")"
done
[ "$(systemctl is-enabled mayu.service 2>/dev/null || true)" != enabled ] || fail "the unit was enabled on install"
# Completions and man pages as the shells and man find them.
bash -c 'source /usr/share/bash-completion/completions/mayuctl && complete -p mayuctl' >/dev/null ||
  fail "the bash completion defines no completion for mayuctl"
zcat /usr/share/man/man1/mayuctl.1.gz | grep -q '^\.TH mayuctl 1' || fail "mayuctl.1 is no man page"

echo "== mayu check --config /etc/mayu/config.yaml"
mayu check --config /etc/mayu/config.yaml | tee "$work/check"
grep -q '^/etc/mayu/config.yaml: ok' "$work/check" || fail "mayu check did not say ok"

echo "== systemd-analyze verify"
systemd-analyze verify /usr/lib/systemd/system/mayu.service 2>&1 | tee "$work/verify"
# Nothing at all: a warning here is a unit systemd would run differently than written.
[ ! -s "$work/verify" ] || fail "systemd-analyze verify said something"

echo "== the unit's command as the unit runs it"
# No systemd may be running here (containers): run ExecStart as User= with exactly the unit's
# AmbientCapabilities, in a network namespace that has the packaged config's interface and
# address, so ports are free and dnsmasq really starts, as user mayu.
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/mayu.service)
caps=$(sed -n 's/^AmbientCapabilities=//p' /usr/lib/systemd/system/mayu.service |
  tr ' ' '\n' | sed 's/^CAP_//' | tr 'A-Z' 'a-z' | sed 's/^/+/' | paste -sd,)
ip netns add "$ns"
ip -n "$ns" link set lo up
# a veth pair: the dummy driver is not in every kernel or container
ip -n "$ns" link add mayu0 type veth peer name mayu0-peer
ip -n "$ns" link set mayu0-peer up
ip -n "$ns" addr add 10.77.0.1/24 dev mayu0
ip -n "$ns" link set mayu0 up
# shellcheck disable=SC2086 # ExecStart is split into words as systemd does
ip netns exec "$ns" setpriv --reuid=mayu --regid=mayu --init-groups \
  --inh-caps="$caps" --ambient-caps="$caps" --bounding-set=-all,"$caps" \
  env HOME=/var/lib/mayu $exec_start > "$work/service.log" 2>&1 &
pid=$!
token=/var/lib/mayu/tokens.json.admin
ctl() { ip netns exec "$ns" mayuctl --token-file "$token" "$@"; }
up=
for _ in $(seq 1 100); do
  if [ -f "$token" ] && ctl services --json > "$work/services.json" 2>/dev/null &&
    grep -q '"dnsmasq"' "$work/services.json" &&
    ! grep -q '"starting"' "$work/services.json"; then
    up=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$work/service.log"; fail "the service command exited"; }
  sleep 0.2
done
[ -n "$up" ] || { cat "$work/service.log"; fail "the service did not answer within 20 s"; }
sleep 2
ctl services --json > "$work/services.json"
ctl services
python3 - "$work/services.json" <<'PY' || { cat "$work/service.log"; fail "a service is not doing its job as user mayu"; }
import json, sys
services = {s["name"]: s for s in json.load(open(sys.argv[1]))}
bad = {n: s for n, s in services.items() if s["status"] not in ("running", "watching", "ok", "disabled")}
if services.get("dnsmasq", {}).get("status") != "running" or bad:
    print(json.dumps(bad or services, indent=1))
    sys.exit(1)
PY
dnsmasq_pid=$(pgrep -P "$pid" dnsmasq) || fail "no dnsmasq child"
[ "$(ps -o user= -p "$dnsmasq_pid")" = mayu ] || fail "dnsmasq runs as $(ps -o user= -p "$dnsmasq_pid")"
[ "$(stat -c %U /var/lib/mayu/inventory)" = mayu ] || fail "the inventory is not mayu's"
[ -f /var/lib/mayu/tftproot/ipxe.efi ] || fail "the TFTP root was not filled from Debian's ipxe"
[ -n "$(ls /var/log/mayu)" ] || fail "nothing logged in /var/log/mayu"
kill "$pid"
wait "$pid" || fail "the service command did not stop cleanly on SIGTERM: $(tail -n 5 "$work/service.log")"
pid=
pgrep -u mayu dnsmasq >/dev/null && fail "dnsmasq outlived mayu"

echo "== purge"
apt-get purge -y -q mayu
for gone in /usr/bin/mayu /usr/bin/mayuctl /etc/mayu /usr/lib/systemd/system/mayu.service /var/log/mayu; do
  [ ! -e "$gone" ] || fail "$gone is still there after purge"
done
echo "test-package.sh: ok"
