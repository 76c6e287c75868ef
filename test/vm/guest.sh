#!/bin/bash
# Runs inside the test VM (berth-vm.service, from the payload disk that
# test/vm/run.sh made) and writes everything to /payload/results:
#   summary       one line a suite: name, exit code, seconds; "ok" last if all passed
#   host.txt      the guest's facts (kernel, cgroups, systemd)
#   <suite>.log   each suite's output
# Suites (VM_SUITES in /payload/env):
#   measure       measure.sh: how slow emulation is (run.sh runs it on the host too)
#   check         berthd check with the systemd driver: cgroup v2, nothing missing
#   e2e-cgroupfs  the e2e tests (VM_E2E_RUN) with cgroup_driver = "cgroupfs"
#   e2e-systemd   the same with cgroup_driver = "systemd", and
#                 dist/berthd.service under systemd (TestSystemdService)
#   critest-H     the CRI validation suite on handler H, systemd driver; the
#                 specs of test/critest/expected/H.txt and test/vm/critest/H.txt
#                 must pass
set -u
P=/payload
R=$P/results
mkdir -p "$R"
. $P/env
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
export BERTH_BIN=/usr/local/bin GOTRACEBACK=all

# Programs go to the root disk: nothing runs from the payload disk.
install -m 0755 $P/bin/runc /usr/local/sbin/runc
install -m 0755 $P/bin/berthd $P/bin/berth-shim $P/bin/crictl $P/bin/critest /usr/local/bin/
cp $P/e2e.test /usr/local/bin/berth-e2e.test
cp -r $P/critest /root/critest

{
	uname -a
	nproc
	free -m
	stat -fc 'cgroup fs: %T' /sys/fs/cgroup
	echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
	echo "subtree: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
	systemctl --version | head -1
	runc --version | head -1
	crun --version | head -1
	systemd-analyze 2>/dev/null | head -1
} >$R/host.txt 2>&1

: >$R/summary
failed=0
suite() {
	local name=$1
	shift
	local start rc
	start=$(date +%s)
	echo "=== $name: $*"
	"$@" >"$R/$name.log" 2>&1
	rc=$?
	echo "$name $rc $(($(date +%s) - start))s" | tee -a $R/summary
	[ $rc = 0 ] || failed=1
	# Nothing of a suite may stay behind in systemd: no container's
	# scope, no pod's slice (berth.slice, their parent, may stay).
	left=$(systemctl list-units --all --plain --no-legend 'berth-*.scope' 'berth-*.slice' 2>/dev/null
		ls -d /run/systemd/transient/berth-* /run/systemd/system.control/berth-* 2>/dev/null)
	if [ -n "$left" ]; then
		echo "$name left units: $left" | tee -a $R/summary
		failed=1
	fi
}

check() {
	printf 'cgroup_driver = "systemd"\n' >/tmp/check.toml
	berthd --config /tmp/check.toml check
	local rc=$?
	# cgroup v2, the systemd driver, and no finding that is not ok.
	berthd --config /tmp/check.toml check | grep -q 'v2, driver systemd' || rc=1
	return $rc
}

e2e() {
	local unit=
	[ "$1" = systemd ] && unit=$P/berthd.service
	BERTH_CGROUP_DRIVER=$1 BERTH_SYSTEMD_UNIT=$unit BERTH_HANDLERS=$VM_HANDLERS BERTH_CYCLES=4 \
		berth-e2e.test -test.v -test.count=1 -test.timeout 50m -test.run "$VM_E2E_RUN"
}

critest() {
	cd /root/critest && BERTH_CGROUP_DRIVER=systemd BERTH_CRITEST_EXPECTED_MORE=$P/critest-more ./critest.test -test.v -test.count=1 -test.timeout 60m \
		-test.run TestCritest -handler="$1" -results=$R/critest ${VM_CRITEST_FOCUS:+-focus="$VM_CRITEST_FOCUS"}
}

for s in $VM_SUITES; do
	case $s in
	measure) suite measure $P/measure.sh /usr/local/bin ;;
	check) suite check check ;;
	e2e-*) suite "$s" e2e "${s#e2e-}" ;;
	critest-*) suite "$s" critest "${s#critest-}" ;;
	*) echo "unknown suite $s" | tee -a $R/summary; failed=1 ;;
	esac
done
journalctl -b --no-pager >$R/journal.txt 2>&1
[ $failed = 0 ] && echo ok >>$R/summary
exit 0
