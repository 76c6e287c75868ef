// Package pod runs pod sandboxes and their containers: it ties together
// the handlers' OCI runtimes, the per-pod shims, CNI networking, the image
// store's layers and the metadata store.
package pod

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/spec"
	"github.com/berthrt/berth/runtime/store"
)

// Images is what the manager needs of the image store.
type Images interface {
	Get(ref string) (*image.Image, error)
	Pull(ctx context.Context, ref string, auth *image.Auth) (*image.Image, error)
	Config(id string) (*v1.ConfigFile, error)
	Lease(owner, id string) ([]string, error)
	Release(owner string) error
}

// Network is what the manager needs of CNI.
type Network interface {
	Status() error
	Setup(ctx context.Context, p network.Pod) (network.Attachment, error)
	Teardown(ctx context.Context, p network.Pod) error
}

// Options wires a Manager.
type Options struct {
	Config   *config.Config
	DB       *store.DB
	Images   Images
	Handlers *oci.Handlers
	CNI      Network
	Log      *slog.Logger
	// ShimBinary is berth-shim.
	ShimBinary string
	LogLevel   string
	// LSM is what the node's AppArmor and SELinux let berth apply (none
	// when zero, as in unit tests).
	LSM spec.LSM
	// NRI relays events to NRI plugins; nil when NRI is off.
	NRI NRI
}

// Manager owns every pod and container.
type Manager struct {
	cfg      *config.Config
	db       *store.DB
	images   Images
	handlers handlerSet
	shims    shimLauncher
	mounts   mounter
	ns       namespaces
	cgroups  podCgroups
	slices   podSlices
	cdi      cdiInjector
	nri      NRI
	cni      Network
	log      *slog.Logger
	shimBin  string
	logLevel string
	host     spec.Host
	oomFloor int

	stats  statsCache
	events bus

	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container
	names      map[string]string // reserved name -> id
}

// New returns a Manager and recovers the pods an earlier berthd left.
func New(ctx context.Context, opts Options) (*Manager, error) {
	return newManager(ctx, opts, deps{})
}

// newManager is New with some of what the manager drives replaced (by
// fakes, in tests).
func newManager(ctx context.Context, opts Options, d deps) (*Manager, error) {
	m := &Manager{
		cfg:        opts.Config,
		db:         opts.DB,
		images:     opts.Images,
		cni:        opts.CNI,
		log:        opts.Log,
		shimBin:    opts.ShimBinary,
		logLevel:   opts.LogLevel,
		oomFloor:   host.OOMScoreAdjFloor(),
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
		names:      map[string]string{},
	}
	if m.logLevel == "" {
		m.logLevel = "info"
	}
	m.host = spec.Host{CgroupDriver: m.cfg.CgroupDriver, CgroupMode: host.Cgroups(), OOMFloor: m.oomFloor, Bounding: host.BoundingSet(), LSM: opts.LSM,
		DeviceOwnershipFromSecurityContext: m.cfg.Security.DeviceOwnershipFromSecurityContext}
	d = d.withDefaults(opts, m.cgroupReader())
	m.handlers, m.shims, m.mounts, m.ns, m.cgroups = d.handlers, d.shims, d.mounts, d.ns, d.cgroups
	m.cdi = d.cdi
	m.slices = d.slices
	m.nri = d.nri
	// Runtimes' own state (their --root) is under state/runtime: nothing
	// a pod's root passes through (see SearchableDir).
	for _, d := range []string{m.ctrRootDir(), m.netnsDir(), m.shimSockDir(), filepath.Join(m.cfg.State, "runtime")} {
		if err := PrivateDir(d); err != nil {
			return nil, err
		}
	}
	// Bundles are below these: see SearchableDir.
	for _, d := range []string{m.cfg.State, m.podsDir(), m.ctrStateDir()} {
		if err := SearchableDir(d); err != nil {
			return nil, err
		}
	}
	if err := m.recover(ctx); err != nil {
		return nil, fmt.Errorf("recover pods: %w", err)
	}
	return m, nil
}

func (m *Manager) podsDir() string         { return filepath.Join(m.cfg.State, "pods") }
func (m *Manager) ctrStateDir() string     { return filepath.Join(m.cfg.State, "containers") }
func (m *Manager) ctrRootDir() string      { return filepath.Join(m.cfg.Root, "containers") }
func (m *Manager) netnsDir() string        { return filepath.Join(m.cfg.State, "netns") }
func (m *Manager) shimSockDir() string     { return filepath.Join(m.cfg.State, "shim") }
func (m *Manager) podDir(id string) string { return filepath.Join(m.podsDir(), id) }

// shimSocket is short: unix socket paths are limited to 108 bytes.
func (m *Manager) shimSocket(id string) string {
	return filepath.Join(m.shimSockDir(), id[:16]+".sock")
}

const (
	bucketSandboxes  = "sandboxes"
	bucketContainers = "containers"
)

// Lifecycle states as stored. "creating" marks work a crash may have cut
// short; recovery rolls it back.
const (
	stateCreating = "creating"
	stateReady    = "ready"
	stateNotReady = "notready"
	stateCreated  = "created"
	stateRunning  = "running"
	stateExited   = "exited"
)

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// reserve claims a unique name for id.
func (m *Manager) reserve(name, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if other, ok := m.names[name]; ok && other != id {
		return errdefs.AlreadyExists("name %q is reserved for %s", name, other)
	}
	m.names[name] = id
	return nil
}

// reserveName reserves name for id until u runs.
func (m *Manager) reserveName(u *undo, name, id string) error {
	if err := m.reserve(name, id); err != nil {
		return err
	}
	u.add(func() { m.releaseName(name, id) })
	return nil
}

func (m *Manager) releaseName(name, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.names[name] == id {
		delete(m.names, name)
	}
}

// resolveID finds the one key of ids that is id or starts with it.
func resolveID[T any](ids map[string]T, id, kind string) (T, error) {
	var zero T
	if id == "" {
		return zero, errdefs.InvalidArgument("%s ID is required", kind)
	}
	if v, ok := ids[id]; ok {
		return v, nil
	}
	var found []string
	for k := range ids {
		if strings.HasPrefix(k, id) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return zero, errdefs.NotFound("%s %q", kind, id)
	case 1:
		return ids[found[0]], nil
	}
	sort.Strings(found)
	return zero, errdefs.InvalidArgument("%s ID prefix %q matches %d %ss (%s, %s, ...): give more of it", kind, id, len(found), kind, short(found[0]), short(found[1]))
}

func (m *Manager) getSandbox(id string) (*sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return resolveID(m.sandboxes, id, "pod sandbox")
}

func (m *Manager) getContainer(id string) (*container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return resolveID(m.containers, id, "container")
}

// podContainers lists the containers of sandbox id.
func (m *Manager) podContainers(id string) []*container {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*container
	for _, c := range m.containers {
		if c.rec.SandboxID == id {
			out = append(out, c)
		}
	}
	return out
}

func nowNano() int64 { return time.Now().UnixNano() }

// short is the 12-character form of an ID, as crictl prints them.
func short(id string) string { return id[:min(12, len(id))] }

// matchLabels reports whether labels hold every pair of selector.
func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// specTarget is what spec generation needs of a handler.
func specTarget(h *oci.Handler) spec.Target {
	rt := spec.Target{
		Kind: string(h.Kind), OCIVersion: h.Info.SpecVersion, Annotations: h.Annotations,
		PodAnnotations: h.PodAnnotations, ContainerAnnotations: h.ContainerAnnotations,
	}
	if h.Info.Features != nil {
		for _, o := range h.Info.Features.MountOptions {
			if o == "rro" {
				rt.RRO = true
			}
		}
	}
	return rt
}

// Inventory counts pods and containers per handler (containers also per
// CRI state) and the shims berthd is connected to.
func (m *Manager) Inventory() (pods map[string]int, containers map[string]map[string]int, shims int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pods, containers = map[string]int{}, map[string]map[string]int{}
	for _, sb := range m.sandboxes {
		rec := sb.snapshot()
		pods[rec.Handler]++
		if c, _ := sb.client(); c != nil {
			shims++
		}
	}
	for _, c := range m.containers {
		rec := c.snapshot()
		h := ""
		if sb := m.sandboxes[rec.SandboxID]; sb != nil {
			h = sb.rec.Handler
		}
		if containers[h] == nil {
			containers[h] = map[string]int{}
		}
		containers[h][rec.State]++
	}
	return pods, containers, shims
}
