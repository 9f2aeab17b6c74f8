#!/usr/bin/env bash
# Builds (or finds in the cache) every guest artefact and prints them as shell
# assignments on stdout; progress goes to stderr. Use:
#   eval "$(tools/guest/artifacts.sh)"
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

kernel=$("$here/build-kernel.sh")
debian=$("$here/debian-kernel.sh")
initramfs=$("$here/build-initramfs.sh")
rootfs=$("$here/build-rootfs.sh")
debian_initramfs=$("$here/build-initramfs-debian.sh" "$debian")

vmlinuz=("$debian"/boot/vmlinuz-*)
[ -e "${vmlinuz[0]}" ] || die "no boot/vmlinuz-* in $debian"

printf 'EMBER_KERNEL_VMLINUX=%q\n' "$kernel/vmlinux"
printf 'EMBER_KERNEL_BZIMAGE=%q\n' "$kernel/bzImage"
printf 'EMBER_DEBIAN_VMLINUZ=%q\n' "${vmlinuz[0]}"
printf 'EMBER_INITRAMFS=%q\n' "$initramfs"
printf 'EMBER_ROOTFS=%q\n' "$rootfs"
printf 'EMBER_DEBIAN_INITRAMFS=%q\n' "$debian_initramfs"
