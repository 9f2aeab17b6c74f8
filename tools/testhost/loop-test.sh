#!/usr/bin/env bash
# Runs integration tests N times in one nested test host, to catch a flaky
# one in the act: a run still going after BOUND seconds gets the states of
# Ember's threads saved while it is stuck (state, wchan and kernel stack of
# each thread; gdb backtraces), and the loop stops there.
#
#   tools/testhost/loop-test.sh [-n N] [-b BOUND] [-o DIR] PYTEST_ARGS...
#   e.g. tools/testhost/loop-test.sh -n 40 -b 35 tests/integration/test_block_hostile.py
#
# DIR (default a new one under /tmp) gets run-I.log per run, runs.txt (one
# line per run: status and seconds) and dump-I.txt for a stuck run.
set -euo pipefail
cd "$(dirname "$0")/../.."

n=20 bound=60 out=''
if [ "${1:-}" = --inside ]; then
	shift
	n=$1 bound=$2 out=$3
	shift 3
	for i in $(seq 1 "$n"); do
		t=$(date +%s)
		/usr/bin/python3 -m pytest -q -x -p no:cacheprovider "$@" >"$out/run-$i.log" 2>&1 &
		pid=$! dumped=''
		while kill -0 "$pid" 2>/dev/null; do
			sleep 3
			[ -z "$dumped" ] && [ $(($(date +%s) - t)) -gt "$bound" ] || continue
			dumped=1
			for p in $(pgrep -f -- "$EMBER_BIN" || true); do
				echo "== ember $p: $(tr '\0' ' ' <"/proc/$p/cmdline")"
				for task in /proc/"$p"/task/*; do
					# The state is the field after the name, which may hold spaces.
					echo "-- thread ${task##*/} $(cat "$task/comm"):" \
						"state $(sed 's/.*) //' "$task/stat" | cut -d' ' -f1)" \
						"wchan $(cat "$task/wchan")"
					cat "$task/stack" 2>/dev/null || true
				done
				gdb -p "$p" -batch -ex 'thread apply all bt' 2>&1 | grep -v '^\[New LWP' || true
			done >"$out/dump-$i.txt"
		done
		rc=0
		wait "$pid" || rc=$?
		echo "run $i: status $rc, $(($(date +%s) - t)) s" | tee -a "$out/runs.txt"
		[ -z "$dumped" ] || break
	done
	exit 0
fi

while getopts n:b:o: opt; do
	case $opt in
	n) n=$OPTARG ;;
	b) bound=$OPTARG ;;
	o) out=$OPTARG ;;
	*) echo "usage: $0 [-n N] [-b BOUND] [-o DIR] PYTEST_ARGS..." >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-n N] [-b BOUND] [-o DIR] PYTEST_ARGS..." >&2; exit 2; }
out=${out:-$(mktemp -d /tmp/ember-loop.XXXXXX)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
eval "$(tools/guest/artifacts.sh)"
echo "loop-test: $n runs of $*, results in $out" >&2
tools/testhost/run --results "$out" -- env EMBER_BIN="$PWD/build/ember" \
	EMBER_KERNEL_VMLINUX="$EMBER_KERNEL_VMLINUX" EMBER_KERNEL_BZIMAGE="$EMBER_KERNEL_BZIMAGE" \
	EMBER_DEBIAN_VMLINUZ="$EMBER_DEBIAN_VMLINUZ" EMBER_INITRAMFS="$EMBER_INITRAMFS" \
	EMBER_ROOTFS="$EMBER_ROOTFS" EMBER_DEBIAN_INITRAMFS="$EMBER_DEBIAN_INITRAMFS" \
	"$0" --inside "$n" "$bound" "$out" "$@"
