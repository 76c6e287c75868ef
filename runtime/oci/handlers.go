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

// Handlers are all configured handlers.
type Handlers struct {
	byName map[string]*Handler
	def    string
}

// NewHandlers probes every configured runtime, concurrently.
func NewHandlers(ctx context.Context, c *config.Config) *Handlers {
	h := &Handlers{byName: map[string]*Handler{}, def: c.DefaultRuntime}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for name, rc := range c.Runtimes {
		// The config validated the kind.
		kind, _ := ParseKind(rc.Kind, rc.Path)
		hd := &Handler{
			Runtime: &Runtime{Name: name, Path: rc.Path, Kind: kind, Root: rc.Root, Args: rc.Args,
				DirectExec: rc.Exec != config.ModeRuntime, DirectStart: rc.Start != config.ModeRuntime},
			Annotations: rc.Annotations, PodAnnotations: rc.PodAnnotations, ContainerAnnotations: rc.ContainerAnnotations,
		}
		h.byName[name] = hd
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := hd.Probe(ctx)
			mu.Lock()
			hd.Info, hd.ProbeErr = info, err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return h
}

// Get returns the handler named name ("" is the default handler).
func (h *Handlers) Get(name string) (*Handler, error) {
	if name == "" {
		name = h.def
	}
	hd, ok := h.byName[name]
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
	names := make([]string, 0, len(h.byName))
	for n := range h.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All returns every handler, sorted by name.
func (h *Handlers) All() []*Handler {
	var out []*Handler
	for _, n := range h.Names() {
		out = append(out, h.byName[n])
	}
	return out
}
