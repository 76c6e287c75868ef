// Package nri connects berth to Node Resource Interface plugins through
// the NRI library's runtime adaptation (github.com/containerd/nri): it
// listens on the NRI socket, launches the pre-installed plugins, relays
// every pod and container lifecycle event to them, applies the
// adjustments they make to containers being created, and honours the
// updates they ask for, through a Domain that runtime/pod implements.
//
// runtime/pod sees it through a small interface of its own (pod.NRI); a
// node without NRI enabled has no *NRI at all.
package nri

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/containerd/nri/pkg/adaptation"
	nrilog "github.com/containerd/nri/pkg/log"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/host"
)

// Options configure an NRI.
type Options struct {
	Config config.NRI
	// Version is berthd's, which plugins are told.
	Version string
	Log     *slog.Logger
}

// NRI is berth's side of NRI.
type NRI struct {
	log      *slog.Logger
	a        *adaptation.Adaptation
	socket   string
	oomFloor int
	cgroups  host.CgroupMode

	// mu serialises the relaying of events and guards what follows: the
	// library relays one event at a time anyway, and the states decide
	// which events a pod or container still gets (each exactly once, in
	// order, however its exit and a CRI call race).
	mu   sync.Mutex
	pods map[string]podState
	ctrs map[string]ctrState

	// domain is the runtime, set by Start. Read without mu: a plugin may
	// ask for updates while it handles an event mu is held for.
	domain atomic.Pointer[Domain]
}

type podState int

const (
	podRunning podState = iota + 1
	podStopped
)

type ctrState int

const (
	ctrCreated ctrState = iota + 1
	ctrRunning
	ctrStopped
)

// New prepares NRI as configured; Start starts it.
func New(o Options) (*NRI, error) {
	n := &NRI{
		log:      o.Log,
		socket:   o.Config.SocketPath,
		oomFloor: host.OOMScoreAdjFloor(),
		cgroups:  host.Cgroups(),
		pods:     map[string]podState{},
		ctrs:     map[string]ctrState{},
	}
	// The library logs through one package-level logger: the last NRI's.
	libLog.Store(n.log)
	setLibLog.Do(func() { nrilog.Set(logger{}) })
	// The library's timeouts are package-level too; one NRI per process.
	adaptation.SetPluginRegistrationTimeout(o.Config.PluginRegistrationTimeout.Duration)
	adaptation.SetPluginRequestTimeout(o.Config.PluginRequestTimeout.Duration)
	opts := []adaptation.Option{
		adaptation.WithSocketPath(o.Config.SocketPath),
		adaptation.WithPluginPath(o.Config.PluginPath),
		adaptation.WithPluginConfigPath(o.Config.PluginConfigPath),
	}
	a, err := adaptation.New("berth", o.Version, n.synchronize, n.updateFromPlugin, opts...)
	if err != nil {
		return nil, fmt.Errorf("NRI: %w", err)
	}
	n.a = a
	return n, nil
}

// Start begins relaying events to plugins: it launches the pre-installed
// plugins and accepts connections on the socket. d is the runtime, which
// must have recovered its pods and containers: plugins are synchronised
// with them.
func (n *NRI) Start(d Domain) error {
	n.mu.Lock()
	// What plugins will be told of at their synchronisation is what they
	// get the later events of.
	for _, p := range d.Pods() {
		n.pods[p.ID] = podRunning
		if !p.Ready {
			n.pods[p.ID] = podStopped
		}
	}
	for _, c := range d.Containers() {
		n.ctrs[c.ID] = ctrCreated
		if c.State == runtimeapi.ContainerState_CONTAINER_RUNNING {
			n.ctrs[c.ID] = ctrRunning
		}
	}
	n.mu.Unlock()
	n.domain.Store(&d)
	// The library listens before berth can chmod the socket: its directory
	// keeps others out meanwhile (/var/run/nri by default; a directory of
	// berth's choosing is made root-only, a shared one is the admin's).
	dir := filepath.Dir(n.socket)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("NRI socket directory: %w", err)
	}
	if filepath.Base(dir) == "nri" {
		if err := os.Chmod(dir, 0o700); err != nil { //nolint:gosec // a directory: root may search it, nobody else
			return fmt.Errorf("NRI socket directory: %w", err)
		}
	}
	if err := n.a.Start(); err != nil {
		return fmt.Errorf("start NRI: %w", err)
	}
	// Whoever connects can change every container: root only (the
	// library leaves the socket to the umask).
	if err := os.Chmod(n.socket, 0o600); err != nil {
		n.a.Stop()
		return fmt.Errorf("NRI socket: %w", err)
	}
	n.log.Info("NRI started", "socket", n.socket)
	return nil
}

// Stop disconnects the plugins and stops launched ones.
func (n *NRI) Stop() {
	n.a.Stop()
	_ = os.Remove(n.socket)
}

// Enabled is true: a node without NRI has no *NRI.
func (n *NRI) Enabled() bool { return true }

// BlockSync keeps plugins from being synchronised until unblock is
// called. A CRI call that adds or changes a pod or container holds it
// from before it tells plugins until the runtime lists the change, so a
// plugin connecting meanwhile learns of it exactly one way: in its
// synchronisation or by the event. Held at most once per call chain (a
// second hold waits for a synchronisation waiting for the first).
func (n *NRI) BlockSync() (unblock func()) {
	return n.a.BlockPluginSync().Unblock
}

// The library's log lines go to the last NRI's logger. Its logger is
// package-level and set once: setting it again races with its
// goroutines, which log.
var (
	libLog    atomic.Pointer[slog.Logger]
	setLibLog sync.Once
)

// logger hands the library's log lines to slog.
type logger struct{}

func (logger) Debugf(ctx context.Context, format string, args ...any) {
	libLog.Load().DebugContext(ctx, fmt.Sprintf(format, args...))
}

func (logger) Infof(ctx context.Context, format string, args ...any) {
	libLog.Load().InfoContext(ctx, fmt.Sprintf(format, args...))
}

func (logger) Warnf(ctx context.Context, format string, args ...any) {
	libLog.Load().WarnContext(ctx, fmt.Sprintf(format, args...))
}

func (logger) Errorf(ctx context.Context, format string, args ...any) {
	libLog.Load().ErrorContext(ctx, fmt.Sprintf(format, args...))
}
