package pod

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/nri"
	"github.com/berthrt/berth/runtime/spec"
)

// nriDomain is the manager as NRI plugins reach it: what they are
// synchronised with, and what they may change.
type nriDomain struct{ m *Manager }

// NRIDomain is the manager for runtime/nri (nri.Domain).
func (m *Manager) NRIDomain() nri.Domain { return nriDomain{m} }

// Pods lists the pods set up; one being created is not listed yet (its
// RunPodSandbox event tells plugins).
func (d nriDomain) Pods() []nri.Pod {
	d.m.mu.Lock()
	sbs := make([]*sandbox, 0, len(d.m.sandboxes))
	for _, sb := range d.m.sandboxes {
		sbs = append(sbs, sb)
	}
	d.m.mu.Unlock()
	out := make([]nri.Pod, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, d.m.nriPod(sb))
	}
	return out
}

// Containers lists the containers that have not exited, with their specs.
func (d nriDomain) Containers() []nri.Container {
	d.m.mu.Lock()
	var cs []*container
	for _, c := range d.m.containers {
		cs = append(cs, c)
	}
	d.m.mu.Unlock()
	var out []nri.Container
	for _, c := range cs {
		if st := c.snapshot().State; st == stateCreated || st == stateRunning {
			out = append(out, d.m.nriContainer(c, nil))
		}
	}
	return out
}

// UpdateContainer applies a plugin's update through the CRI update path,
// without asking plugins again (one of them asked).
func (d nriDomain) UpdateContainer(ctx context.Context, id string, change func(*runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)) error {
	c, err := d.m.getContainer(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	rec := c.snapshot()
	if c.isRemoved() || (rec.State != stateCreated && rec.State != stateRunning) {
		return errdefs.FailedPrecondition("container %s is %s", rec.ID, rec.State)
	}
	cur := &runtimeapi.LinuxContainerResources{}
	if len(rec.Resources) > 0 {
		if err := proto.Unmarshal(rec.Resources, cur); err != nil {
			return err
		}
	}
	r, err := change(cur)
	if err != nil {
		return err
	}
	if err := d.m.applyResources(ctx, c, r); err != nil {
		return err
	}
	logctx.From(ctx, d.m.log).Info("container resources updated by an NRI plugin", "id", rec.ID)
	return nil
}

// EvictContainer stops a container a plugin wants gone, at once.
func (d nriDomain) EvictContainer(ctx context.Context, id, reason string) error {
	c, err := d.m.getContainer(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if c.isRemoved() {
		return nil
	}
	d.m.log.Info("evicting container for an NRI plugin", "id", c.rec.ID, "reason", reason)
	if err := d.m.stopContainer(ctx, c, 0); err != nil {
		return err
	}
	d.m.nriStopped(ctx, c)
	return nil
}

// applyResources changes a live container's resources and records them,
// as UpdateContainerResources does (c.op held).
func (m *Manager) applyResources(ctx context.Context, c *container, r *runtimeapi.LinuxContainerResources) error {
	if err := spec.CheckResources(m.host, r); err != nil {
		return err
	}
	if err := m.updateLive(ctx, c, r); err != nil {
		return err
	}
	id := c.snapshot().ID
	if err := m.updateSpecResources(id, r); err != nil {
		return fmt.Errorf("record the resources of container %s: %w", id, err)
	}
	saved, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.rec.Resources = saved
	c.mu.Unlock()
	return m.saveContainer(c)
}
