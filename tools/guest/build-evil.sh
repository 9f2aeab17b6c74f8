#!/usr/bin/env bash
# Builds the hostile guest programs the integration tests run inside the
# guest, as static binaries (Debian's libc6-dev has libc.a):
#   evil/virtio-evil.c  a hostile virtio-block driver (test_block_hostile.py)
#   evil/net-evil.c     hostile frames for the MMDS stack (test_mmds_hostile.py)
#   evil/balloon-evil.c a hostile virtio-balloon driver (test_balloon.py)
# Both land in one cache directory, with a MANIFEST (each binary's sha256
# and name). Prints the MANIFEST's path: the initramfs and rootfs builders
# hash that file, so a change to either binary changes their keys; stage.sh
# installs the binaries beside it in /usr/bin.
# Cache key: this script, both sources and evil-time.h, `gcc --version`
# and the libc6-dev version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

progs=(virtio-evil net-evil balloon-evil)
srcs=()
for p in "${progs[@]}"; do
	srcs+=("$here/evil/$p.c")
done
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || die "no static libc (apt-get install libc6-dev)"
libc=$(dpkg-query -W -f='${Version}' libc6-dev 2>/dev/null || echo unknown)
key=$(HASH_EXTRA="$(gcc --version | head -n1) libc6-dev $libc ${progs[*]}" hash_inputs "$0" "${srcs[@]}" "$here/evil/evil-time.h")
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
for p in "${progs[@]}"; do
	gcc -std=gnu11 -O2 -Wall -Wextra -Werror -static -s -o "$tmp/out/$p" "$here/evil/$p.c" >&2
done
(cd "$tmp/out" && sha256sum "${progs[@]}") >"$tmp/MANIFEST"
publish "$tmp/MANIFEST" "$out"
