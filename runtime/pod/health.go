package pod

import (
	"context"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/runtime/oci"
)

// RuntimeReady is nil when the default handler's runtime answered.
func (m *Manager) RuntimeReady(ctx context.Context) error {
	_, err := m.handlers.Get("")
	return err
}

// NetworkReady is nil when the CNI configuration and its plugins are there.
func (m *Manager) NetworkReady(ctx context.Context) error { return m.cni.Status() }

// Handlers lists every handler with the features its runtime reports; the
// default handler is listed again under the empty name, as the kubelet
// looks it up.
func (m *Manager) Handlers(ctx context.Context) []*runtimeapi.RuntimeHandler {
	var out []*runtimeapi.RuntimeHandler
	for _, h := range m.handlers.All() {
		rh := &runtimeapi.RuntimeHandler{Name: h.Name, Features: handlerFeatures(h)}
		out = append(out, rh)
		if h.Name == m.handlers.Default() {
			out = append([]*runtimeapi.RuntimeHandler{{Name: "", Features: rh.Features}}, out...)
		}
	}
	return out
}

func handlerFeatures(h *oci.Handler) *runtimeapi.RuntimeHandlerFeatures {
	f := &runtimeapi.RuntimeHandlerFeatures{}
	if h.Info == nil || h.Info.Features == nil {
		return f
	}
	feat := h.Info.Features
	f.RecursiveReadOnlyMounts = slices.Contains(feat.MountOptions, "rro")
	if l := feat.Linux; l != nil {
		idmap := l.MountExtensions != nil && l.MountExtensions.IDMap != nil && l.MountExtensions.IDMap.Enabled != nil && *l.MountExtensions.IDMap.Enabled
		f.UserNamespaces = slices.Contains(l.Namespaces, "user") && idmap
	}
	return f
}

// Info is the verbose Status detail: handlers with versions, host facts.
func (m *Manager) Info(ctx context.Context) map[string]any {
	handlers := map[string]any{}
	for _, h := range m.handlers.All() {
		e := map[string]any{"path": h.Path, "root": h.Root, "args": h.Args}
		if h.Info != nil {
			e["version"], e["ociVersion"] = h.Info.Version, h.Info.SpecVersion
		}
		if h.ProbeErr != nil {
			e["error"] = h.ProbeErr.Error()
		}
		handlers[h.Name] = e
	}
	return map[string]any{
		"handlers":       handlers,
		"defaultHandler": m.handlers.Default(),
		"cgroups":        host.Cgroups(),
		"oomScoreAdjMin": m.oomFloor,
		"selinux":        m.host.SELinux,
		"apparmor":       m.host.AppArmor,
	}
}
