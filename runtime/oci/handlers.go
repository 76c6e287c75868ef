package oci

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
)

// Handler is a configured RuntimeClass handler and what its runtime said
// about itself when berthd started.
type Handler struct {
	*Runtime
	Annotations map[string]string
	Info        *Info
	// PodAnnotations and ContainerAnnotations are the patterns of the CRI
	// annotations passed to the runtime (config.Handler's).
	PodAnnotations, ContainerAnnotations []string
	// ProbeErr is why the runtime could not be asked; such a handler is
	// listed but refuses pods.
	ProbeErr error
}

// Handlers are all configured handlers. Handlers may be added while
// berthd runs (SIGHUP); none is changed or removed.
type Handlers struct {
	mu     sync.RWMutex
	byName map[string]*Handler
	def    string
}

// NewHandlers probes every configured runtime, concurrently.
func NewHandlers(ctx context.Context, c *config.Config) *Handlers {
	h := &Handlers{byName: map[string]*Handler{}, def: c.DefaultRuntime}
	var wg sync.WaitGroup
	for name, rc := range c.Runtimes {
		hd := newHandler(name, rc)
		h.byName[name] = hd
		wg.Go(func() { hd.Info, hd.ProbeErr = hd.Probe(ctx) })
	}
	wg.Wait()
	return h
}

func newHandler(name string, rc config.Handler) *Handler {
	// The config validated the kind.
	kind, _ := ParseKind(rc.Kind, rc.Path)
	return &Handler{
		Runtime: &Runtime{Name: name, Path: rc.Path, Kind: kind, Root: rc.Root, Args: rc.Args,
			DirectExec: rc.Exec != config.ModeRuntime, DirectStart: rc.Start != config.ModeRuntime},
		Annotations: rc.Annotations, PodAnnotations: rc.PodAnnotations, ContainerAnnotations: rc.ContainerAnnotations,
	}
}

// Add probes and adds a handler that is not configured yet; it returns
// it (with its probe error, if any).
func (h *Handlers) Add(ctx context.Context, name string, rc config.Handler) (*Handler, error) {
	hd := newHandler(name, rc)
	hd.Info, hd.ProbeErr = hd.Probe(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.byName[name]; ok {
		return nil, errdefs.AlreadyExists("runtime handler %q", name)
	}
	h.byName[name] = hd
	return hd, nil
}

// Get returns the handler named name ("" is the default handler).
func (h *Handlers) Get(name string) (*Handler, error) {
	if name == "" {
		name = h.def
	}
	h.mu.RLock()
	hd, ok := h.byName[name]
	h.mu.RUnlock()
	if !ok {
		return nil, errdefs.InvalidArgument("unknown runtime handler %q (configured: %s)", name, strings.Join(h.Names(), ", "))
	}
	if hd.ProbeErr != nil {
		return nil, errdefs.FailedPrecondition("runtime handler %q is unusable: %v", name, hd.ProbeErr)
	}
	return hd, nil
}

// Default is the name of the default handler.
func (h *Handlers) Default() string { return h.def }

// Names lists the handler names, sorted.
func (h *Handlers) Names() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	names := make([]string, 0, len(h.byName))
	for n := range h.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns every handler, sorted by name.
func (h *Handlers) All() []*Handler {
	names := h.Names()
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Handler, 0, len(names))
	for _, n := range names {
		out = append(out, h.byName[n])
	}
	return out
}
