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
