package pod

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/spec"
)

// Where the CRI verbs tell NRI plugins (nri.go): one call each, so that
// the verbs stay readable and NRI off costs nothing but the check.

// nriRunPod asks plugins about pod sb, set up and not yet listed. The
// returned unblock (set even on error) ends the hold on plugin
// synchronisation: call it once the pod is listed. u tells plugins the pod
// is gone if it fails later.
func (m *Manager) nriRunPod(ctx context.Context, sb *sandbox, u *undo) (unblock func(), err error) {
	unblock = m.nri.BlockSync()
	if !m.nri.Enabled() {
		return unblock, nil
	}
	if err := m.nri.RunPodSandbox(ctx, m.nriPod(sb)); err != nil {
		return unblock, err
	}
	u.add(func() { m.nri.RemovePodSandbox(context.WithoutCancel(ctx), m.nriPod(sb)) })
	return unblock, nil
}

// nriStopPod tells plugins pod sb stopped: its containers are, and its
// network is still there.
func (m *Manager) nriStopPod(ctx context.Context, sb *sandbox) {
	if m.nri.Enabled() {
		m.nri.StopPodSandbox(ctx, m.nriPod(sb))
	}
}

// nriRemovePod tells plugins pod sb is gone.
func (m *Manager) nriRemovePod(ctx context.Context, sb *sandbox) {
	if m.nri.Enabled() {
		m.nri.RemovePodSandbox(ctx, m.nriPod(sb))
	}
}

// nriUpdatePod asks plugins about a pod's new pod-level resources (an
// in-place resize) before they are applied.
func (m *Manager) nriUpdatePod(ctx context.Context, sb *sandbox, overhead, resources *runtimeapi.LinuxContainerResources) error {
	if !m.nri.Enabled() {
		return nil
	}
	return m.nri.UpdatePodSandbox(ctx, m.nriPod(sb), overhead, resources)
}

// nriPodUpdated tells plugins a pod's resources changed.
func (m *Manager) nriPodUpdated(ctx context.Context, sb *sandbox) {
	if m.nri.Enabled() {
		m.nri.PostUpdatePodSandbox(ctx, m.nriPod(sb))
	}
}

// nriCreateContainer asks plugins about container c of pod sb, before it
// is created, and applies their adjustments to its spec s. unblock (set
// even on error) ends the hold on plugin synchronisation once c is
// listed; u tells plugins c is gone if its creation fails later.
func (m *Manager) nriCreateContainer(ctx context.Context, sb *sandbox, c *container, s *specs.Spec, u *undo) (unblock func(), err error) {
	unblock = m.nri.BlockSync()
	if !m.nri.Enabled() {
		return unblock, nil
	}
	p := m.nriPod(sb)
	if err := m.nri.CreateContainer(ctx, p, m.nriContainer(c, s), s, m.cdi.Inject); err != nil {
		return unblock, err
	}
	u.add(func() { m.nri.RemoveContainer(context.WithoutCancel(ctx), p, m.nriContainer(c, s)) })
	return unblock, nil
}

// nriContainerCreated tells plugins container c (of spec s) was created.
func (m *Manager) nriContainerCreated(ctx context.Context, sb *sandbox, c *container, s *specs.Spec) {
	if m.nri.Enabled() {
		m.nri.PostCreateContainer(ctx, m.nriPod(sb), m.nriContainer(c, s))
	}
}

// nriStart asks plugins before container c starts.
func (m *Manager) nriStart(ctx context.Context, c *container) error {
	if p, ctr, ok := m.nriFor(c); ok {
		return m.nri.StartContainer(ctx, p, ctr)
	}
	return nil
}

// nriStarted tells plugins container c started.
func (m *Manager) nriStarted(ctx context.Context, c *container) {
	if p, ctr, ok := m.nriFor(c); ok {
		m.nri.PostStartContainer(ctx, p, ctr)
	}
}

// nriStopped tells plugins container c stopped (once: its exit may have).
func (m *Manager) nriStopped(ctx context.Context, c *container) {
	if p, ctr, ok := m.nriFor(c); ok {
		m.nri.StopContainer(ctx, p, ctr)
	}
}

// nriExited tells plugins, in the background, that container c exited.
func (m *Manager) nriExited(c *container) {
	if p, ctr, ok := m.nriFor(c); ok {
		m.nri.ContainerExited(p, ctr)
	}
}

// nriRemoval describes container c to plugins while its spec is still
// there; the returned func tells them it is gone.
func (m *Manager) nriRemoval(c *container) (removed func(ctx context.Context)) {
	p, ctr, ok := m.nriFor(c)
	return func(ctx context.Context) {
		if ok {
			m.nri.RemoveContainer(ctx, p, ctr)
		}
	}
}

// nriUpdate asks plugins about new resources r for container c and
// returns those to apply.
func (m *Manager) nriUpdate(ctx context.Context, c *container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	p, ctr, ok := m.nriFor(c)
	if !ok {
		return r, nil
	}
	r, err := m.nri.UpdateContainer(ctx, p, ctr, r)
	if err != nil {
		return nil, err
	}
	// What a plugin added is checked as the request was.
	return r, spec.CheckResources(m.host, r)
}

// nriUpdated tells plugins a live container c's resources changed (an
// exited one's are only recorded).
func (m *Manager) nriUpdated(ctx context.Context, c *container) {
	if c.snapshot().State == stateExited {
		return
	}
	if p, ctr, ok := m.nriFor(c); ok {
		m.nri.PostUpdateContainer(ctx, p, ctr)
	}
}
