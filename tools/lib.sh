# Shared helpers for Ember's tool scripts (sourced, not run).
# Slow artefacts live in a cache outside the clone, keyed by their inputs.
EMBER_CACHE="${EMBER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ember}"
mkdir -p "$EMBER_CACHE"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# hash_inputs FILE... : short stable hash of the named files' contents and
# of any extra strings passed in HASH_EXTRA.
hash_inputs() {
	{ cat "$@"; printf '%s' "${HASH_EXTRA:-}"; } | sha256sum | cut -c1-16
}

# publish FILE OUT: moves FILE (in a build's temporary directory) into the
# cache directory OUT with a .done mark, in one rename so a concurrent build
# never sees half a result. Prints the published file's path.
publish() {
	local file=$1 out=$2 staging
	staging=${file%/*}/out
	mkdir -p "$staging" "${out%/*}"
	mv "$file" "$staging/"
	touch "$staging/.done"
	if [ ! -e "$out/.done" ]; then
		rm -rf "$out"
		mv -T "$staging" "$out" 2>/dev/null || [ -e "$out/.done" ] || die "cannot create $out"
	fi
	echo "$out/${file##*/}"
}

# with_progress LABEL TOTAL COUNT_FN CMD...: runs CMD and, while it runs,
# shows how far along it is: "LABEL: N of about TOTAL (P%), Ts", N being what
# COUNT_FN prints (a function or command, called every second). On a
# terminal this is one line that updates in place; elsewhere (a log, CI) a
# line every 20 s. Returns CMD's status.
with_progress() {
	local label=$1 total=$2 count=$3 pid start=$SECONDS last=0 n pct el
	shift 3
	"$@" &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1	# a display's refresh, not synchronisation: wait below is
		n=$("$count" 2>/dev/null || echo 0)
		el=$((SECONDS - start))
		pct=$((n * 100 / (total > 0 ? total : 1)))
		[ "$pct" -gt 99 ] && pct=99
		if [ -t 2 ]; then
			printf '\r%s: %s of about %s (%d%%), %ds ' "$label" "$n" "$total" "$pct" "$el" >&2
		elif [ $((el - last)) -ge 20 ]; then
			printf '%s: %s of about %s (%d%%), %ds\n' "$label" "$n" "$total" "$pct" "$el" >&2
			last=$el
		fi
	done
	[ -t 2 ] && printf '\n' >&2
	wait "$pid"
}
