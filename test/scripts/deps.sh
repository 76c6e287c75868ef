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

# libseccomp-dev, pkg-config, gcc and libc6-dev build runc (below); criu
# (checkpoint/restore) brings CRIU's libraries, its binary is replaced
# below where it is too old for the kernel.
apt_pkgs=(runc crun containernetworking-plugins iptables libseccomp-dev pkg-config gcc libc6-dev criu)
if [ "$want" = test ]; then
	# busybox (dynamic) and its libc build the critest fixture images;
	# gcc and libc6-dev also build the static attacker of
	# test/e2e/security_test.go; nginx is copied into the critest nginx
	# fixture image; apparmor's apparmor_parser checks berth's default
	# profile (runtime/apparmor; it loads nothing on a kernel without
	# AppArmor).
	# procps (pgrep, kill) and iproute2 (ip) are not on minimal systems.
	apt_pkgs+=(busybox containerd nginx apparmor procps iproute2 etcd-server qemu-system-x86 linux-image-amd64 debootstrap curl netcat-openbsd linux-perf) # etcd-server: the cluster of make node-conformance; curl, netcat-openbsd: its agnhost image; linux-perf: make bench-scale -perf-dir
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

# CRIU (runc checkpoint/restore): Debian 12's 3.17 fails on kernels from
# 6.13 on ("vdso: Unexpected rt vDSO area bounds": the vDSO data pages
# moved); 4.2 knows them. Where Debian's passes `criu check` it is used;
# otherwise CRIU 4.2 or later is built from Debian's source package
# (unstable's, fetched with apt through a scratch source list) into
# /usr/local/sbin, which precedes /usr/sbin in $PATH. ~20 s.
if ! criu check >/dev/null 2>&1 && ! /usr/local/sbin/criu --version 2>/dev/null | grep -Eq '^Version: (4\.([2-9]|[1-9][0-9])|[5-9])'; then
	echo "building CRIU from Debian's source package"
	apt-get install -y -qq libbsd-dev libcap-dev libgnutls28-dev libnet1-dev libnftables-dev libnl-3-dev \
		libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler protobuf-compiler uuid-dev make python3 >/dev/null
	criu_tmp=$(mktemp -d)
	mkdir -p "$criu_tmp/lists/partial" "$criu_tmp/cache/archives/partial"
	echo "deb-src http://deb.debian.org/debian sid main" >"$criu_tmp/sources.list"
	aptopts=(-o Dir::Etc::sourcelist="$criu_tmp/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$criu_tmp/lists" -o Dir::Cache="$criu_tmp/cache")
	apt-get "${aptopts[@]}" update -qq
	# Only the upstream tarball is needed (apt checks it against the .dsc).
	(cd "$criu_tmp" && apt-get "${aptopts[@]}" source --download-only criu >/dev/null 2>&1 || true)
	tarball=$(ls "$criu_tmp"/criu_*.orig.tar.* | head -n1)
	tar -C "$criu_tmp" -xf "$tarball"
	make -C "$criu_tmp"/criu-*/ -j"$(nproc)" criu >/dev/null
	install -m 0755 "$criu_tmp"/criu-*/criu/criu /usr/local/sbin/criu
	rm -rf "$criu_tmp"
	/usr/local/sbin/criu check >/dev/null
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
	# checkpointctl reads checkpoint archives (test/e2e/checkpoint_test.go
	# checks berth's with it); v1.7.0 needs a go-criu the proxy lacks.
	[ -x "$GOBIN/checkpointctl" ] || go install github.com/checkpoint-restore/checkpointctl@v1.6.0
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
