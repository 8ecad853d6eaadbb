#!/usr/bin/env bash
# Builds images/discovery/{vmlinuz,initrd.img}: a Debian kernel and a busybox initramfs whose
# /init reports the machine's hardware facts to mayu and boots the profile it is assigned.
# Idempotent: does nothing when the image is up to date. FORCE=1 rebuilds.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/discovery/build-image.sh"
build_image discovery "$SRC/init"
