#!/usr/bin/env bash
# Builds a 64 MiB ext4 root filesystem image (mkfs.ext4 -d: no root, no loop
# mount) holding stage.sh's userland; /sbin/init is Ember's init, so it boots
# with root=/dev/vda. Prints the path of rootfs.ext4. Attach a copy of it
# read-write, or the image itself read-only: it is shared by every user.
# Cache key: this script, stage.sh, init, hooks/* (contents and names) and
# the busybox binary and the test programs (build-evil.sh's MANIFEST).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

size=64M
evil=$("$here/build-evil.sh") # stage.sh installs it
inputs=("$0" "$here/stage.sh" "$here/init" "$here"/hooks/* /bin/busybox "$evil")
key=$(HASH_EXTRA="$(cd "$here" && echo hooks/*)" hash_inputs "${inputs[@]}")
out=$EMBER_CACHE/guest-rootfs/$key
if [ -e "$out/.done" ]; then
	echo "$out/rootfs.ext4"
	exit 0
fi

echo "build-rootfs: building $out" >&2
tmp=$(mktemp -d "$EMBER_CACHE/.rootfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$here/stage.sh" "$tmp/root"
# Files keep the builder's uid/gid; the root dir is forced to root.
truncate -s "$size" "$tmp/rootfs.ext4"
mkfs.ext4 -q -F -b 4096 -L ember-root -E root_owner=0:0 -d "$tmp/root" "$tmp/rootfs.ext4" >&2

publish "$tmp/rootfs.ext4" "$out"
