# berth: a Kubernetes CRI runtime.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:$(shell go env GOPATH 2>/dev/null)/bin
BIN := $(CURDIR)/bin
GO_PKGS := ./runtime/... ./server/... ./cmd/... ./proto/...
HANDLER ?= runc

.PHONY: all build install uninstall run deps test-deps test test-root test-all check lint protos critest critest-all test-vm soak fuzz bench bench-scale bench-containerd node-conformance node-conformance-all clean

all: build

# Static (no cgo): no libc mapped into every shim, and one binary for any
# Linux of this architecture.
build:
	CGO_ENABLED=0 go build -trimpath -o $(BIN)/ ./cmd/...

# Binaries, the systemd unit (when systemd runs) and, when none exists,
# the default configuration. `make uninstall` removes them, the
# configuration only if unchanged; pods' data (/var/lib/berth) stays.
UNIT_DIR ?= /etc/systemd/system
install: build
	install -m 0755 $(BIN)/berthd $(BIN)/berth-shim /usr/local/bin/
	install -d -m 0755 /etc/berth
	[ -e /etc/berth/config.toml ] || $(BIN)/berthd config default >/etc/berth/config.toml
	install -D -m 0644 dist/berthd.service $(UNIT_DIR)/berthd.service
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

uninstall:
	if [ -d /run/systemd/system ]; then systemctl disable --now berthd.service || true; fi
	rm -f $(UNIT_DIR)/berthd.service /usr/local/bin/berthd /usr/local/bin/berth-shim
	if [ -e /etc/berth/config.toml ] && $(BIN)/berthd config default | cmp -s - /etc/berth/config.toml; then rm -f /etc/berth/config.toml; rmdir /etc/berth 2>/dev/null || true; fi
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Installs the runtime prerequisites, builds, installs and runs berthd with
# its embedded defaults (socket /run/berth/berth.sock).
run: deps install
	berthd check || true
	exec berthd

deps:
	test/scripts/deps.sh runtime

test-deps:
	test/scripts/deps.sh test

# Unit tests; the ones that need root skip without it.
test:
	go test -race -count=1 $(GO_PKGS)

# End-to-end tests against a real berthd (root).
test-root: build
	@[ "$$(id -u)" = 0 ] || { echo "test-root needs root"; exit 1; }
	BERTH_BIN=$(BIN) go test -count=1 -timeout 30m ./test/e2e/ ./test/fixtures/ ./test/registry/ ./test/scripts/

# The fast gate, without root: build, lint and the unit tests (cached
# results reused). CI runs it first, so that it fails in minutes.
check: build lint
	go test -race $(GO_PKGS)

# Everything, as CI runs it (.ci/run): make check, prerequisites,
# generated code, unit and root tests, the CRI validation suite on every
# handler (16 minutes here), the cgroup v2 + systemd suites in their VM
# (33) and Kubernetes' NodeConformance (17; its binaries build once into
# $(K8S_CACHE), ~30 minutes the first time).
test-all: check test-deps protos test test-root critest-all test-vm node-conformance

# The leak test at length: 500 pod lifecycles across handlers (make soak
# CYCLES=2000 for more).
CYCLES ?= 500
soak: build
	@[ "$$(id -u)" = 0 ] || { echo "soak needs root"; exit 1; }
	BERTH_BIN=$(BIN) BERTH_CYCLES=$(CYCLES) go test -count=1 -timeout 6h -v -run 'TestLifecyclesLeakNothing' ./test/e2e/

# Fuzz each target for FUZZTIME (default 1m each).
FUZZTIME ?= 1m
# The fuzz engine shares memory with its workers through a file in
# $TMPDIR: on a tmpfs, not on a slow disk.
fuzz:
	@export TMPDIR=$$( [ -d /dev/shm ] && echo /dev/shm || echo $${TMPDIR:-/tmp} ); for t in "FuzzApply ./runtime/archive" "FuzzContainerSpec ./runtime/spec" "FuzzParse ./runtime/config" \
		"FuzzParseRef ./runtime/image" "FuzzRead ./runtime/shim/frame"; do \
		set -- $$t; go test -run '^$$' -fuzz "^$$1$$" -fuzztime $(FUZZTIME) $$2 || exit 1; done

critest-all:
	$(MAKE) critest HANDLER=runc
	$(MAKE) critest HANDLER=crun
	$(MAKE) critest HANDLER=runsc

# berth on cgroup v2 with systemd, both cgroup drivers, in a Debian 12 VM
# under qemu's emulation (TCG): test/vm/README.md. The image is built once
# (/var/cache/berth-vm); results in _output/vm/results. VM_SUITES etc. choose what
# runs (test/vm/run.sh).
test-vm:
	@[ "$$(id -u)" = 0 ] || { echo "test-vm needs root"; exit 1; }
	@command -v qemu-system-x86_64 >/dev/null || test/scripts/deps.sh test
	test/vm/run.sh

# go vet, gofmt and golangci-lint (.golangci.yml), installed if missing at
# the version test/scripts/deps.sh installs.
GOLANGCI_LINT_VERSION := v2.15.0
lint:
	go vet ./...
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go' | grep -v '\.pb\.go$$')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@command -v golangci-lint >/dev/null || go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	golangci-lint run ./...

# Regenerates proto/ with local plugins only (no network); the generated
# code is committed, so this leaves no diff unless the .proto changed.
protos:
	@command -v buf >/dev/null || go install github.com/bufbuild/buf/cmd/buf@v1.75.0
	@command -v protoc-gen-go >/dev/null || go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	@command -v protoc-gen-go-ttrpc >/dev/null || go install github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc@v1.2.10
	buf lint
	buf generate
	@git diff --exit-code -- proto/ || { echo "make protos changed the generated code: commit it"; exit 1; }

# The CRI validation suite against a fresh berthd whose default handler is
# $(HANDLER); summary in _output/critest/$(HANDLER).md.
critest: build
	@[ "$$(id -u)" = 0 ] || { echo "critest needs root"; exit 1; }
	@command -v critest >/dev/null || test/scripts/deps.sh test
	cd test/critest && BERTH_BIN=$(BIN) go test -count=1 -timeout 100m -run TestCritest . -args -handler=$(HANDLER) -results=$(CURDIR)/_output/critest $(if $(FOCUS),-focus='$(FOCUS)')

# berth beside containerd 2.4.2 (built once into $(K8S_CACHE) by
# test/nodeconformance/build.sh, the one ratios are taken to) and Debian's
# containerd 1.6.20, on the same runc, in one run; results in
# _output/bench/results.md. BENCH_ARGS passes flags, e.g.
# BENCH_ARGS="-runs 50 -list 0" or BENCH_ARGS="-baselines 2.4.2".
CONTAINERD2_BIN = $(K8S_CACHE)/containerd-v2.4.2/bin
bench: build bench-containerd
	@[ "$$(id -u)" = 0 ] || { echo "bench needs root"; exit 1; }
	BERTH_BIN=$(BIN) go test -count=1 -timeout 90m -v -run 'TestBench$$' ./test/bench/ -args -results=$(CURDIR)/_output/bench \
		-containerd2-bin=$(CONTAINERD2_BIN) $(BENCH_ARGS)

# The node-scale scenario (issue 17): SCALE_PODS pods (one busybox each)
# started 10 at a time, a probe storm, the kubelet's relist and stats
# load, memory, a kill -9 of the daemon and the teardown, on each of
# SCALE_RUNTIMES (berth, 2.4.2, 1.6.20) taking turns, on each network of
# SCALE_NET (default: berth's own; shared: one bridge+ipMasq, host-local,
# portmap configuration for all); results in _output/bench/scale.md.
# SCALE_ARGS passes more flags (see test/bench/scale_test.go), e.g.
# SCALE_ARGS="-probe-for 30s -scale-rounds 2".
SCALE_PODS ?= 110,250
SCALE_NET ?= default,shared
SCALE_RUNTIMES ?= berth,2.4.2
bench-scale: build bench-containerd
	@[ "$$(id -u)" = 0 ] || { echo "bench-scale needs root"; exit 1; }
	BERTH_BIN=$(BIN) go test -count=1 -timeout 180m -v -run 'TestScale$$' ./test/bench/ -args -results=$(CURDIR)/_output/bench \
		-containerd2-bin=$(CONTAINERD2_BIN) -scale-pods=$(SCALE_PODS) -scale-net=$(SCALE_NET) -scale-runtimes=$(SCALE_RUNTIMES) $(SCALE_ARGS)

# containerd 2.4.2 for the benchmarks, from the Go module proxy, and
# Debian's 1.6.20 (test prerequisites). build.sh builds (and caches) the
# Kubernetes binaries of node-conformance first when they are not in
# $(K8S_CACHE) yet (~30 min, once).
bench-containerd:
	@command -v containerd >/dev/null || test/scripts/deps.sh test
	@[ -e $(K8S_CACHE)/containerd-v2.4.2/.done ] || CACHE=$(K8S_CACHE) test/nodeconformance/build.sh containerd

# Kubernetes' e2e suite focused on [NodeConformance] (v1.37.2) on a
# one-node cluster on loopback against a fresh berthd (RUNTIME=containerd:
# containerd 2.4.2 on the same runc, for comparison); summary in
# _output/node-conformance/$(RUNTIME).md. The Kubernetes binaries build
# once per version into $(K8S_CACHE) (~30 min on 2 cores), containerd
# only when asked for. node-conformance-all runs both, berth last, and
# lists what passes on containerd and not on berth.
RUNTIME ?= berth
K8S_CACHE ?= /var/cache/berth-k8s
node-conformance: build
	@[ "$$(id -u)" = 0 ] || { echo "node-conformance needs root"; exit 1; }
	@command -v etcd >/dev/null || test/scripts/deps.sh test
	CACHE=$(K8S_CACHE) test/nodeconformance/build.sh $(if $(filter containerd,$(RUNTIME)),containerd)
	cd test/nodeconformance && BERTH_BIN=$(BIN) go test -count=1 -timeout 150m -run TestNodeConformance . -args \
		-runtime=$(RUNTIME) -results=$(CURDIR)/_output/node-conformance \
		-k8s-bin=$(K8S_CACHE)/k8s-v1.37.2/bin -containerd-bin=$(K8S_CACHE)/containerd-v2.4.2/bin $(if $(FOCUS),-focus='$(FOCUS)')

node-conformance-all:
	$(MAKE) node-conformance RUNTIME=containerd
	$(MAKE) node-conformance RUNTIME=berth

clean:
	rm -rf $(BIN)
