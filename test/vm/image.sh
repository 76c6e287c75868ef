#!/usr/bin/env bash
# Builds the test VM's disk image, once: a Debian 12 root filesystem
# (debootstrap minbase, test/vm/packages, systemd as init on a pure
# cgroup v2 hierarchy) packed by mkfs.ext4 -d into a raw image, with the
# host's Debian kernel and initrd beside it (linux-image-amd64; its
# modules are copied in). Prints the image's path.
#
#   test/vm/image.sh [OUTDIR]     (default /var/cache/berth-vm; needs root)
#
# The image is named by a hash of the package list, this script, the
# files under test/vm/guest and the kernel's version: any change builds a
# new one, and the older ones are deleted. No loop device and no mount:
# it works in a container as on a laptop.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-/var/cache/berth-vm}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The newest Debian kernel in /boot (linux-image-amd64): its initrd has
# the virtio drivers, and its modules go into the image.
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -n "$kernel" ] || { echo "no /boot/vmlinuz-*: apt-get install linux-image-amd64" >&2; exit 1; }
kver=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$kver" ] || { echo "no /lib/modules/$kver" >&2; exit 1; }

hash=$( { cat "$here/packages" "$here/image.sh"; (cd "$here/guest" && for f in $(ls | sort); do echo "$f"; cat "$f"; done); echo "$kver"; } | sha256sum | cut -c1-12)
img=$out/image-$hash.raw
if [ -e "$img" ]; then
	echo "$img"
	exit 0
fi

# Debian's mirror, as the host's apt sources name it (the only package
# source this machine reaches).
mirror=$(grep -hE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
[ -n "$mirror" ] || mirror=$(grep -hE '^deb .*/debian/? bookworm' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
mirror=${mirror:-http://deb.debian.org/debian}

pkgs=$(grep -v '^#' "$here/packages" | grep . | paste -sd, -)
root=$(mktemp -d "$out/rootfs.XXXXXX")
# Interrupted, debootstrap leaves the host's /proc (and more) mounted in
# the root: unmount before removing, or rm would reach into them.
cleanup() {
	local m
	for m in $(awk -v r="$root/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
		umount -l "$m" || true
	done
	rm -rf --one-file-system "$root" "$img.tmp" || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM
echo "debootstrap bookworm from $mirror ($pkgs)" >&2
debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror" >"$out/debootstrap.log" 2>&1 ||
	{ tail -20 "$out/debootstrap.log" >&2; exit 1; }

# The kernel's modules (overlay, veth, bridge, netfilter, ...) without
# the hardware a VM has none of.
tar -C / --exclude="lib/modules/$kver/kernel/drivers/gpu" --exclude="lib/modules/$kver/kernel/drivers/media" \
	--exclude="lib/modules/$kver/kernel/drivers/net/wireless" --exclude="lib/modules/$kver/kernel/drivers/infiniband" \
	--exclude="lib/modules/$kver/kernel/drivers/iio" --exclude="lib/modules/$kver/kernel/drivers/usb" \
	--exclude="lib/modules/$kver/kernel/sound" -cf - "lib/modules/$kver" | tar -C "$root" -xf -
chroot "$root" depmod "$kver"

echo berth-vm >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n127.0.1.1 berth-vm\n' >"$root/etc/hosts"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$root/etc/fstab"
: >"$root/etc/machine-id"
install -D -m 0644 "$here/guest/10-eth.network" "$root/etc/systemd/network/10-eth.network"
install -D -m 0755 "$here/guest/berth-vm-run" "$root/usr/local/libexec/berth-vm-run"
install -D -m 0644 "$here/guest/berth-vm.service" "$root/etc/systemd/system/berth-vm.service"
chroot "$root" systemctl enable berth-vm.service systemd-networkd.service >/dev/null 2>&1
# Nothing else starts: no login prompt, no package timers, and nginx is
# only there to be copied into a test image.
chroot "$root" systemctl mask getty@tty1.service serial-getty@ttyS0.service nginx.service \
	apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >/dev/null 2>&1
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*_Packages

mkfs.ext4 -q -L berth-vm -d "$root" "$img.tmp" 8G >&2
mv "$img.tmp" "$img"
cp "$kernel" "$out/vmlinuz-$hash"
cp "/boot/initrd.img-$kver" "$out/initrd-$hash"
# Older images: their inputs changed.
for f in "$out"/image-*.raw "$out"/vmlinuz-* "$out"/initrd-*; do
	case $f in *"$hash"*) ;; *) rm -f "$f" ;; esac
done
echo "$img"
