#!/usr/bin/env bash
# Fails unless an ELF binary (default build/ember) was built hardened, as
# meson.build asks: PIE, full RELRO (a GNU_RELRO segment and BIND_NOW),
# stack-protector canaries, and fortified libc calls (_FORTIFY_SOURCE, for
# optimised builds; --no-fortify to skip that check on a -O0 build).
set -euo pipefail
fortify=1
if [ "${1:-}" = --no-fortify ]; then
	fortify=0
	shift
fi
bin=${1:-build/ember}
[ -f "$bin" ] || { echo "check-hardening: $bin: no such file" >&2; exit 2; }

fail=0
check() { # name, then a command that succeeds when the property holds
	local name=$1
	shift
	if "$@" >/dev/null 2>&1; then
		echo "ok   $name"
	else
		echo "FAIL $name" >&2
		fail=1
	fi
}

headers=$(readelf -W -h -l -d "$bin")
symbols=$(readelf -W -s "$bin")
check "PIE (ELF type DYN with an entry point)" grep -q 'Type:[[:space:]]*DYN' <<<"$headers"
check "RELRO (GNU_RELRO segment)" grep -q 'GNU_RELRO' <<<"$headers"
check "full RELRO (BIND_NOW)" grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$headers"
check "stack protector (__stack_chk_fail)" grep -q '__stack_chk_fail' <<<"$symbols"
if [ "$fortify" = 1 ]; then
	check "_FORTIFY_SOURCE (__*_chk calls)" grep -Eq ' __[a-z0-9_]+_chk(@|$)' \
		<<<"$(grep -v __stack_chk_fail <<<"$symbols")"
fi
[ "$fail" = 0 ] || { echo "check-hardening: $bin is missing hardening (see meson.build)" >&2; exit 1; }
