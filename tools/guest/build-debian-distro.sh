#!/usr/bin/env bash
# Builds an unmodified Debian 12 system for the distro boot benchmark
# (issue 17: systemd, Debian's own kernel and initramfs-tools initrd, an ext4
# root drive) into the cache, keyed by this script. Prints the directory,
# which holds:
#   rootfs.ext4   the root filesystem (sparse; each VMM boots a private copy)
#   vmlinuz       Debian's kernel, as installed in the image
#   initrd.img    the initrd initramfs-tools built inside the image
#   versions.txt  the kernel and systemd versions in it
# Debian's packages only: debootstrap from deb.debian.org, the archive's
# defaults (priority required + important, systemd as init), plus the kernel.
# The one addition is ember-ready.service, the measurement's end marker: once
# the boot is over it prints "EMBER-READY: <systemctl is-system-running>" on
# the serial console, then where systemd says the time went ("EMBER-ANALYZE:
# Startup finished in ... (kernel) + ... (initrd) + ... (userspace)", the
# slowest units as "EMBER-BLAME: ...", and "EMBER-ANALYZE-END"). It is
# Type=simple, so the boot does not wait for it.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"

key=$(hash_inputs "$0")
out="$EMBER_CACHE/debian-distro/$key"
if [ -e "$out/.done" ]; then
	echo "$out"
	exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is missing (make setup)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing (make setup)"
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap)"

mkdir -p "$EMBER_CACHE/debian-distro"
exec 9>"$EMBER_CACHE/debian-distro/.lock"
flock 9
[ -e "$out/.done" ] && { echo "$out"; exit 0; }

tmp=$(mktemp -d "$EMBER_CACHE/debian-distro/build.XXXXXX")
trap 'umount -R "$tmp/root/proc" 2>/dev/null || true; rm -rf "$tmp"' EXIT
root=$tmp/root
echo "debian-distro: debootstrap bookworm (a few minutes)" >&2
debootstrap --include=linux-image-amd64,initramfs-tools,systemd-sysv,udev \
	bookworm "$root" http://deb.debian.org/debian >"$tmp/debootstrap.log" 2>&1 ||
	{ tail -20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }

echo "/dev/vda / ext4 defaults 0 1" >"$root/etc/fstab"
echo distro >"$root/etc/hostname"
chroot "$root" passwd -d root >/dev/null
cat >"$root/etc/systemd/system/ember-ready.service" <<'EOF'
[Unit]
Description=Report the end of the boot on the serial console (Ember's bench)
After=multi-user.target

[Service]
Type=simple
ExecStart=/bin/sh -c 'echo "EMBER-READY: $(systemctl is-system-running --wait)" >/dev/ttyS0; { systemd-analyze time | head -1 | sed "s/^/EMBER-ANALYZE: /"; systemd-analyze blame | head -8 | sed "s/^ */EMBER-BLAME: /"; echo EMBER-ANALYZE-END; } >/dev/ttyS0 2>&1'

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/ember-ready.service \
	"$root/etc/systemd/system/multi-user.target.wants/ember-ready.service"

kver=$(basename "$(ls -d "$root"/lib/modules/* | head -1)")
[ -f "$root/boot/initrd.img-$kver" ] || die "no initrd for $kver in the image"
cp "$root/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$tmp/initrd.img"
{
	echo "kernel $kver"
	chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' systemd linux-image-amd64 initramfs-tools
} >"$tmp/versions.txt"
rm -rf "$root/var/cache/apt/archives/"*.deb

echo "debian-distro: ext4 image" >&2
truncate -s 2G "$tmp/rootfs.ext4"
mkfs.ext4 -q -L root -d "$root" "$tmp/rootfs.ext4"
rm -rf "$root"

mkdir -p "$tmp/out"
mv "$tmp/rootfs.ext4" "$tmp/vmlinuz" "$tmp/initrd.img" "$tmp/versions.txt" "$tmp/out/"
touch "$tmp/out/.done"
rm -rf "$out"
mv -T "$tmp/out" "$out"
echo "$out"
