#!/usr/bin/env bash
# stage.sh DIR: lays out the guest userland shared by the initramfs and the
# rootfs in DIR: busybox-static with its applet symlinks, /init (= /sbin/init),
# /hooks/*, a minimal /etc and empty mount points. Used by build-initramfs.sh
# and build-rootfs.sh (both key their cache on this file too).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib.sh"

dir=${1:?usage: stage.sh DIR}
bb=/bin/busybox
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
	|| die "busybox-static is not installed (apt-get install busybox-static)"

rm -rf "$dir" && mkdir -p "$dir"
cd "$dir"
mkdir -p bin sbin usr/bin usr/sbin proc sys dev tmp root etc hooks
chmod 1777 tmp
chmod 700 root
install -m 755 "$bb" bin/busybox
# Applets as symlinks, except busybox's own init/linuxrc: ours is /sbin/init.
for applet in $("$bb" --list-full); do
	case $applet in sbin/init | linuxrc | bin/busybox) continue ;; esac
	ln -sf /bin/busybox "$applet"
done
install -m 755 "$here/init" init
install -m 755 "$here/init" sbin/init
for h in "$here"/hooks/*; do
	install -m 755 "$h" "hooks/$(basename "$h")"
done
# The integration tests' hostile guest programs (cached by build-evil.sh,
# which prints the path of their MANIFEST).
evil=$(dirname "$("$here/build-evil.sh")")
install -m 755 "$evil/virtio-evil" "$evil/net-evil" "$evil/tcp-send" "$evil/vsock-tool" \
	"$evil/vsock-evil" "$evil/balloon-evil" usr/bin/
printf 'root:x:0:0:root:/root:/bin/sh\n' >etc/passwd
printf 'root:x:0:\n' >etc/group
printf 'ember\n' >etc/hostname
# Fixed timestamps so the images do not change with the build time.
find . -exec touch -h -d @0 {} +
