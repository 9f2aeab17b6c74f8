#!/usr/bin/env bash
# Boots a microVM with Ember and shows its console: the project's minimal
# kernel with the busybox initramfs, whose `demo` hook prints what the guest
# sees and then reboots (Ember exits 0). Runs inside the nested test host when
# this host's KVM cannot boot a standard guest (see tools/testhost).
# EMBER_DEMO_HOOK=shell gives an interactive shell instead.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
eval "$(tools/guest/artifacts.sh)"

cfg_dir=$(mktemp -d /tmp/ember-demo.XXXXXX)
trap 'rm -rf "$cfg_dir"' EXIT
cat > "$cfg_dir/vm.json" <<JSON
{
  "boot-source": {
    "kernel_image_path": "$EMBER_KERNEL_VMLINUX",
    "initrd_path": "$EMBER_INITRAMFS",
    "boot_args": "console=ttyS0 reboot=k panic=1 pci=off quiet loglevel=1 ember.hook=${EMBER_DEMO_HOOK:-demo}"
  },
  "machine-config": { "vcpu_count": 2, "mem_size_mib": 256 }
}
JSON
cmd=("$PWD/$BUILD/ember" --no-api --config-file "$cfg_dir/vm.json" --boot-timer --level Info)

mode=${EMBER_TESTHOST:-auto}
if [ "$mode" = auto ]; then
	if tools/testhost/needed; then mode=always; else mode=never; fi
fi
if [ "$mode" = always ]; then
	echo "demo: this host's KVM cannot boot a standard guest; running in the nested test host" >&2
	tools/testhost/run --results "$cfg_dir" -- "${cmd[@]}"
else
	"${cmd[@]}"
fi
