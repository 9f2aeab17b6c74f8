#!/usr/bin/env bash
# make soak: tools/soak.py with the guest images, in the nested test host when
# this machine's KVM cannot boot a standard Linux guest (tools/testhost/needed).
# Arguments go to tools/soak.py (--sequential N --parallel N --requests N
# --patches N ...). See docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
eval "$(tools/guest/artifacts.sh)"
cmd=(/usr/bin/python3 tools/soak.py --ember "$PWD/$BUILD/ember"
	--kernel "$EMBER_KERNEL_VMLINUX" --bzimage "$EMBER_KERNEL_BZIMAGE" --initrd "$EMBER_INITRAMFS" "$@")
if [ "${EMBER_TESTHOST:-auto}" = always ] || { [ "${EMBER_TESTHOST:-auto}" = auto ] && tools/testhost/needed; }; then
	# soak.py boots the test host itself, a boot per phase and per chunk
	# of sequential lifecycles, so that a test host that freezes costs a
	# chunk, not the soak (tools/soak.py's docstring). 50 guests at once
	# need more than the default 4 GiB; a chunk's bound is long.
	export EMBER_TESTHOST_TIMEOUT=${EMBER_TESTHOST_TIMEOUT:-7200}
	exec "${cmd[@]}" --testhost-chunk "${SOAK_CHUNK:-50}" --testhost-mem "${SOAK_TESTHOST_MEM:-8192}"
fi
exec "${cmd[@]}"
