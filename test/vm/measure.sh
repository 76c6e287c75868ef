#!/bin/bash
# Times a few things berth's tests do a lot of, the same way on the host
# and in the VM (guest.sh's "measure" suite), to see how much slower TCG
# emulation is: process starts (runc --version), a runc container's life,
# a static C build (the fixtures'), and shell arithmetic (CPU only).
#   test/vm/measure.sh [BIN]    (BIN: where berthd is, default bin/)
set -u
bin=${1:-$(dirname "$0")/../../bin}
t() {
	local name=$1 start end
	shift
	start=$(date +%s%N)
	"$@" >/dev/null 2>&1
	end=$(date +%s%N)
	printf '%-28s %6d ms\n' "$name" $(((end - start) / 1000000))
}
spawn() { for _ in $(seq 20); do runc --version; done; }
config() { for _ in $(seq 20); do "$bin/berthd" config default; done; }
cc() {
	local d
	d=$(mktemp -d)
	printf 'int main(void){return 0;}\n' >"$d/x.c"
	gcc -static -Os -o "$d/x" "$d/x.c"
	rm -rf "$d"
}
arith() { busybox sh -c 'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done'; }
t "20 x runc --version" spawn
t "20 x berthd config default" config
t "gcc -static hello" cc
t "300k shell additions" arith
