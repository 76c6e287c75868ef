package pod

import (
	"context"
	"fmt"

	"github.com/berthrt/berth/runtime/spec"
)

// With the systemd cgroup driver the OCI runtime makes each container's
// cgroup as a scope through systemd (--systemd-cgroup, podRuntime); berth
// does what the runtime leaves to the caller.

// removePodSlice stops the slice berth named for a pod the kubelet gave
// no cgroup parent (spec.Pod.OwnSlice). systemd made it with the pod's
// first container's scope and keeps it after the last one: without this
// the pod would stay listed in systemd.
func (m *Manager) removePodSlice(ctx context.Context, sb *sandbox) error {
	pod := &spec.Pod{ID: sb.rec.ID, Config: sb.cfg}
	if !pod.OwnSlice(m.host.CgroupDriver) {
		return nil
	}
	return m.slices.StopSlice(context.WithoutCancel(ctx), pod.CgroupParent(m.host.CgroupDriver))
}

// syncScope gives systemd the limits the runtime wrote into container
// id's cgroup, where the runtime does not (oci.Traits.SystemdProperties):
// systemd would otherwise lift them at its next daemon-reload.
func (m *Manager) syncScope(ctx context.Context, sb *sandbox, id string) error {
	if m.host.CgroupDriver != "systemd" || sb.handler.Traits().SystemdProperties || sb.handler.Traits().Sandboxed {
		return nil
	}
	scope := "berth-" + id + ".scope" // cgroupsPath's "slice:berth:id" (spec.CgroupsPath)
	if err := m.slices.SyncScope(ctx, scope, m.cgroupReader().Dir(m.containerCgroupsPath(sb, id))); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return nil
}
