#!/usr/bin/env bash
# Builds images/test/{vmlinuz,initrd.img}: the test OS that the QEMU tests and the lab boot as a
# profile. Its /init reports boot-complete to mayu, prints a marker on the serial console and
# powers off. Idempotent: does nothing when the image is up to date. FORCE=1 rebuilds.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/discovery/build-image.sh"
build_image test "$SRC/test-init"
