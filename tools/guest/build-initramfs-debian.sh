#!/usr/bin/env bash
# build-initramfs-debian.sh [KERNEL_DIR]: the busybox initramfs of
# build-initramfs.sh plus what Debian's stock kernel needs to mount an ext4
# root from a virtio-mmio disk: virtio_mmio, virtio_blk, crc32c_generic and
# ext4, virtio_balloon (test_balloon.py) and the vsock transport (vsock,
# vmw_vsock_virtio_transport_common, vmw_vsock_virtio_transport) with their
# dependencies, under /lib/modules/<version>/ with a modules.dep (busybox
# modprobe resolves dependencies with it), and /etc/modules-load naming
# them for init to load. KERNEL_DIR is the unpacked
# linux-image-amd64 of debian-kernel.sh (run when not given).
# Prints the path of initramfs-debian.cpio.gz: the base archive followed by a
# second gzip'd cpio archive with the modules (the kernel unpacks both).
# Cache key: this script, the base initramfs (its path holds its own key) and
# the kernel package directory and version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

# ext4 only soft-depends on crc32c ("pre: crypto-crc32c"), which busybox
# modprobe does not follow; without it ext4 cannot mount a metadata_csum
# file system (mkfs.ext4's default). The generic one works on every CPU.
modules=(virtio_mmio virtio_blk crc32c_generic ext4 virtio_balloon vsock
	vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport)

kdir=${1:-$("$here/debian-kernel.sh")}
vmlinuz=("$kdir"/boot/vmlinuz-*)
[ -e "${vmlinuz[0]}" ] || die "no boot/vmlinuz-* in $kdir"
kver=${vmlinuz[0]##*/vmlinuz-}
[ -d "$kdir/lib/modules/$kver/kernel" ] || die "no lib/modules/$kver/kernel in $kdir"
base=$("$here/build-initramfs.sh")

key=$(HASH_EXTRA="$base $kdir $kver ${modules[*]}" hash_inputs "$0")
out=$EMBER_CACHE/guest-initramfs-debian/$key
if [ -e "$out/.done" ]; then
	echo "$out/initramfs-debian.cpio.gz"
	exit 0
fi

echo "build-initramfs-debian: building $out" >&2
mkdir -p "$EMBER_CACHE/guest-initramfs-debian"
tmp=$(mktemp -d "$EMBER_CACHE/.initramfs-debian.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The package ships no modules.dep (its postinst runs depmod): make one in a
# scratch tree of symlinks to resolve the dependencies with the host's kmod.
mkdir -p "$tmp/full/lib/modules/$kver"
ln -s "$kdir/lib/modules/$kver/kernel" "$tmp/full/lib/modules/$kver/kernel"
cp "$kdir/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$tmp/full/lib/modules/$kver/"
depmod -b "$tmp/full" "$kver"

mods=$tmp/root/lib/modules/$kver
mkdir -p "$mods" "$tmp/root/etc"
for m in "${modules[@]}"; do
	modprobe -d "$tmp/full" -S "$kver" --show-depends "$m" ||
		die "no module $m for $kver in $kdir"
done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r f; do
	rel=${f#"$tmp/full/lib/modules/$kver/"}
	mkdir -p "$mods/$(dirname "$rel")"
	# Busybox insmod/modprobe may not read compressed modules: store them
	# uncompressed (the kernel package is CONFIG_MODULE_COMPRESS_NONE today).
	case $f in
	*.ko) cp "$f" "$mods/$rel" ;;
	*.ko.xz) xz -dc "$f" >"$mods/${rel%.xz}" ;;
	*.ko.zst) zstd -qdc "$f" >"$mods/${rel%.zst}" ;;
	*.ko.gz) gzip -dc "$f" >"$mods/${rel%.gz}" ;;
	*) die "unexpected module file $f" ;;
	esac
done
cp "$kdir/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$mods/"
depmod -b "$tmp/root" "$kver"
for m in "${modules[@]}"; do
	grep -q "/$m\.ko:" "$mods/modules.dep" || die "$m is missing from the staged modules.dep"
done
printf '%s\n' "${modules[@]}" >"$tmp/root/etc/modules-load"
# The kernel applies a directory's mode even when the base archive already
# made it (etc/): keep the usual ones, whatever the umask.
find "$tmp/root" -type d -exec chmod 755 {} +
find "$tmp/root" -type f -exec chmod 644 {} +
find "$tmp/root" -exec touch -h -d @0 {} +

cp "$base" "$tmp/initramfs-debian.cpio.gz"
(cd "$tmp/root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
	cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9n >>"$tmp/initramfs-debian.cpio.gz"
rm -rf "$tmp/full" "$tmp/root"

publish "$tmp/initramfs-debian.cpio.gz" "$out"
