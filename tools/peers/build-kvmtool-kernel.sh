#!/usr/bin/env bash
# Builds the guest kernel kvmtool needs for the bench's block and network
# part, and prints the path of its bzImage: the guest kernel that
# tools/guest/build-kernel.sh builds (tools/guest/microvm.config), with one
# option more, CONFIG_VIRTIO_PCI=y. kvmtool on x86 offers its virtio devices
# over PCI only (`--virtio-transport mmio` is for ARM and RISC-V; a NIC alone
# can take `trans=mmio`, a disk cannot), and the guest kernel has virtio-mmio
# only. Ember and QEMU keep the kernel without it.
#
# Built in build-kernel.sh's own build tree, under its lock: that tree
# holds the guest kernel's objects, so only drivers/virtio and the link are
# rebuilt (a minute or two; a tree at another path would recompile
# everything, as the objects' commands name objtool by its absolute path).
# The tree is left with this configuration: build-kernel.sh configures it
# afresh (allnoconfig + microvm.config) before each build of its own.
# The result goes to $EMBER_CACHE/peer-kvmtool-kernel/<key>/, keyed by the
# base kernel (its cache directory names its inputs) and this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

base=$("$here/../guest/build-kernel.sh")
key=$(HASH_EXTRA="$base" hash_inputs "$0" "$base/config")
top=$EMBER_CACHE/peer-kvmtool-kernel
out=$top/$key
if [ -e "$out/.done" ]; then
	echo "$out/bzImage"
	exit 0
fi
mkdir -p "$top"
exec 9>"$top/.lock"
flock 9
if [ -e "$out/.done" ]; then
	echo "$out/bzImage"
	exit 0
fi

srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)  # as build-kernel.sh
src=$EMBER_CACHE/guest-kernel/src-$srcver
build=$EMBER_CACHE/guest-kernel/build-$srcver
[ -e "$src/.done" ] || die "no unpacked kernel source in $src"
tmp=$(mktemp -d "$top/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$tmp/build.log
exec 8>"$EMBER_CACHE/guest-kernel/.lock"
flock 8
cp "$base/config" "$build/.config"
"$src/scripts/config" --file "$build/.config" -e VIRTIO_PCI
export ARCH=x86_64 KBUILD_BUILD_USER=ember KBUILD_BUILD_HOST=ember
make -C "$src" O="$build" olddefconfig >"$log" 2>&1 || { tail -20 "$log" >&2; die "olddefconfig failed"; }
grep -qx CONFIG_VIRTIO_PCI=y "$build/.config" || die "CONFIG_VIRTIO_PCI=y did not stay in the configuration"
# Nothing but the virtio-pci options may differ from the base kernel's.
extra=$(diff <(grep -v '^#' "$base/config" | grep . | sort) <(grep -v '^#' "$build/.config" | grep . | sort) \
	| grep '^[<>]' | grep -v -E '^> CONFIG_VIRTIO_PCI(_LIB|_LIB_LEGACY|_LEGACY)?=y$' || true)
[ -z "$extra" ] || die "the configuration differs from the base kernel's in more than virtio-pci: $extra"
echo "build-kvmtool-kernel: the guest kernel + CONFIG_VIRTIO_PCI=y into $out (a minute or two)" >&2
make -C "$src" O="$build" -j"$(nproc)" bzImage >>"$log" 2>&1 || { tail -30 "$log" >&2; die "kernel build failed"; }
mkdir -p "$tmp/pub/out"
cp "$build/.config" "$tmp/pub/out/config"  # publish's staging directory
cp "$build/arch/x86/boot/bzImage" "$tmp/pub/bzImage"
publish "$tmp/pub/bzImage" "$out"
