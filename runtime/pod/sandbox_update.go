package pod

import (
	"context"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
)

// podResources are a pod's pod-level overhead and resources as the last
// UpdatePodSandboxResources set them, LinuxContainerResources protobuf
// (empty for none).
type podResources struct {
	Overhead  []byte `json:"overhead,omitempty"`
	Resources []byte `json:"resources,omitempty"`
}

// podResources are the pod's pod-level overhead and resources: the last
// update's, else (never updated, or a record older than updates) the
// config's.
func (sb *sandbox) podResources() (overhead, resources *runtimeapi.LinuxContainerResources, err error) {
	sb.mu.Lock()
	resized := sb.rec.Resized
	sb.mu.Unlock()
	if resized == nil {
		return sb.cfg.GetLinux().GetOverhead(), sb.cfg.GetLinux().GetResources(), nil
	}
	overhead, resources = &runtimeapi.LinuxContainerResources{}, &runtimeapi.LinuxContainerResources{}
	if err := proto.Unmarshal(resized.Overhead, overhead); err != nil {
		return nil, nil, err
	}
	if err := proto.Unmarshal(resized.Resources, resources); err != nil {
		return nil, nil, err
	}
	return overhead, resources, nil
}

// UpdatePodSandboxResources is an in-place pod resize: the kubelet has
// resized the pod's cgroup (when it made it) and tells the runtime the
// pod's new overhead and resources, both replaced (nil is none). berth
// records them, sizes the pod cgroup it made itself and, for a pod that
// runs inside its sandbox container (gVisor), that container. A pod that
// is no longer ready has nothing running to size: it is only recorded.
func (m *Manager) UpdatePodSandboxResources(ctx context.Context, id string, overhead, resources *runtimeapi.LinuxContainerResources) error {
	unblock := m.nri.BlockSync()
	defer unblock()
	// Stats after the update read the new limits.
	defer m.dropRecentSamples()
	sb, err := m.getSandbox(id)
	if err != nil {
		return err
	}
	sb.op.Lock()
	defer sb.op.Unlock()
	if sb.isRemoved() {
		return errdefs.NotFound("pod sandbox %q", id)
	}
	p, err := m.planPodSizing(sb.handler, sb.cfg, overhead, resources)
	if err != nil {
		return err
	}
	if err := m.nriUpdatePod(ctx, sb, overhead, resources); err != nil {
		return err
	}
	if sb.snapshot().State == stateReady {
		prevO, prevR, err := sb.podResources()
		if err != nil {
			return err
		}
		// Only orders the writes: a total the pod was once sized to is valid.
		prev, _ := podTotal(prevO, prevR)
		if err := m.sizePod(ctx, sb, p, prev); err != nil {
			return err
		}
	}
	rawO, err := proto.Marshal(overhead)
	if err != nil {
		return err
	}
	rawR, err := proto.Marshal(resources)
	if err != nil {
		return err
	}
	sb.mu.Lock()
	sb.rec.Resized = &podResources{Overhead: rawO, Resources: rawR}
	sb.mu.Unlock()
	if err := m.saveSandbox(sb); err != nil {
		return err
	}
	m.nriPodUpdated(ctx, sb)
	logctx.From(ctx, m.log).Info("pod sandbox resources updated", "id", sb.rec.ID, "ownCgroup", p.own, "sandboxContainer", p.sandbox)
	return nil
}
