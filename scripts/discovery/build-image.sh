# Builds one netboot image (vmlinuz + initrd.img) from Debian packages only: the kernel from a
# `linux-image-*` package (downloaded, unpacked, never installed), busybox from busybox-static,
# and an /init from this folder. Sourced by scripts/build-discovery.sh and
# scripts/build-test-image.sh; call `build_image NAME INIT`.
#
# Environment:
#   MAYU_KERNEL_FLAVOUR  Debian kernel flavour (default cloud-amd64; `amd64` adds e1000 and
#                        more hardware drivers for real machines)
#   MAYU_CACHE           where downloaded kernels are kept (default <repo>/.cache)
#   MAYU_IPMITOOL=1      put the build host's ipmitool (apt-get install ipmitool) and its
#                        libraries in the image, so discovery reports the BMC's address; needs
#                        a kernel with IPMI drivers (MAYU_KERNEL_FLAVOUR=amd64)
#   FORCE=1              rebuild even when the image is up to date
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="$REPO/scripts/discovery"
FLAVOUR="${MAYU_KERNEL_FLAVOUR:-cloud-amd64}"
CACHE="${MAYU_CACHE:-$REPO/.cache}"
# Drivers the images load at boot, where the kernel flavour has them (virtio for QEMU; the rest
# for common real hardware with the generic flavour).
MODULES="virtio_pci virtio_net virtio_blk virtio_scsi sd_mod e1000 e1000e igb ixgbe tg3 bnxt_en ahci nvme"
if [[ ${MAYU_IPMITOOL:-0} == 1 ]]; then
    MODULES="$MODULES ipmi_si ipmi_devintf"
fi

die() { echo "error: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }

need() {
    local missing=()
    command -v busybox >/dev/null || missing+=(busybox-static)
    command -v cpio >/dev/null || missing+=(cpio)
    command -v dpkg >/dev/null || missing+=(dpkg)
    command -v apt-get >/dev/null || missing+=(apt)
    if ((${#missing[@]})); then
        die "missing tools; install them with: apt-get install -y ${missing[*]}"
    fi
    # busybox-static is what the image runs; a dynamic busybox would not work in the initramfs.
    if ! file_is_static "$(command -v busybox)"; then
        die "$(command -v busybox) is not statically linked; apt-get install -y busybox-static"
    fi
}

file_is_static() {
    # ldd fails on a static binary ("not a dynamic executable").
    ! ldd "$1" >/dev/null 2>&1
}

# Prints the versioned kernel package the flavour's metapackage points to, e.g.
# linux-image-6.1.0-56-cloud-amd64; falls back to the newest one already in the cache.
kernel_package() {
    local meta="linux-image-$FLAVOUR" pkg
    pkg="$(apt-cache depends "$meta" 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')" || true
    if [[ -z "$pkg" ]]; then
        pkg="$(ls -1d "$CACHE"/kernel/linux-image-*-"$FLAVOUR" 2>/dev/null | sort -V | tail -1)"
        pkg="${pkg##*/}"
    fi
    [[ -n "$pkg" ]] || die "cannot resolve $meta: run 'apt-get update' first"
    echo "$pkg"
}

# Downloads and unpacks the kernel package into $CACHE/kernel/PKG once; prints that folder.
fetch_kernel() {
    local pkg="$1" dest="$CACHE/kernel/$1" tmp
    if [[ -f "$dest/.done" ]]; then
        echo "$dest"
        return
    fi
    log "downloading $pkg"
    # apt's sandbox user `_apt` must be able to write the download folder.
    tmp="$(mktemp -d /tmp/mayu-kernel.XXXXXX)"
    chmod 1777 "$tmp"
    (cd "$tmp" && apt-get download -q "$pkg" >&2) || { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg -x "$tmp"/"$pkg"_*.deb "$dest"
    rm -rf "$tmp"
    local ver
    ver="$(ls "$dest/lib/modules")"
    # modules.dep for the whole tree, so we can pick modules with their dependencies.
    busybox depmod -b "$dest" "$ver"
    touch "$dest/.done"
    echo "$dest"
}

# Prints the module files (relative to lib/modules/VER) for MODULES and their dependencies.
module_files() {
    local kdir="$1" ver="$2" dep="$1/lib/modules/$2/modules.dep"
    awk -v want="$MODULES" '
        BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { gsub("_", "-", w[i]); wanted[w[i]] = 1 } }
        {
            file = $1; sub(":$", "", file)
            name = file; sub(".*/", "", name); sub("\\.ko.*$", "", name); gsub("_", "-", name)
            if (name in wanted) { print file; for (i = 2; i <= NF; i++) print $i }
        }' "$dep" | sort -u
}

# Names of the wanted modules this kernel actually has (loaded in this order at boot).
present_modules() {
    local files="$1" m
    for m in $MODULES; do
        if grep -Eq "/${m//_/[-_]}\.ko" <<<"$files"; then echo "$m"; fi
    done
}

stamp_of() {
    local pkg="$1"
    {
        echo "$pkg $MODULES ipmitool=${MAYU_IPMITOOL:-0}"
        busybox 2>&1 | head -1
        cat "$SRC/common.sh" "$SRC/udhcpc.script" "$SRC/build-image.sh" "$2"
    } | sha256sum | cut -d' ' -f1
}

# Copies ipmitool and the shared libraries it links (with the dynamic loader) into ROOT.
add_ipmitool() {
    local root="$1" bin lib
    bin="$(command -v ipmitool)" || die "MAYU_IPMITOOL=1 but ipmitool is not installed; apt-get install -y ipmitool"
    mkdir -p "$root/usr/bin"
    cp "$bin" "$root/usr/bin/ipmitool"
    for lib in $(ldd "$bin" | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    # The loader is found through /lib64 on x86-64.
    if [[ -e /lib64/ld-linux-x86-64.so.2 ]]; then
        mkdir -p "$root/lib64"
        cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
    fi
}

build_image() {
    local name="$1" init="$2" out="$REPO/images/$1"
    need
    local pkg stamp
    pkg="$(kernel_package)"
    stamp="$(stamp_of "$pkg" "$init")"
    if [[ "${FORCE:-0}" != 1 && -f "$out/vmlinuz" && -f "$out/initrd.img" &&
        "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]]; then
        log "images/$name is up to date ($pkg)"
        return
    fi
    local kdir ver root files
    kdir="$(fetch_kernel "$pkg")"
    ver="$(ls "$kdir/lib/modules")"
    root="$(mktemp -d /tmp/mayu-initrd.XXXXXX)"
    trap 'rm -rf "$root"' RETURN
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc,lib/mayu,lib/modules/"$ver"}
    cp "$(command -v busybox)" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    install -m 0755 "$init" "$root/init"
    install -m 0644 "$SRC/common.sh" "$root/lib/mayu/common.sh"
    install -m 0755 "$SRC/udhcpc.script" "$root/etc/udhcpc.script"
    if [[ ${MAYU_IPMITOOL:-0} == 1 && $name == discovery ]]; then
        add_ipmitool "$root"
    fi
    files="$(module_files "$kdir" "$ver")"
    local f
    for f in $files; do
        mkdir -p "$root/lib/modules/$ver/$(dirname "$f")"
        cp "$kdir/lib/modules/$ver/$f" "$root/lib/modules/$ver/$f"
    done
    cp "$kdir/lib/modules/$ver"/modules.{builtin,order} "$root/lib/modules/$ver/" 2>/dev/null || true
    busybox depmod -b "$root" "$ver"
    present_modules "$files" >"$root/etc/mayu-modules"
    mkdir -p "$out"
    (cd "$root" && find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) >"$out/initrd.img.tmp"
    cp "$kdir/boot/vmlinuz-$ver" "$out/vmlinuz.tmp"
    mv "$out/initrd.img.tmp" "$out/initrd.img"
    mv "$out/vmlinuz.tmp" "$out/vmlinuz"
    chmod 0644 "$out/vmlinuz" "$out/initrd.img"
    echo "$stamp" >"$out/.stamp"
    log "built images/$name: kernel $ver, modules: $(tr '\n' ' ' <"$root/etc/mayu-modules")($(du -h "$out/initrd.img" | cut -f1) initrd)"
}
