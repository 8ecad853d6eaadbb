#!/bin/sh
# Fills mayu's TFTP root with the iPXE network boot programs from Debian's `ipxe` package:
#   undionly.kpxe  BIOS PXE firmware
#   ipxe.efi       UEFI x86-64 firmware
#   snponly.efi    UEFI x86-64 firmware when network.uefi_snponly is set
#   ipxe-arm64.efi arm64 UEFI firmware (not in Debian's package; see below)
#
# Usage: scripts/fill-tftproot.sh [TFTPROOT]
#   TFTPROOT defaults to tftproot/ in this repository (what the shipped config.yaml uses).
#   IPXE_ARM64=/path/to/ipxe.efi  copies an arm64 iPXE EFI binary you built or downloaded
#                                 (iPXE's `make bin-arm64-efi/ipxe.efi`) as ipxe-arm64.efi.
#
# With the package installed (apt-get install ipxe) the files come from /usr/lib/ipxe.
# Without it, the package is fetched with `apt-get download` and unpacked into a temporary
# folder; nothing is installed.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/tftproot}
src=/usr/lib/ipxe

if [ ! -f "$src/undionly.kpxe" ] || [ ! -f "$src/ipxe.efi" ]; then
    command -v apt-get >/dev/null 2>&1 || {
        echo "fill-tftproot: $src has no iPXE binaries and apt-get is missing;" >&2
        echo "install Debian's ipxe package or copy the files by hand" >&2
        exit 1
    }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # apt's download user (_apt) must be able to write into the folder.
    chmod 1777 "$tmp"
    echo "fill-tftproot: downloading Debian's ipxe package into $tmp"
    (cd "$tmp" && apt-get download ipxe)
    dpkg -x "$tmp"/ipxe_*.deb "$tmp/root"
    src=$tmp/root/usr/lib/ipxe
fi

mkdir -p "$dest"
for f in undionly.kpxe ipxe.efi snponly.efi; do
    if [ -f "$src/$f" ]; then
        install -m 0644 "$src/$f" "$dest/$f"
        echo "fill-tftproot: $dest/$f"
    else
        echo "fill-tftproot: warning: $src/$f not found; those clients cannot boot" >&2
    fi
done

if [ -n "${IPXE_ARM64:-}" ]; then
    install -m 0644 "$IPXE_ARM64" "$dest/ipxe-arm64.efi"
    echo "fill-tftproot: $dest/ipxe-arm64.efi (from $IPXE_ARM64)"
elif [ ! -f "$dest/ipxe-arm64.efi" ]; then
    echo "fill-tftproot: note: Debian's ipxe package has no arm64 build; arm64 machines need" >&2
    echo "  ipxe-arm64.efi (run again with IPXE_ARM64=/path/to/ipxe.efi)" >&2
fi

# dnsmasq serves TFTP as an unprivileged user unless told otherwise: the files must be
# readable and every folder down to them traversable.
chmod a+rX "$dest"
dir=$(cd "$dest" && pwd)
while [ "$dir" != "/" ]; do
    case "$(stat -c %A "$dir" | cut -c10)" in
    x | t) ;;
    *) echo "fill-tftproot: warning: $dir is not world-traversable; dnsmasq may refuse the TFTP root" >&2 ;;
    esac
    dir=$(dirname "$dir")
done
