package pod

import (
	"context"
	"encoding/json"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStatus reports a pod; verbose adds runtime details.
func (m *Manager) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatus, map[string]string, error) {
	sb, err := m.getSandbox(id)
	if err != nil {
		return nil, nil, err
	}
	rec := sb.snapshot()
	st := &runtimeapi.PodSandboxStatus{
		Id:             rec.ID,
		Metadata:       sb.cfg.GetMetadata(),
		State:          criSandboxState(rec.State),
		CreatedAt:      rec.CreatedAt,
		Labels:         sb.cfg.GetLabels(),
		Annotations:    sb.cfg.GetAnnotations(),
		RuntimeHandler: rec.Handler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{
			Options: sb.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions(),
		}},
	}
	if st.Linux.Namespaces.Options == nil {
		st.Linux.Namespaces.Options = &runtimeapi.NamespaceOption{}
	}
	if !hostNetwork(sb.cfg) && len(rec.IPs) > 0 && rec.State == stateReady {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: rec.IPs[0]}
		for _, ip := range rec.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	if !verbose {
		return st, nil, nil
	}
	overhead, resources, err := sb.podResources()
	if err != nil {
		return nil, nil, err
	}
	info, err := json.Marshal(map[string]any{
		"pid": rec.PausePid, "netns": rec.NetNS, "network": rec.Network, "handler": rec.Handler,
		"runtime": sb.handler.Path, "image": rec.ImageID, "shimSocket": m.shimSocket(rec.ID),
		// The pod-level resources as last set, in containerd's shape.
		"overhead": &runtimeapi.ContainerResources{Linux: overhead}, "resources": &runtimeapi.ContainerResources{Linux: resources},
	})
	if err != nil {
		return nil, nil, err
	}
	return st, map[string]string{"info": string(info)}, nil
}

func criSandboxState(s string) runtimeapi.PodSandboxState {
	if s == stateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

// ListPodSandbox lists pods matching filter.
func (m *Manager) ListPodSandbox(ctx context.Context, f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	var out []*runtimeapi.PodSandbox
	m.eachListedSandbox(f, func(sb *sandbox, rec sandboxRecord) {
		out = append(out, sb.listItem(rec))
	})
	return out
}

// eachListedSandbox calls fn with each pod matching f, and its record.
func (m *Manager) eachListedSandbox(f *runtimeapi.PodSandboxFilter, fn func(*sandbox, sandboxRecord)) {
	m.mu.Lock()
	sbs := make([]*sandbox, 0, len(m.sandboxes))
	for _, sb := range m.sandboxes {
		sbs = append(sbs, sb)
	}
	m.mu.Unlock()
	for _, sb := range sbs {
		rec := sb.snapshot()
		if f.GetId() != "" && !strings.HasPrefix(rec.ID, f.GetId()) {
			continue
		}
		if f.GetState() != nil && f.GetState().GetState() != criSandboxState(rec.State) {
			continue
		}
		if !matchLabels(sb.cfg.GetLabels(), f.GetLabelSelector()) {
			continue
		}
		fn(sb, rec)
	}
}

// listItem is the pod as ListPodSandbox lists it; of rec, only State
// changes during a pod's life (listWire relies on it).
func (sb *sandbox) listItem(rec sandboxRecord) *runtimeapi.PodSandbox {
	return &runtimeapi.PodSandbox{
		Id: rec.ID, Metadata: sb.cfg.GetMetadata(), State: criSandboxState(rec.State), CreatedAt: rec.CreatedAt,
		Labels: sb.cfg.GetLabels(), Annotations: sb.cfg.GetAnnotations(), RuntimeHandler: rec.Handler,
	}
}
