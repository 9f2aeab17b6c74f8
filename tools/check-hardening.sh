#!/usr/bin/env bash
# Fails unless an ELF binary (default build/ember) was built hardened, as
# meson.build asks: PIE, full RELRO (a GNU_RELRO segment and BIND_NOW),
# stack-protector canaries, and fortified libc calls (_FORTIFY_SOURCE, for
# optimised builds; --no-fortify to skip that check on a -O0 build). The
# binary must keep its symbols (the last two are read from its code).
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
# Canaries and _chk calls are looked for in Ember's own code: a static
# binary carries glibc's, which are there whatever Ember was built with.
# vmm_response_fault (vmm/request.c) has a stack buffer that vsnprintf fills.
own=$(objdump -d --no-show-raw-insn --disassemble=vmm_response_fault "$bin")
check "PIE (ELF type DYN)" grep -q 'Type:[[:space:]]*DYN' <<<"$headers"
check "RELRO (GNU_RELRO segment)" grep -q 'GNU_RELRO' <<<"$headers"
check "full RELRO (BIND_NOW)" grep -Eq '\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$headers"
check "symbols to check the code with (not stripped)" grep -q 'call' <<<"$own"
check "stack protector (a canary in vmm_response_fault)" grep -q 'call.*<__stack_chk_fail' <<<"$own"
if [ "$fortify" = 1 ]; then
	check "_FORTIFY_SOURCE (vmm_response_fault calls __vsnprintf_chk)" \
		grep -Eq 'call.*<_*vsnprintf_chk' <<<"$own"
fi
[ "$fail" = 0 ] || { echo "check-hardening: $bin is missing hardening (see meson.build)" >&2; exit 1; }
