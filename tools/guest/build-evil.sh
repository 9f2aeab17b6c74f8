#!/usr/bin/env bash
# Builds the hostile guest programs the integration tests run inside the
# guest, as static binaries (Debian's libc6-dev has libc.a):
#   evil/virtio-evil.c  a hostile virtio-block driver (test_block_hostile.py)
#   evil/net-evil.c     hostile frames for the MMDS stack (test_mmds_hostile.py)
#   bench/tcp-send.c    the bench's guest -> host TCP sender (bench/guest_io.py)
#   evil/vsock-tool.c   AF_VSOCK echo server, client and bulk sender (test_vsock.py)
#   evil/vsock-evil.c   a hostile virtio-vsock driver (test_vsock.py)
#   evil/balloon-evil.c a hostile virtio-balloon driver (test_balloon.py)
# All land in one cache directory, with a MANIFEST (each binary's sha256
# and name). Prints the MANIFEST's path: the initramfs and rootfs builders
# hash that file, so a change to any binary changes their keys; stage.sh
# installs the binaries beside it in /usr/bin.
# Cache key: this script, the sources and the headers they share
# (evil-time.h, evil-virtio.h), `gcc --version` and the libc6-dev version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

# Each program's source, under tools/guest: the hostile ones and the test
# tools in evil/, the bench's own guest tools in bench/.
srcs=("$here/evil/virtio-evil.c" "$here/evil/net-evil.c" "$here/evil/vsock-tool.c"
	"$here/evil/vsock-evil.c" "$here/evil/balloon-evil.c" "$here/bench/tcp-send.c")
progs=()
for src in "${srcs[@]}"; do
	p=${src##*/}
	progs+=("${p%.c}")
done
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || die "no static libc (apt-get install libc6-dev)"
libc=$(dpkg-query -W -f='${Version}' libc6-dev 2>/dev/null || echo unknown)
key=$(HASH_EXTRA="$(gcc --version | head -n1) libc6-dev $libc ${progs[*]}" hash_inputs "$0" "${srcs[@]}" \
	"$here/evil/evil-time.h" "$here/evil/evil-virtio.h")
out=$EMBER_CACHE/guest-evil/$key
if [ -e "$out/.done" ]; then
	echo "$out/MANIFEST"
	exit 0
fi

echo "build-evil: building $out" >&2
tmp=$(mktemp -d "$EMBER_CACHE/.evil.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# publish() moves its one file into $tmp/out and renames that directory to
# $out: the binaries go into $tmp/out first, so all three appear at once.
mkdir -p "$tmp/out"
for src in "${srcs[@]}"; do
	p=${src##*/}
	gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -s -o "$tmp/out/${p%.c}" "$src" >&2
done
(cd "$tmp/out" && sha256sum "${progs[@]}") >"$tmp/MANIFEST"
publish "$tmp/MANIFEST" "$out"
