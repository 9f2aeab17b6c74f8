#!/usr/bin/env bash
# Builds evil/virtio-evil.c, the hostile virtio-block driver the integration
# tests run inside the guest, as a static binary (Debian's libc6-dev has
# libc.a). Prints its path. stage.sh installs it as /usr/bin/virtio-evil.
# Cache key: this script, the source, `gcc --version` and the libc6-dev
# version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

src=$here/evil/virtio-evil.c
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || die "no static libc (apt-get install libc6-dev)"
libc=$(dpkg-query -W -f='${Version}' libc6-dev 2>/dev/null || echo unknown)
key=$(HASH_EXTRA="$(gcc --version | head -n1) libc6-dev $libc" hash_inputs "$0" "$src")
out=$EMBER_CACHE/guest-evil/$key
if [ -e "$out/.done" ]; then
	echo "$out/virtio-evil"
	exit 0
fi

echo "build-evil: building $out" >&2
tmp=$(mktemp -d "$EMBER_CACHE/.evil.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -s -o "$tmp/virtio-evil" "$src" >&2
publish "$tmp/virtio-evil" "$out"
