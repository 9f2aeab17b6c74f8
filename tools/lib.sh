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
