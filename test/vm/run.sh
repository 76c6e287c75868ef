#!/usr/bin/env bash
# Runs berth's tests in a Debian 12 VM (systemd, pure cgroup v2) under
# qemu's TCG emulation, and brings the results back to _output/vm/results.
#
#   test/vm/run.sh                 (make test-vm; needs root)
#
# Environment:
#   VM_SUITES    what the guest runs, in order (default below; see guest.sh)
#   VM_E2E_RUN   the e2e tests, a go test -run pattern (default: e2e-tests)
#   VM_HANDLERS  the handlers the e2e tests run on (default runc,crun: gVisor
#                under emulation costs more than it proves here)
#   VM_CRITEST_FOCUS  a ginkgo focus for the critest suites (default: all specs)
#   VM_TIMEOUT   minutes before qemu is killed (default 60)
#   VM_MEM       guest memory in MiB (default 3072); VM_CPUS (default 2)
#   VM_OUT       output directory (default _output/vm)
#   VM_CACHE     where the image is kept between runs (default
#                /var/cache/berth-vm: CI's clones are fresh, the machine is not)
#
# Each run: builds the image if its inputs changed (image.sh), builds the
# static berthd and berth-shim and the e2e and critest test binaries,
# packs them with runc v1.5.2, crictl, critest and guest.sh into a second
# disk (mkfs.ext4 -d), boots the image with its writes discarded
# (snapshot=on), lets the guest's berth-vm.service run guest.sh, and after
# the guest powers off reads /results of the second disk with debugfs. The
# guest's only network is qemu's user network with restrict=on: nothing
# leaves the VM; the tests' registry runs on the guest's loopback.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${VM_OUT:-$repo/_output/vm}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PATH="$PATH:/usr/local/go/bin"
gobin=$(go env GOPATH)/bin

: "${VM_SUITES:=measure check e2e-systemd e2e-cgroupfs critest-runc critest-crun}"
: "${VM_E2E_RUN:=^($(grep -v '^#' "$here/e2e-tests" | grep . | paste -sd'|' -))\$}"
: "${VM_HANDLERS:=runc,crun}"
: "${VM_TIMEOUT:=60}" "${VM_MEM:=3072}" "${VM_CPUS:=2}"

[ "$(id -u)" = 0 ] || { echo "test-vm needs root (debootstrap, and the image's files owned by root)" >&2; exit 1; }
for tool in qemu-system-x86_64 debootstrap debugfs; do
	command -v $tool >/dev/null || { echo "$tool missing: make test-deps" >&2; exit 1; }
done
# Whole output first: grep -q would end the pipe early, and pipefail
# would count runc's SIGPIPE.
runc_version=$(/usr/local/sbin/runc --version 2>/dev/null || true)
grep -q '^runc version 1\.5\.2$' <<<"$runc_version" || { echo "runc v1.5.2 missing in /usr/local/sbin: make test-deps" >&2; exit 1; }
for tool in crictl critest; do
	[ -x "$gobin/$tool" ] || command -v $tool >/dev/null || { echo "$tool missing: make test-deps" >&2; exit 1; }
done

t0=$(date +%s)
cache=${VM_CACHE:-/var/cache/berth-vm}
img=$("$here/image.sh" "$cache")
hash=${img##*/image-}
hash=${hash%.raw}

# The payload: what changes at every run.
pay=$out/payload
rm -rf "$pay" "$out/results"
mkdir -p "$pay/bin" "$pay/critest"
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$pay/bin/" ./cmd/berthd ./cmd/berth-shim)
(cd "$repo" && go test -c -o "$pay/e2e.test" ./test/e2e)
(cd "$repo" && go test -c -o "$pay/critest/critest.test" ./test/critest)
cp -r "$repo/test/critest/expected" "$pay/critest/"
cp -r "$here/critest" "$pay/critest-more"
cp /usr/local/sbin/runc "$pay/bin/runc"
for tool in crictl critest; do
	cp "$(command -v $tool 2>/dev/null || echo "$gobin/$tool")" "$pay/bin/"
done
cp "$repo/dist/berthd.service" "$pay/"
cp "$here/guest.sh" "$here/measure.sh" "$pay/"
{
	printf 'VM_SUITES=%q\n' "$VM_SUITES"
	printf 'VM_E2E_RUN=%q\n' "$VM_E2E_RUN"
	printf 'VM_HANDLERS=%q\n' "$VM_HANDLERS"
	printf 'VM_CRITEST_FOCUS=%q\n' "${VM_CRITEST_FOCUS:-}"
} >"$pay/env"
mkfs.ext4 -q -L payload -d "$pay" "$out/payload.img" 4G >&2
t1=$(date +%s)
echo "image and payload ready in $((t1 - t0))s; booting (TCG, ${VM_CPUS} CPUs, ${VM_MEM} MiB, at most ${VM_TIMEOUT} min)"

rc=0
# mitigations=off: the guest runs only the tests, and is thrown away;
# emulated, the mitigations' costs are many times the real ones.
timeout --foreground -k 10 "${VM_TIMEOUT}m" qemu-system-x86_64 -accel tcg -m "$VM_MEM" -smp "$VM_CPUS" \
	-kernel "$cache/vmlinuz-$hash" -initrd "$cache/initrd-$hash" \
	-append "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=4 mitigations=off" \
	-drive "file=$img,format=raw,if=virtio,snapshot=on" \
	-drive "file=$out/payload.img,format=raw,if=virtio" \
	-nic user,model=virtio-net-pci,restrict=on \
	-display none -monitor none -serial "file:$out/serial.log" -no-reboot || rc=$?
t2=$(date +%s)
[ $rc = 0 ] || echo "qemu ended with $rc (124: killed after ${VM_TIMEOUT} min)"

debugfs -R "rdump /results $out" "$out/payload.img" >/dev/null 2>&1 || true
# The same measurements on the host, beside the guest's.
case " $VM_SUITES " in *" measure "*) mkdir -p "$out/results" && "$here/measure.sh" "$pay/bin" >"$out/results/measure-host.log" 2>&1 || true ;; esac
echo "VM ran $((t2 - t1))s; total $((t2 - t0))s; serial log $out/serial.log"
if [ ! -f "$out/results/summary" ]; then
	echo "no results: see $out/serial.log" >&2
	tail -30 "$out/serial.log" >&2
	exit 1
fi
cat "$out/results/summary"
# Every suite passed: the guest wrote "ok" last.
[ "$(tail -1 "$out/results/summary")" = ok ]
