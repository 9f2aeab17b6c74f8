#!/usr/bin/env bash
# Builds the guest initramfs (gzip'd newc cpio, no root needed) from
# stage.sh's userland. Prints the path of initramfs.cpio.gz.
# Cache key: this script, stage.sh, init, hooks/* (contents and names) and
# the busybox binary and the test programs (build-evil.sh's MANIFEST).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

evil=$("$here/build-evil.sh") # stage.sh installs it
inputs=("$0" "$here/stage.sh" "$here/init" "$here"/hooks/* /bin/busybox "$evil")
key=$(HASH_EXTRA="$(cd "$here" && echo hooks/*)" hash_inputs "${inputs[@]}")
out=$EMBER_CACHE/guest-initramfs/$key
if [ -e "$out/.done" ]; then
	echo "$out/initramfs.cpio.gz"
	exit 0
fi

# newc_node NAME MODE MAJOR MINOR: a data-less newc entry (a device node, or
# the TRAILER!!! end marker), written by hand so that no mknod (root) is needed.
newc_node() {
	local name=$1 mode=$2 major=$3 minor=$4
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		0 $((8#$mode)) 0 0 1 0 0 0 0 "$major" "$minor" $((${#name} + 1)) 0 "$name"
	# header (110 bytes) + name + NUL, padded to a multiple of 4
	head -c $(((4 - (110 + ${#name} + 1) % 4) % 4)) /dev/zero
}

echo "build-initramfs: building $out" >&2
tmp=$(mktemp -d "$EMBER_CACHE/.initramfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$here/stage.sh" "$tmp/root"
{
	(cd "$tmp/root" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
		cpio -o -H newc -R 0:0 --reproducible --quiet)
	# The kernel opens /dev/console for init before anything can mount
	# devtmpfs: ship the node itself (a second archive; the kernel unpacks
	# concatenated archives).
	newc_node dev/console 020600 5 1
	newc_node 'TRAILER!!!' 0 0 0
} | gzip -9n >"$tmp/initramfs.cpio.gz"

publish "$tmp/initramfs.cpio.gz" "$out"
