#!/usr/bin/env bash
# Builds images/installer/: the lab's install-to-disk image, from Debian packages only.
#   vmlinuz            the Debian kernel (the same package the discovery and test images use)
#   initrd.img         the installer: busybox, extlinux (Debian `extlinux`) with the C library
#                      it links, syslinux's mbr.bin (Debian `syslinux-common`), virtio modules
#                      and scripts/install/installer-init as /init
#   system-initrd.img  the installed system's initramfs (scripts/install/system-init): the
#                      installer copies it and vmlinuz to the machine's disk
# The installer partitions the machine's own disk, writes a system that boots by itself
# (extlinux), tells mayu, and reboots; tests/qemu_install.rs and `scripts/lab.sh` use it.
# Idempotent and cached: does nothing when images/installer is up to date. FORCE=1 rebuilds.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/discovery/build-image.sh"

INSTALL_SRC="$REPO/scripts/install"
OUT="$REPO/images/installer"
MBR=/usr/lib/syslinux/mbr/mbr.bin

need_install_tools() {
    local missing=()
    command -v extlinux >/dev/null || missing+=(extlinux)
    [[ -f $MBR ]] || missing+=(syslinux-common)
    if ((${#missing[@]})); then
        die "missing tools; install them with: apt-get install -y ${missing[*]}"
    fi
}

# Copies a dynamically linked program and the libraries it links (with the loader) into ROOT.
add_program() {
    local root="$1" bin="$2" lib
    mkdir -p "$root/usr/bin"
    cp "$bin" "$root/usr/bin/"
    for lib in $(ldd "$bin" | awk '/=> \// {print $3} /^[[:space:]]*\// {print $1}'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

# Lays out a busybox initramfs in ROOT with INIT as /init and the boot modules of KDIR.
initrd_root() {
    local root="$1" init="$2" kdir="$3" ver="$4" files f
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc,mnt,lib/mayu,lib/modules/"$ver"}
    cp "$(command -v busybox)" "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    install -m 0755 "$init" "$root/init"
    install -m 0644 "$SRC/common.sh" "$root/lib/mayu/common.sh"
    install -m 0755 "$SRC/udhcpc.script" "$root/etc/udhcpc.script"
    files="$(module_files "$kdir" "$ver")"
    for f in $files; do
        mkdir -p "$root/lib/modules/$ver/$(dirname "$f")"
        cp "$kdir/lib/modules/$ver/$f" "$root/lib/modules/$ver/$f"
    done
    cp "$kdir/lib/modules/$ver"/modules.{builtin,order} "$root/lib/modules/$ver/" 2>/dev/null || true
    busybox depmod -b "$root" "$ver"
    present_modules "$files" >"$root/etc/mayu-modules"
}

pack() {
    (cd "$1" && find . | sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) >"$2"
}

main() {
    need
    need_install_tools
    local pkg stamp
    pkg="$(kernel_package)"
    stamp="$({
        echo "$pkg $MODULES"
        busybox 2>&1 | head -1
        dpkg-query -W -f '${Package} ${Version}\n' extlinux syslinux-common 2>/dev/null || true
        sha256sum "$MBR" | cut -d' ' -f1
        cat "$SRC/common.sh" "$SRC/udhcpc.script" "$SRC/build-image.sh" "${BASH_SOURCE[0]}" \
            "$INSTALL_SRC/installer-init" "$INSTALL_SRC/system-init"
    } | sha256sum | cut -d' ' -f1)"
    if [[ "${FORCE:-0}" != 1 && -f "$OUT/vmlinuz" && -f "$OUT/initrd.img" &&
        -f "$OUT/system-initrd.img" && "$(cat "$OUT/.stamp" 2>/dev/null)" == "$stamp" ]]; then
        log "images/installer is up to date ($pkg)"
        return
    fi
    local kdir ver
    kdir="$(fetch_kernel "$pkg")"
    ver="$(ls "$kdir/lib/modules")"
    WORK="$(mktemp -d /tmp/mayu-install.XXXXXX)"
    trap 'rm -rf "$WORK"' EXIT
    local work="$WORK"

    initrd_root "$work/installer" "$INSTALL_SRC/installer-init" "$kdir" "$ver"
    add_program "$work/installer" "$(command -v extlinux)"
    install -m 0644 "$MBR" "$work/installer/lib/mayu/mbr.bin"
    initrd_root "$work/system" "$INSTALL_SRC/system-init" "$kdir" "$ver"

    mkdir -p "$OUT"
    pack "$work/installer" "$OUT/initrd.img.tmp"
    pack "$work/system" "$OUT/system-initrd.img.tmp"
    cp "$kdir/boot/vmlinuz-$ver" "$OUT/vmlinuz.tmp"
    mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
    mv "$OUT/system-initrd.img.tmp" "$OUT/system-initrd.img"
    mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
    chmod 0644 "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/system-initrd.img"
    echo "$stamp" >"$OUT/.stamp"
    log "built images/installer: kernel $ver, installer $(du -h "$OUT/initrd.img" | cut -f1), installed system $(du -h "$OUT/system-initrd.img" | cut -f1)"
}

main "$@"
