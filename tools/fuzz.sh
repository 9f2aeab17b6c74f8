#!/usr/bin/env bash
# Builds the libFuzzer targets (build-fuzz, clang) and runs each for a fixed
# time against a copy of its seed corpus (fuzz/corpus/<target>) with its
# dictionary (fuzz/dict/<target>.dict), in a scratch directory outside the
# repository. Prints one table row per target (runs, exec/s, libFuzzer's
# final cov and ft) and fails if any target crashed, leaked, timed out or
# ran out of memory; the reproducer stays in the scratch directory.
#
#   tools/fuzz.sh [-t SECONDS] [-o DIR] [TARGET...]
#     -t  seconds per target (default 300; CI uses 20)
#     -o  scratch directory (default: a new /tmp/ember-fuzz.XXXXXX)
#   Reproduce a crash: build-fuzz/fuzz/<target> <crash file>
# `make fuzz` runs this (FUZZ_SECONDS); .ci/run runs it with -t 20.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

seconds=300
out=
while getopts "t:o:" opt; do
	case $opt in
	t) seconds=$OPTARG ;;
	o) out=$OPTARG ;;
	*) echo "usage: $0 [-t SECONDS] [-o DIR] [TARGET...]" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))

all=(virtio_mmio_fuzz virtio_block_fuzz virtio_net_fuzz virtio_rng_fuzz virtio_vsock_fuzz
     virtio_balloon_fuzz api_parse_fuzz config_fuzz
     loader_fuzz mmds_http_fuzz mmds_netstack_fuzz api_http_fuzz snapshot_file_fuzz)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

# Inputs longer than this are cut; each bound is above its largest seed.
max_len() {
	case $1 in
	loader_fuzz | api_http_fuzz) echo 16384 ;;
	snapshot_file_fuzz) echo 32768 ;;
	virtio_block_fuzz | virtio_net_fuzz | mmds_http_fuzz) echo 8192 ;;
	*) echo 4096 ;;
	esac
}

build=build-fuzz
if [ ! -f $build/build.ninja ]; then
	CC=clang meson setup $build -Dfuzz=true >/dev/null
fi
ninja -C $build "${targets[@]/#/fuzz/}" >/dev/null

[ -n "$out" ] || out=$(mktemp -d /tmp/ember-fuzz.XXXXXX)
case $(realpath -m "$out") in
"$repo" | "$repo"/*) echo "fuzz: scratch directory $out is inside the repository" >&2; exit 2 ;;
esac
mkdir -p "$out"

echo "fuzz: ${seconds}s per target, scratch $out"
printf '| %-20s | %8s | %10s | %8s | %6s | %6s | %-8s |\n' target seconds runs exec/s cov ft result
printf '|%s|%s|%s|%s|%s|%s|%s|\n' ---------------------- ---------- ------------ \
	---------- -------- -------- ----------
failed=0
for t in "${targets[@]}"; do
	dir=$out/$t
	rm -rf "$dir"
	mkdir -p "$dir/corpus"
	# fuzz/corpus/<target> and fuzz/dict/<target>.dict, or api_http_fuzz's
	# own names (fuzz/corpus/api_http, fuzz/api_http.dict).
	for c in fuzz/corpus/"$t" fuzz/corpus/"${t%_fuzz}"; do
		[ -d "$c" ] && cp -r "$c"/. "$dir/corpus/" && break
	done
	dict=()
	for d in fuzz/dict/"$t".dict fuzz/"${t%_fuzz}".dict; do
		[ -f "$d" ] && dict=(-dict="$repo/$d") && break
	done
	rc=0
	(cd "$dir" && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		"$repo/$build/fuzz/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
		-timeout=30 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/" \
		"${dict[@]}" corpus >log 2>&1) || rc=$?
	# The last status line: "#RUNS DONE cov: N ft: N corp: ... exec/s: N ...".
	last=$(grep -E '^#[0-9]+' "$dir/log" | tail -n 1 || true)
	runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
	cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
	ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
	eps=$(sed -nE 's/.* exec\/s: ([0-9]+).*/\1/p' <<<"$last")
	result=ok
	if [ $rc -ne 0 ]; then
		result=FAILED
		failed=1
	fi
	printf '| %-20s | %8s | %10s | %8s | %6s | %6s | %-8s |\n' "$t" "$seconds" "${runs:-?}" \
		"${eps:-?}" "${cov:-?}" "${ft:-?}" "$result"
	if [ $rc -ne 0 ]; then
		echo "fuzz: $t exited $rc; log $dir/log; reproducer:" \
			"$(ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null | head -n 1)"
		grep -E 'ERROR|SUMMARY|#[0-9]+ 0x.* in ' "$dir/log" | head -n 20 >&2 || true
	fi
done
echo "fuzz: grown corpora in $out/<target>/corpus"
exit $failed
