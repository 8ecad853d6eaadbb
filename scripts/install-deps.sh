#!/usr/bin/env bash
# Installs the Debian packages mayu's tests and lab need. Run as root on Debian 12 (bookworm).
#   dnsmasq-base  the dnsmasq binary only (the `dnsmasq` package would start a system DNS service)
#   ipxe          undionly.kpxe / ipxe.efi / snponly.efi for tftproot/
#   busybox-static, cpio   udhcpc for DHCP tests; the discovery and test images' userland
#   tftp-hpa      a real TFTP client for the TFTP tests
#   iproute2      network namespaces, veth pairs, bridges
#   tmux          drives the console in its end-to-end test
#   qemu-system-x86 (from bookworm-backports, to match the image's qemu-utils 10.x), ipxe-qemu,
#   ovmf          real machines network-booting in the QEMU tests
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (apt-get installs packages)" >&2
  exit 1
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
if [ "$codename" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  # Same mirror as the machine's own Debian source.
  # Only live source lines: deb822 files carry commented snapshot URLs above `URIs:`, and
  # /etc/apt/sources.list may not exist at all.
  mirror=$({ grep -rhE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null || true; } |
    grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<SRC
Types: deb
URIs: ${mirror%/}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

apt-get update
apt-get install -y --no-install-recommends \
  dnsmasq-base ipxe busybox-static cpio tftp-hpa iproute2 tmux ipxe-qemu ovmf kmod
if [ "$codename" = bookworm ]; then
  apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86
else
  apt-get install -y --no-install-recommends qemu-system-x86
fi
