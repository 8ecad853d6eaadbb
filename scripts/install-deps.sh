#!/usr/bin/env bash
# Installs the Debian packages mayu's tests and lab need. Run as root on Debian 12 (bookworm).
#   dnsmasq-base  the dnsmasq binary only (the `dnsmasq` package would start a system DNS service)
#   ipxe          undionly.kpxe / ipxe.efi / snponly.efi for tftproot/
#   busybox-static, cpio   udhcpc for DHCP tests; the discovery and test images' userland
#   tftp-hpa      a real TFTP client for the TFTP tests
#   iproute2      network namespaces, veth pairs, bridges
#   tmux          drives the console in its end-to-end test
#   cloud-init    `cloud-init schema` validates the cloud-config mayu serves
#   prometheus    its `promtool check metrics` validates /metrics
#   wrk, nginx-light   scripts/bench.sh: the load client, and the reference server beside mayu
#   git, ca-certificates   the audit tests and image downloads (not on every stock image)
#   extlinux, syslinux-common   the lab installer makes a machine's disk bootable (install-to-disk test)
#   gpgv, gnupg   gpgv verifies fetched OS images (mayu images fetch); gpg signs fake releases in tests
#   qemu-system-x86 (from bookworm-backports, to match the image's qemu-utils 10.x), ipxe-qemu,
#   ovmf          real machines network-booting in the QEMU tests
#   openipmi, ipmitool   each lab/test machine's BMC (ipmi_sim, IPMI-over-LAN) and the client
#                 mayu's power control runs (ipmitool -I lanplus)
#   dpkg-dev, lintian, systemd, man-db   scripts/test-package.sh: dpkg-shlibdeps (cargo-deb's
#                 $auto dependencies), the package's lint, systemd-analyze verify on its unit
#                 (which also looks up the unit's Documentation= man pages)
#   etcd-server, etcd-client   the etcd inventory's tests start a real 3-member etcd cluster
#                 (the `etcd` binary) on loopback ports the OS picks and check it with `etcdctl`;
#                 where systemd runs, etcd-server also starts a system etcd on 127.0.0.1:2379/2380,
#                 which the tests never use
#   protobuf-compiler, libprotobuf-dev   `protoc`: the etcd client (cargo feature `etcd`, on in CI,
#                 scripts/test.sh and the Debian package) generates its gRPC code with it at build
#                 time; libprotobuf-dev has the google/protobuf/*.proto files it imports (only a
#                 Recommends of protobuf-compiler, which --no-install-recommends leaves out)
#   g++           libstdc++ for scripts/fuzz-smoke.sh: cargo-fuzz's libFuzzer is C++ (Debian's
#                 cloud image has it through build-essential; a bare system with gcc alone does not)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."

# --root DIR --sources-only: only add the backports source, under DIR (the tests run this
# against fixture layouts of /etc/apt).
root=
sources_only=
while [ $# -gt 0 ]; do
  case "$1" in
  --root) root=$2; shift 2 ;;
  --sources-only) sources_only=1; shift ;;
  *) echo "install-deps.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$sources_only" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get installs packages)" >&2
  exit 1
fi

codename=$(. "$root/etc/os-release" && echo "${VERSION_CODENAME:-bookworm}")
sources=(scripts/apt-sources.sh --root "$root")
if [ "$codename" = bookworm ] && ! "${sources[@]}" has-suite bookworm-backports; then
  # The same mirror (and keyring) as the machine's own live Debian source; never a comment.
  if found=$("${sources[@]}" mirror bookworm); then
    mirror=${found%%$'\t'*}
    keyring=${found#*$'\t'}
  else
    mirror=http://deb.debian.org/debian
    keyring=
  fi
  keyring=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}
  mkdir -p "$root/etc/apt/sources.list.d"
  cat > "$root/etc/apt/sources.list.d/bookworm-backports.sources" <<SRC
Types: deb
URIs: ${mirror%/}
Suites: bookworm-backports
Components: main
Signed-By: ${keyring}
SRC
  echo "install-deps.sh: added bookworm-backports from ${mirror%/}"
fi
if [ -n "$sources_only" ]; then
  exit 0
fi

apt-get update
apt-get install -y --no-install-recommends \
  git ca-certificates gpgv gnupg cloud-init prometheus dnsmasq-base ipxe busybox-static cpio tftp-hpa iproute2 tmux ipxe-qemu ovmf kmod \
  extlinux syslinux-common wrk nginx-light openipmi ipmitool dpkg-dev lintian systemd man-db \
  etcd-server etcd-client protobuf-compiler libprotobuf-dev g++
if [ "$codename" = bookworm ]; then
  apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86
else
  apt-get install -y --no-install-recommends qemu-system-x86
fi
