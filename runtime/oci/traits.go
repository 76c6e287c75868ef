package oci

import (
	"fmt"
	"strings"
)

// Kind is a family of OCI runtimes: one command line and one behaviour.
type Kind string

// The families berth knows. KindOCI is any other runtime with runc's
// command line: berth assumes nothing more of it.
const (
	KindRunc  Kind = "runc"
	KindCrun  Kind = "crun"
	KindRunsc Kind = "runsc"
	KindOCI   Kind = "oci"
)

// Traits are what berth relies on in a runtime family, declared once here
// rather than guessed where they are used. Adding a runtime (youki, kata)
// is a row of kinds.
type Traits struct {
	// PinnedPods: a pod needs no sandbox process; berth pins its
	// namespaces and the containers join them.
	PinnedPods bool
	// DirectExec: the shim may start exec'd processes itself, entering the
	// container as the runtime's exec does.
	DirectExec bool
	// DirectStart: the shim may start a created container through runc's
	// exec FIFO, as `runc start` does.
	DirectStart bool
	// ExecHome is HOME the runtime's exec gives a user /etc/passwd does
	// not name ("": none).
	ExecHome string
	// Sandboxed: a pod's containers run inside one sandbox process the
	// runtime owns, started as the pod's sandbox container (gVisor).
	// Subcontainers take their stdio at start and their exits come from
	// `wait`; killing every process takes `kill --all`; exec'd processes
	// are known by pids inside the sandbox; stats and port-forwarding go
	// through the runtime, which holds the network stack.
	Sandboxed bool
	// HostNetworkArgs are the global arguments a host-network pod needs.
	HostNetworkArgs []string
	// LogFilePrefix is what the runtime wants before the path in
	// --log=PREFIXPATH ("file:" for crun); "" is runc's "--log PATH".
	LogFilePrefix string
	// RefusesHybridCgroups: it will not run while a controller is bound to
	// the cgroup2 tree of a hybrid host (crun).
	RefusesHybridCgroups bool
	// Checkpoint: `checkpoint` and `restore` with CRIU, runc's command
	// line (see checkpoint.go for why the others cannot).
	Checkpoint bool
	// SandboxCheckpoint: the runtime checkpoints and restores a whole
	// sandbox, every container of it in one image (gVisor: `checkpoint`
	// of the sandbox container, `restore` of it and then of each
	// container), never one container alone.
	SandboxCheckpoint bool
	// SystemdProperties: with --systemd-cgroup it gives systemd a
	// container's limits as properties of its scope (runc), which a
	// daemon-reload then keeps; berth does it for the others.
	SystemdProperties bool
}

var kinds = map[Kind]Traits{
	KindRunc:  {PinnedPods: true, DirectExec: true, DirectStart: true, ExecHome: "/", Checkpoint: true, SystemdProperties: true},
	KindCrun:  {PinnedPods: true, DirectExec: true, LogFilePrefix: "file:", RefusesHybridCgroups: true},
	KindRunsc: {Sandboxed: true, HostNetworkArgs: []string{"--network=host"}, SandboxCheckpoint: true},
	KindOCI:   {},
}

// Traits are the family's.
func (k Kind) Traits() Traits { return kinds[k] }

// ParseKind reads a configured kind; "" is guessed from the binary's
// name (runsc, crun, runc, else oci).
func ParseKind(s, path string) (Kind, error) {
	if s == "" {
		base := path[strings.LastIndex(path, "/")+1:]
		for _, k := range []Kind{KindRunsc, KindCrun, KindRunc} {
			if strings.Contains(base, string(k)) {
				return k, nil
			}
		}
		return KindOCI, nil
	}
	if _, ok := kinds[Kind(s)]; !ok {
		return "", fmt.Errorf("unknown runtime kind %q (runc, crun, runsc or oci)", s)
	}
	return Kind(s), nil
}
