package nri

import (
	"context"
	"fmt"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/logctx"
)

// The events. Those that gate a CRI call (a pod's run and update, a
// container's create, start and update) return the plugins' refusal,
// which fails the call. The others tell plugins what happened: a plugin's
// failure is logged, and the call goes on. Each pod and container gets
// its stop and remove events once, stop before remove; the state maps
// say which it has had.

// RunPodSandbox tells plugins of a pod set up but not yet listed. A
// refusal fails the pod, and plugins are told it stopped and is gone.
func (n *NRI) RunPodSandbox(ctx context.Context, p Pod) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	pod := toPod(p)
	if err := n.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		undo := context.WithoutCancel(ctx)
		n.logged(undo, "StopPodSandbox", p.ID, n.a.StopPodSandbox(undo, &api.StopPodSandboxRequest{Pod: pod}))
		n.logged(undo, "RemovePodSandbox", p.ID, n.a.RemovePodSandbox(undo, &api.RemovePodSandboxRequest{Pod: pod}))
		return fmt.Errorf("NRI RunPodSandbox: %w", err)
	}
	n.pods[p.ID] = podRunning
	return nil
}

// UpdatePodSandbox asks plugins about new pod-level resources (in-place
// pod resize) before they are applied; PostUpdatePodSandbox tells them
// they were.
func (n *NRI) UpdatePodSandbox(ctx context.Context, p Pod, overhead, resources *runtimeapi.LinuxContainerResources) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err := n.a.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{
		Pod: toPod(p), OverheadLinuxResources: fromCRIResources(overhead), LinuxResources: fromCRIResources(resources),
	})
	if err != nil {
		return fmt.Errorf("NRI UpdatePodSandbox: %w", err)
	}
	return nil
}

// PostUpdatePodSandbox: see UpdatePodSandbox.
func (n *NRI) PostUpdatePodSandbox(ctx context.Context, p Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	n.logged(ctx, "PostUpdatePodSandbox", p.ID, n.a.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: toPod(p)}))
}

// StopPodSandbox tells plugins a pod stopped (its containers first).
func (n *NRI) StopPodSandbox(ctx context.Context, p Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopPod(context.WithoutCancel(ctx), p)
}

func (n *NRI) stopPod(ctx context.Context, p Pod) {
	if n.pods[p.ID] != podRunning {
		return
	}
	n.pods[p.ID] = podStopped
	n.logged(ctx, "StopPodSandbox", p.ID, n.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: toPod(p)}))
}

// RemovePodSandbox tells plugins a pod is gone (stopped first, if they
// were not told).
func (n *NRI) RemovePodSandbox(ctx context.Context, p Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, known := n.pods[p.ID]; !known {
		return
	}
	ctx = context.WithoutCancel(ctx)
	n.stopPod(ctx, p)
	delete(n.pods, p.ID)
	n.logged(ctx, "RemovePodSandbox", p.ID, n.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: toPod(p)}))
}

// CreateContainer asks plugins about a container before it is created and
// applies their adjustments to its spec s (c.Spec is s as berth made
// it). inject resolves the CDI devices they add. On an error plugins are
// told the container stopped and is gone; on success the caller tells
// them with RemoveContainer if the creation fails later.
func (n *NRI) CreateContainer(ctx context.Context, p Pod, c Container, s *specs.Spec, inject CDIInjector) error {
	c.Spec = s
	pod, ctr := toPod(p), toContainer(c)
	n.mu.Lock()
	rsp, err := n.a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
	if err == nil {
		n.ctrs[c.ID] = ctrCreated
	}
	n.mu.Unlock()
	if err != nil {
		n.forgetContainer(ctx, p, c)
		return fmt.Errorf("NRI CreateContainer: %w", err)
	}
	// Other containers first: a plugin making room for this one (fewer
	// CPUs for the others) expects them shrunk before it starts.
	n.evict(ctx, rsp.GetEvict())
	n.apply(ctx, rsp.GetUpdate())
	if err := n.adjust(s, rsp.GetAdjust(), inject); err != nil {
		n.forgetContainer(ctx, p, c)
		return err
	}
	return nil
}

// forgetContainer tells plugins that a container they were asked about
// will not be: stopped and removed.
func (n *NRI) forgetContainer(ctx context.Context, p Pod, c Container) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	pod, ctr := toPod(p), toContainer(c)
	delete(n.ctrs, c.ID)
	_, err := n.a.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
	n.logged(ctx, "StopContainer", c.ID, err)
	n.logged(ctx, "RemoveContainer", c.ID, n.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr}))
}

// PostCreateContainer tells plugins a container was created.
func (n *NRI) PostCreateContainer(ctx context.Context, p Pod, c Container) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, known := n.ctrs[c.ID]; !known {
		return
	}
	ctx = context.WithoutCancel(ctx)
	n.logged(ctx, "PostCreateContainer", c.ID, n.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: toPod(p), Container: toContainer(c)}))
}

// StartContainer asks plugins before a container starts; a refusal fails
// the start.
func (n *NRI) StartContainer(ctx context.Context, p Pod, c Container) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctrs[c.ID] != ctrCreated {
		return nil
	}
	// Running even if a plugin refuses: the stop event is owed either way.
	n.ctrs[c.ID] = ctrRunning
	if err := n.a.StartContainer(ctx, &api.StartContainerRequest{Pod: toPod(p), Container: toContainer(c)}); err != nil {
		return fmt.Errorf("NRI StartContainer: %w", err)
	}
	return nil
}

// PostStartContainer tells plugins a container started.
func (n *NRI) PostStartContainer(ctx context.Context, p Pod, c Container) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctrs[c.ID] != ctrRunning {
		return
	}
	ctx = context.WithoutCancel(ctx)
	n.logged(ctx, "PostStartContainer", c.ID, n.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: toPod(p), Container: toContainer(c)}))
}

// UpdateContainer asks plugins about new resources r for a container and
// returns the resources to apply: r as they changed it.
func (n *NRI) UpdateContainer(ctx context.Context, p Pod, c Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	n.mu.Lock()
	rsp, err := n.a.UpdateContainer(ctx, &api.UpdateContainerRequest{Pod: toPod(p), Container: toContainer(c), LinuxResources: fromCRIResources(r)})
	n.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("NRI UpdateContainer: %w", err)
	}
	n.evict(ctx, rsp.GetEvict())
	var own *api.ContainerUpdate
	var others []*api.ContainerUpdate
	for _, u := range rsp.GetUpdate() {
		switch {
		case u == nil:
		case u.GetContainerId() == c.ID:
			own = u
		default:
			others = append(others, u)
		}
	}
	n.apply(ctx, others)
	return mergeResources(r, own.GetLinux().GetResources())
}

// PostUpdateContainer tells plugins a container's resources changed.
func (n *NRI) PostUpdateContainer(ctx context.Context, p Pod, c Container) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	n.logged(ctx, "PostUpdateContainer", c.ID, n.a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: toPod(p), Container: toContainer(c)}))
}

// StopContainer tells plugins a container stopped.
func (n *NRI) StopContainer(ctx context.Context, p Pod, c Container) {
	ctx = context.WithoutCancel(ctx)
	n.mu.Lock()
	updates := n.stopContainer(ctx, p, c)
	n.mu.Unlock()
	n.apply(ctx, updates)
}

// ContainerExited tells plugins, in the background, that a container
// exited by itself: the exit is recorded on the path that reports it,
// which must not wait for plugins.
func (n *NRI) ContainerExited(p Pod, c Container) {
	go n.StopContainer(context.Background(), p, c)
}

// stopContainer relays a container's stop once and returns the updates
// plugins ask for then (the container's resources freed for others).
func (n *NRI) stopContainer(ctx context.Context, p Pod, c Container) []*api.ContainerUpdate {
	if st := n.ctrs[c.ID]; st != ctrCreated && st != ctrRunning {
		return nil
	}
	n.ctrs[c.ID] = ctrStopped
	rsp, err := n.a.StopContainer(ctx, &api.StopContainerRequest{Pod: toPod(p), Container: toContainer(c)})
	n.logged(ctx, "StopContainer", c.ID, err)
	return rsp.GetUpdate()
}

// RemoveContainer tells plugins a container is gone (stopped first, if
// they were not told).
func (n *NRI) RemoveContainer(ctx context.Context, p Pod, c Container) {
	ctx = context.WithoutCancel(ctx)
	n.mu.Lock()
	if _, known := n.ctrs[c.ID]; !known {
		n.mu.Unlock()
		return
	}
	updates := n.stopContainer(ctx, p, c)
	delete(n.ctrs, c.ID)
	n.logged(ctx, "RemoveContainer", c.ID, n.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: toPod(p), Container: toContainer(c)}))
	n.mu.Unlock()
	n.apply(ctx, updates)
}

// logged logs a plugin's failure to take an event that cannot fail.
func (n *NRI) logged(ctx context.Context, event, id string, err error) {
	if err != nil {
		logctx.From(ctx, n.log).Warn("NRI plugin failed an event", "event", event, "id", id, "err", err)
	}
}
