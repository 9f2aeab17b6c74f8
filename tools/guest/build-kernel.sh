#!/usr/bin/env bash
# Builds Ember's minimal microVM guest kernel from Debian's linux-source-6.1
# tarball: allnoconfig + tools/guest/microvm.config, no modules.
# Prints the output directory, which holds vmlinux (ELF), bzImage and config.
# With --cached: prints it only if it is already built, else exits 1 (no
# build), so the demo can boot Debian's kernel meanwhile.
# The build takes about 5 minutes on 2 cores; it shows its progress.
#
# Cache key: this script, the config fragment, the source package version
# (plus tarball size/mtime) and the compiler version. Unchanged inputs: the
# cached directory is printed at once. The source tree and the kbuild output
# dir are kept in the cache per source version so a changed fragment only
# rebuilds what it touches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

tarball=/usr/src/linux-source-6.1.tar.xz
frag=$here/microvm.config
[ -r "$tarball" ] || die "$tarball missing (apt-get install linux-source-6.1)"
srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)

key=$(HASH_EXTRA="$srcver $(stat -c '%s %Y' "$tarball") $(gcc --version | head -1)" \
	hash_inputs "$0" "$frag")
top=$EMBER_CACHE/guest-kernel
out=$top/$key
if [ -e "$out/.done" ]; then
	echo "$out"
	exit 0
fi
[ "${1:-}" = --cached ] && exit 1

mkdir -p "$top"
# One build at a time: the source and build dirs below are shared.
exec 9>"$top/.lock"
flock 9
if [ -e "$out/.done" ]; then	# built by whoever held the lock
	echo "$out"
	exit 0
fi

src=$top/src-$srcver
build=$top/build-$srcver
log=$top/build-$key.log
if [ ! -e "$src/.done" ]; then
	echo "build-kernel: unpacking $tarball (about a minute)" >&2
	rm -rf "$src" "$src.tmp" && mkdir -p "$src.tmp"
	unpacked_mib() { du -sm "$src.tmp" | cut -f1; }
	# UNPACKED_MIB: the 6.1 tree's size, measured; only the display uses it.
	with_progress "build-kernel: unpacked MiB" "${UNPACKED_MIB:-1440}" unpacked_mib \
		tar -xJf "$tarball" -C "$src.tmp" --strip-components=1
	touch "$src.tmp/.done"
	mv "$src.tmp" "$src"
fi

export ARCH=x86_64 KBUILD_BUILD_USER=ember KBUILD_BUILD_HOST=ember
mkdir -p "$build"
echo "build-kernel: configuring (allnoconfig + $(basename "$frag"))" >&2
(cd "$src" && scripts/kconfig/merge_config.sh -n -O "$build" "$frag") >"$log" 2>&1 \
	|| { tail -20 "$log" >&2; die "merge_config failed (log: $log)"; }

# merge_config only warns when Kconfig drops or changes a requested value:
# check every line of the fragment against the final .config ourselves.
bad=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*)
		grep -qxF -- "$line" "$build/.config" && continue
		got=$(grep -E "^(# )?${line%%=*}[= ]" "$build/.config" || echo "absent")
		;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }; sym=${sym%% *}
		grep -qE "^$sym=" "$build/.config" || continue
		got=$(grep -E "^$sym=" "$build/.config")
		;;
	*) continue ;;
	esac
	echo "build-kernel: wanted '$line', got '$got'" >&2
	bad=1
done <"$frag"
[ "$bad" = 0 ] || die "required kernel options were dropped (fix $frag)"

jobs=$(nproc)
echo "build-kernel: make -j$jobs vmlinux bzImage (about 5 minutes on 2 cores; log: $log)" >&2
start=$(date +%s)
# Progress: kbuild's quiet lines ("  CC      kernel/fork.o") in the log. A
# full build of this config writes about 1700 of them; an incremental one
# fewer, so it ends early.
log_from=$(wc -l <"$log")
built_steps() { tail -n +$((log_from + 1)) "$log" | grep -cE '^  [A-Z]' || true; }
make_kernel() { make -C "$src" O="$build" -j"$jobs" vmlinux bzImage >>"$log" 2>&1; }
with_progress "build-kernel: build steps" 1700 built_steps make_kernel \
	|| { tail -30 "$log" >&2; die "kernel build failed (log: $log)"; }
echo "build-kernel: built in $(( $(date +%s) - start ))s" >&2

rm -rf "$out" && mkdir -p "$out"
cp "$build/vmlinux" "$build/arch/x86/boot/bzImage" "$out/"
cp "$build/.config" "$out/config"
make -s -C "$src" O="$build" kernelrelease >"$out/release" 2>/dev/null || true
touch "$out/.done"
echo "$out"
