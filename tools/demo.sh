#!/usr/bin/env bash
# Boots a microVM with Ember and shows its console: a kernel with the busybox
# initramfs, whose `demo` hook prints what the guest sees and then reboots
# (Ember exits 0). Runs inside the nested test host when this host's KVM
# cannot boot a standard guest (see tools/testhost).
#
# The kernel is the project's minimal one once it is built (a 5-minute
# build that `make test` does, cached in $EMBER_CACHE); until then Debian's
# packaged kernel, a download, so that a fresh machine shows a guest console
# within a couple of minutes. EMBER_DEMO_KERNEL=minimal builds the minimal
# one first (with its progress) instead; =debian always takes Debian's.
# EMBER_DEMO_HOOK=shell gives an interactive shell instead of the banner.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/lib.sh
BUILD=${BUILD:-build}
step() { echo "demo: $*" >&2; }

choice=${EMBER_DEMO_KERNEL:-auto}
[[ $choice =~ ^(auto|minimal|debian)$ ]] || die "EMBER_DEMO_KERNEL must be auto, minimal or debian"
kernel=''
if [ "$choice" = minimal ]; then
	step "building Ember's minimal guest kernel (about 5 minutes the first time)"
	kernel=$(tools/guest/build-kernel.sh)/vmlinux
elif [ "$choice" = auto ] && dir=$(tools/guest/build-kernel.sh --cached); then
	kernel=$dir/vmlinux
fi
if [ -z "$kernel" ]; then
	[ "$choice" = auto ] && step "Ember's minimal guest kernel is not built yet (a 5-minute build;" \
		"\`make test\` or EMBER_DEMO_KERNEL=minimal does it): booting Debian's packaged kernel"
	if [ -f "${EMBER_DEBIAN_VMLINUZ:-}" ]; then	# as tools/run-tests.sh sets it
		kernel=$EMBER_DEBIAN_VMLINUZ
	else
		debian=$(tools/guest/debian-kernel.sh)
		vmlinuz=("$debian"/boot/vmlinuz-*)
		[ -e "${vmlinuz[0]}" ] || die "no boot/vmlinuz-* in $debian"
		kernel=${vmlinuz[0]}
	fi
	# The test host boots this same kernel: tell it, it saves a look-up.
	export EMBER_DEBIAN_VMLINUZ=$kernel
fi
step "guest initramfs (busybox)"
initramfs=$(tools/guest/build-initramfs.sh)

cfg_dir=$(mktemp -d /tmp/ember-demo.XXXXXX)
trap 'rm -rf "$cfg_dir"' EXIT
cat > "$cfg_dir/vm.json" <<JSON
{
  "boot-source": {
    "kernel_image_path": "$kernel",
    "initrd_path": "$initramfs",
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
step "booting $(basename "$kernel") with Ember"
if [ "$mode" = always ]; then
	step "this host's KVM cannot boot a standard guest; running in the nested test host" \
		"(a QEMU VM: it boots first, in about 10 s)"
	tools/testhost/run --results "$cfg_dir" -- "${cmd[@]}"
else
	"${cmd[@]}"
fi
