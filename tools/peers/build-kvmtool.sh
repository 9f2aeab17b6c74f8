#!/usr/bin/env bash
# Builds kvmtool's `lkvm` from ../shared/peers/kvmtool-*.tar.gz (the peers
# folder beside the clone; EMBER_PEERS overrides it) into the cache, keyed
# by the tarball, this script and `gcc --version`, and prints its path.
# Exits 3, with a line on stderr saying why, when there is no peers folder
# or no kvmtool tarball in it: the bench then skips kvmtool and says so.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

peers=${EMBER_PEERS:-$here/../../../shared/peers}
tars=("$peers"/kvmtool-*.tar.gz)
if [ ! -e "${tars[0]}" ]; then
	echo "build-kvmtool: no $peers/kvmtool-*.tar.gz: kvmtool skipped" >&2
	exit 3
fi
tar=${tars[-1]}
key=$(HASH_EXTRA="$(gcc --version | head -n1)" hash_inputs "$0" "$tar")
out=$EMBER_CACHE/peer-kvmtool/$key
if [ -e "$out/.done" ]; then
	echo "$out/lkvm"
	exit 0
fi

echo "build-kvmtool: building $out from ${tar##*/} (about a minute)" >&2
tmp=$(mktemp -d "$EMBER_CACHE/.kvmtool.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tar" -C "$tmp"
src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
# The peers README's build line. Its output goes to a log in the cache.
make -C "$src" -j2 lkvm >"$tmp/build.log" 2>&1 || { tail -n 30 "$tmp/build.log" >&2; die "make lkvm failed"; }
cp "$src/lkvm" "$tmp/lkvm"
publish "$tmp/lkvm" "$out"
