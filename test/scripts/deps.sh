#!/usr/bin/env bash
# Installs what berth needs on a fresh Debian 12 machine.
#   deps.sh runtime   OCI runtimes, CNI plugins, iptables (to run berthd)
#   deps.sh test      the above, plus crictl, critest and test tools
set -euo pipefail

want=${1:-runtime}
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/go/bin"
GOBIN="$(go env GOPATH)/bin"
export PATH="$PATH:$GOBIN"

# libseccomp-dev, pkg-config, gcc and libc6-dev build runc (below).
apt_pkgs=(runc crun containernetworking-plugins iptables libseccomp-dev pkg-config gcc libc6-dev)
if [ "$want" = test ]; then
	# busybox (dynamic) and its libc build the critest fixture images;
	# gcc and libc6-dev also build the static attacker of
	# test/e2e/security_test.go; nginx is copied into the critest nginx
	# fixture image; apparmor's apparmor_parser checks berth's default
	# profile (runtime/apparmor; it loads nothing on a kernel without
	# AppArmor).
	apt_pkgs+=(busybox containerd nginx apparmor)
fi
missing=()
for p in "${apt_pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq
	# No package's service (nginx, containerd) starts on the host: tests
	# copy programs or start their own instances.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# crun refuses hybrid cgroups while the cgroup2 tree holds a controller
# (hugetlb here): give it a v1 hierarchy. berthd check reports this too.
if [ -d /sys/fs/cgroup/unified ] && [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
	for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
		if ! grep -q "cgroup .*[ ,]$c\b" /proc/self/mountinfo; then
			mkdir -p "/sys/fs/cgroup/$c"
			mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
		fi
	done
fi

# runc: Debian 12's 1.1.5 has no user namespaces as Kubernetes uses them
# (idmapped mounts); a current one builds from the Go module proxy with
# libseccomp in seconds. /usr/local/sbin precedes /usr/sbin in $PATH, so
# it is the runc handler berthd's defaults find.
RUNC=github.com/opencontainers/runc@v1.5.2
if ! /usr/local/sbin/runc --version 2>/dev/null | grep -q '^runc version 1\.5\.2$'; then
	echo "building runc from $RUNC"
	CGO_ENABLED=1 GOBIN=/usr/local/sbin go install -tags seccomp "$RUNC"
fi

# gVisor: Debian 12's runsc (2022) cannot run pods in a CNI network
# namespace; a current one builds from the Go module proxy (~3 minutes).
GVISOR=gvisor.dev/gvisor/runsc@v0.0.0-20260527191743-a81fd9dd382e
if ! /usr/local/bin/runsc --version 2>/dev/null | grep -q '^spec: 1\.[1-9]'; then
	echo "building runsc (gVisor) from $GVISOR"
	CGO_ENABLED=0 GOBIN=/usr/local/bin go install "$GVISOR"
fi

if [ "$want" = test ]; then
	[ -x "$GOBIN/crictl" ] || go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
	"$GOBIN/golangci-lint" version 2>/dev/null | grep -q ' 2\.15\.0 ' ||
		go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	# critest is a test binary: build it in a scratch module.
	if [ ! -x "$GOBIN/critest" ]; then
		scratch=$(mktemp -d)
		(cd "$scratch" && go mod init critest-build >/dev/null 2>&1 &&
			go get -t sigs.k8s.io/cri-tools/cmd/critest@v1.37.0 >/dev/null 2>&1 &&
			go test -c -o "$GOBIN/critest" sigs.k8s.io/cri-tools/cmd/critest)
		rm -rf "$scratch"
	fi
fi
