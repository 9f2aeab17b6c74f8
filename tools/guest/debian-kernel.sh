#!/usr/bin/env bash
# Fetches Debian's stock kernel package (apt-get download, never installed) and
# unpacks it into the cache. Prints the unpacked directory, which holds
# boot/vmlinuz-* and lib/modules/<version>/.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

# apt-cache takes seconds here (no pkgcache.bin): remember what it resolved to
# for as long as the package lists and this script are unchanged.
memo=$EMBER_CACHE/debian-kernel/.resolved-$(HASH_EXTRA="$(stat -c '%n %s %Y' \
	/var/lib/apt/lists/*Packages* /etc/apt/preferences.d 2>/dev/null)" hash_inputs "$0")
if [ -s "$memo" ] && [ -e "$(cat "$memo")/.done" ]; then
	cat "$memo"
	exit 0
fi

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$pkg" ] || die "cannot resolve linux-image-amd64 (run apt-get update)"
ver=$(apt-cache policy "$pkg" | awk '/Candidate:/{print $2}')
out="$EMBER_CACHE/debian-kernel/$pkg-$ver"
if [ ! -e "$out/.done" ]; then
	echo "debian-kernel: downloading $pkg $ver (Debian's packaged kernel)" >&2
	rm -rf "$out" && mkdir -p "$out/deb"
	# apt-get's own progress (a line per file, its size) goes to stderr:
	# stdout is this script's answer.
	(cd "$out/deb" && apt-get download -o APT::Sandbox::User=root "$pkg=$ver" >&2) || die "apt-get download $pkg failed"
	echo "debian-kernel: unpacking" >&2
	dpkg-deb -x "$out"/deb/*.deb "$out"
	rm -rf "$out/deb"
	touch "$out/.done"
fi
echo "$out" >"$memo"
echo "$out"
