package pod

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/nri"
	"github.com/berthrt/berth/runtime/spec"
)

// NRI relays pod and container events to Node Resource Interface plugins
// (*nri.NRI, which documents each event). Options.NRI is nil when NRI is
// off: the manager then uses noNRI, and describes nothing to nobody.
type NRI interface {
	Enabled() bool
	// BlockSync holds plugin synchronisation off until unblock: taken
	// once per CRI call, before any of the manager's locks.
	BlockSync() (unblock func())

	RunPodSandbox(ctx context.Context, p nri.Pod) error
	StopPodSandbox(ctx context.Context, p nri.Pod)
	RemovePodSandbox(ctx context.Context, p nri.Pod)
	UpdatePodSandbox(ctx context.Context, p nri.Pod, overhead, resources *runtimeapi.LinuxContainerResources) error
	PostUpdatePodSandbox(ctx context.Context, p nri.Pod)

	CreateContainer(ctx context.Context, p nri.Pod, c nri.Container, s *specs.Spec, inject nri.CDIInjector) error
	PostCreateContainer(ctx context.Context, p nri.Pod, c nri.Container)
	StartContainer(ctx context.Context, p nri.Pod, c nri.Container) error
	PostStartContainer(ctx context.Context, p nri.Pod, c nri.Container)
	UpdateContainer(ctx context.Context, p nri.Pod, c nri.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error)
	PostUpdateContainer(ctx context.Context, p nri.Pod, c nri.Container)
	StopContainer(ctx context.Context, p nri.Pod, c nri.Container)
	ContainerExited(p nri.Pod, c nri.Container)
	RemoveContainer(ctx context.Context, p nri.Pod, c nri.Container)
}

// noNRI is NRI turned off.
type noNRI struct{}

func (noNRI) Enabled() bool                                { return false }
func (noNRI) BlockSync() func()                            { return func() {} }
func (noNRI) RunPodSandbox(context.Context, nri.Pod) error { return nil }
func (noNRI) StopPodSandbox(context.Context, nri.Pod)      {}
func (noNRI) RemovePodSandbox(context.Context, nri.Pod)    {}
func (noNRI) UpdatePodSandbox(context.Context, nri.Pod, *runtimeapi.LinuxContainerResources, *runtimeapi.LinuxContainerResources) error {
	return nil
}
func (noNRI) PostUpdatePodSandbox(context.Context, nri.Pod) {}
func (noNRI) CreateContainer(context.Context, nri.Pod, nri.Container, *specs.Spec, nri.CDIInjector) error {
	return nil
}
func (noNRI) PostCreateContainer(context.Context, nri.Pod, nri.Container)  {}
func (noNRI) StartContainer(context.Context, nri.Pod, nri.Container) error { return nil }
func (noNRI) PostStartContainer(context.Context, nri.Pod, nri.Container)   {}
func (noNRI) UpdateContainer(_ context.Context, _ nri.Pod, _ nri.Container, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	return r, nil
}
func (noNRI) PostUpdateContainer(context.Context, nri.Pod, nri.Container) {}
func (noNRI) StopContainer(context.Context, nri.Pod, nri.Container)       {}
func (noNRI) ContainerExited(nri.Pod, nri.Container)                      {}
func (noNRI) RemoveContainer(context.Context, nri.Pod, nri.Container)     {}

// nriPod describes a pod to plugins.
func (m *Manager) nriPod(sb *sandbox) nri.Pod {
	rec := sb.snapshot()
	sp := m.specPod(sb, m.podDir(rec.ID))
	p := nri.Pod{
		ID: rec.ID, Config: sb.cfg, Handler: rec.Handler, Ready: rec.State == stateReady, Pid: rec.PausePid, IPs: rec.IPs,
		CgroupParent: sp.CgroupParent(m.host.CgroupDriver),
		Namespaces:   map[specs.LinuxNamespaceType]string{},
	}
	if !rec.Pinned {
		p.CgroupsPath = spec.CgroupsPath(m.host, sp, rec.ID)
	}
	if o, r, err := sb.podResources(); err == nil {
		p.Overhead, p.Resources = o, r
	}
	if rec.NetNS != "" && !rec.NetworkDown {
		p.Namespaces[specs.NetworkNamespace] = rec.NetNS
	}
	// A pod's IPC and UTS namespaces are pinned, or its sandbox
	// container's.
	for typ, pinned := range map[specs.LinuxNamespaceType]string{specs.IPCNamespace: sp.IPCNS, specs.UTSNamespace: sp.UTSNS, specs.UserNamespace: sp.UserNS} {
		switch {
		case pinned != "":
			p.Namespaces[typ] = pinned
		case rec.PausePid > 0 && typ != specs.UserNamespace:
			p.Namespaces[typ] = filepath.Join("/proc", strconv.Itoa(rec.PausePid), "ns", string(typ))
		}
	}
	return p
}

// nriContainer describes a container to plugins, with its spec s (read
// from its bundle when nil: the pod package keeps only its process).
func (m *Manager) nriContainer(c *container, s *specs.Spec) nri.Container {
	rec := c.snapshot()
	if s == nil {
		s = m.readSpec(rec.ID)
	}
	return nri.Container{
		ID: rec.ID, PodID: rec.SandboxID, Config: c.cfg, Spec: s,
		State: criContainerState(rec.State), Pid: rec.Pid,
		CreatedAt: rec.CreatedAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt,
		ExitCode: rec.ExitCode, Reason: rec.Reason, Message: rec.Message,
		ImageName: rec.ImageName, ImageRef: rec.ImageRef, ImageID: rec.ImageID,
	}
}

// readSpec is a container's OCI spec as written to its bundle, nil if
// it cannot be read (plugins then see the container without it).
func (m *Manager) readSpec(id string) *specs.Spec {
	raw, err := os.ReadFile(filepath.Join(m.ctrBundle(id), "config.json"))
	if err != nil {
		return nil
	}
	var s specs.Spec
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	return &s
}

// nriFor describes container c and its pod to plugins; ok is false when
// NRI is off (nothing is read then).
func (m *Manager) nriFor(c *container) (p nri.Pod, ctr nri.Container, ok bool) {
	if !m.nri.Enabled() {
		return p, ctr, false
	}
	podID := c.snapshot().SandboxID
	if sb, err := m.getSandbox(podID); err == nil {
		p = m.nriPod(sb)
	} else {
		p = nri.Pod{ID: podID, Config: &runtimeapi.PodSandboxConfig{}}
	}
	return p, m.nriContainer(c, nil), true
}
