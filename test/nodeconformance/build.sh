#!/usr/bin/env bash
# Builds what make node-conformance runs, from the Go module proxy, into a
# cache that outlives CI runs on this machine (one directory per version):
#   $CACHE/k8s-v1.37.2/bin         e2e.test, ginkgo, kube-apiserver,
#                                  kube-controller-manager, kube-scheduler,
#                                  kubelet, agnhost (static) and its
#                                  porter/ TLS pair
#   $CACHE/containerd-v2.4.2/bin   containerd, containerd-shim-runc-v2
#                                  (only with `build.sh containerd`)
# CACHE defaults to /var/cache/berth-k8s. A directory holds binaries only
# once all of them built (a .done stamp), so an interrupted build starts
# over instead of running a half-built set.
#
# Kubernetes' own go.mod replaces its staging modules (k8s.io/api,
# client-go, kubelet, ...) with ./staging/... paths, which a module that
# requires k8s.io/kubernetes does not see: the scratch module below
# replaces each with its published v0.MINOR.PATCH instead.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CACHE=${CACHE:-/var/cache/berth-k8s}
export PATH="$PATH:/usr/local/go/bin"
# Static binaries: agnhost runs in an image without a libc, and nothing
# here needs cgo.
export CGO_ENABLED=0

build_k8s() {
	local dir="$CACHE/k8s-$K8S_VERSION"
	[ -e "$dir/.done" ] && return 0
	echo "building Kubernetes $K8S_VERSION into $dir (first time only; ~30 min on 2 cores)"
	rm -rf "$dir"
	mkdir -p "$dir/src" "$dir/bin"
	local staging="v0.${K8S_VERSION#v1.}"
	cd "$dir/src"
	go mod init berth-k8s-build >/dev/null 2>&1
	go mod edit -require "k8s.io/kubernetes@$K8S_VERSION"
	local kmod
	kmod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
	# Every `k8s.io/x => ./staging/...` line of Kubernetes' go.mod.
	for m in $(sed -n 's#^\t\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$kmod"); do
		go mod edit -replace "$m=$m@$staging"
	done
	# The version the binaries report (the e2e framework and the kubelet
	# compare them); a plain go build says v0.0.0-master.
	local v=k8s.io/component-base/version minor=${K8S_VERSION#v1.}
	minor=${minor%%.*}
	local ldflags="-s -w -X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
	# -mod=mod lets go fill go.sum with what the packages below need.
	go build -mod=mod -trimpath -ldflags "$ldflags" -o "$dir/bin/" \
		k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/test/images/agnhost
	go test -mod=mod -c -trimpath -ldflags "$ldflags" -o "$dir/bin/e2e.test" k8s.io/kubernetes/test/e2e
	# ginkgo's CLI runs e2e.test's specs in parallel; its version is the
	# one the suite was built with.
	go build -mod=mod -trimpath -o "$dir/bin/" github.com/onsi/ginkgo/v2/ginkgo
	# agnhost's porter serves TLS with this pair, which its image carries.
	mkdir -p "$dir/bin/porter"
	cp "$(go list -mod=mod -f '{{.Dir}}' k8s.io/kubernetes/test/images/agnhost/porter)"/localhost.{crt,key} "$dir/bin/porter/"
	touch "$dir/.done"
}

build_containerd() {
	local dir="$CACHE/containerd-$CONTAINERD_VERSION"
	[ -e "$dir/.done" ] && return 0
	echo "building containerd $CONTAINERD_VERSION into $dir"
	rm -rf "$dir"
	mkdir -p "$dir/bin"
	# The graph drivers that need cgo or kernel headers are left out; the
	# overlayfs snapshotter is the one used.
	local m=github.com/containerd/containerd/v2
	GOBIN="$dir/bin" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs \
		-ldflags "-s -w -X $m/version.Version=$CONTAINERD_VERSION" \
		"$m/cmd/containerd@$CONTAINERD_VERSION" "$m/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
	touch "$dir/.done"
}

build_k8s
if [ "${1:-}" = containerd ]; then
	build_containerd
fi
