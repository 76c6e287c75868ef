package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"math"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/spec"
)

// Pod-level resources: LinuxPodSandboxConfig.overhead and .resources at
// RunPodSandbox, UpdatePodSandboxResources (in-place pod resize) after.
// The kubelet sizes the pod cgroups it makes (cgroup_parent) itself and
// tells the runtime afterwards; the pod cgroup berth makes when it gets
// none is berth's to size, and a gVisor pod, which runs inside its
// sandbox container, is sized through that container too.

// podSizing is how one pod's pod-level resources are honoured.
type podSizing struct {
	// total is what the pod is sized to: resources plus overhead.
	total *runtimeapi.LinuxContainerResources
	// own: berth made the pod's cgroup and sizes it.
	own bool
	// sandbox: the pod runs inside its sandbox container (gVisor), sized
	// through the runtime's update.
	sandbox bool
}

// planPodSizing checks a pod's pod-level resources against the node and
// the pod and says how they are honoured.
func (m *Manager) planPodSizing(h *oci.Handler, cfg *runtimeapi.PodSandboxConfig, overhead, resources *runtimeapi.LinuxContainerResources) (podSizing, error) {
	for _, r := range []struct {
		name string
		res  *runtimeapi.LinuxContainerResources
	}{{"overhead", overhead}, {"resources", resources}} {
		if err := spec.CheckResources(m.host, r.res); err != nil {
			return podSizing{}, fmt.Errorf("pod-level %s: %w", r.name, err)
		}
	}
	total, err := podTotal(overhead, resources)
	if err != nil {
		return podSizing{}, err
	}
	p := podSizing{total: total, own: (&spec.Pod{Config: cfg}).OwnCgroup(m.host.CgroupDriver), sandbox: h.Traits().Sandboxed}
	// With the systemd driver a pod without a parent has its containers
	// straight in system.slice: no cgroup of its own to size.
	if !p.own && !p.sandbox && cfg.GetLinux().GetCgroupParent() == "" && sizes(total) {
		return podSizing{}, errdefs.FailedPrecondition("pod-level resources: with the systemd cgroup driver, a pod without LinuxPodSandboxConfig.cgroup_parent has no cgroup of its own to size")
	}
	return p, nil
}

// sizes reports whether r sets anything.
func sizes(r *runtimeapi.LinuxContainerResources) bool {
	return r != nil && !proto.Equal(r, &runtimeapi.LinuxContainerResources{})
}

// podTotal is what a pod is sized to: its containers' resources plus its
// overhead, as the kubelet sizes the pod cgroups it makes. A limit the
// resources leave unset (0, or the kubelet's -1 quota) stays unset: an
// overhead does not bound a pod that is unbounded. CPU shares, a weight,
// are summed whichever sets them. oom_score_adj is a process's: the
// pod's containers have their own.
func podTotal(o, r *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
	// One cpuset and one set of cgroup files per pod: the resources'.
	if c := o.GetCpusetCpus(); c != "" && c != r.GetCpusetCpus() {
		return nil, errdefs.InvalidArgument("pod overhead cpuset_cpus %q: a pod has one cpuset, the resources' (%q)", c, r.GetCpusetCpus())
	}
	if c := o.GetCpusetMems(); c != "" && c != r.GetCpusetMems() {
		return nil, errdefs.InvalidArgument("pod overhead cpuset_mems %q: a pod has one cpuset, the resources' (%q)", c, r.GetCpusetMems())
	}
	if len(o.GetUnified()) > 0 {
		return nil, errdefs.InvalidArgument("pod overhead unified: cgroup files cannot be added up; give them in the pod's resources")
	}
	t := &runtimeapi.LinuxContainerResources{CpusetCpus: r.GetCpusetCpus(), CpusetMems: r.GetCpusetMems(), Unified: r.GetUnified()}
	var err error
	if t.CpuShares, err = sum("cpu_shares", max(r.GetCpuShares(), 0), max(o.GetCpuShares(), 0)); err != nil {
		return nil, err
	}
	if r.GetCpuQuota() > 0 {
		t.CpuPeriod = period(r.GetCpuPeriod())
		extra := int64(0)
		if q := o.GetCpuQuota(); q > 0 {
			// The overhead's quota, in the resources' period.
			if q > math.MaxInt64/t.CpuPeriod {
				return nil, errdefs.InvalidArgument("pod overhead cpu_quota %d: too large", q)
			}
			extra = q * t.CpuPeriod / period(o.GetCpuPeriod())
		}
		if t.CpuQuota, err = sum("cpu_quota", r.GetCpuQuota(), extra); err != nil {
			return nil, err
		}
	}
	if r.GetMemoryLimitInBytes() > 0 {
		if t.MemoryLimitInBytes, err = sum("memory_limit_in_bytes", r.GetMemoryLimitInBytes(), max(o.GetMemoryLimitInBytes(), 0)); err != nil {
			return nil, err
		}
	}
	if r.GetMemorySwapLimitInBytes() > 0 {
		// Memory plus swap: the overhead's own, or its memory.
		extra := o.GetMemorySwapLimitInBytes()
		if extra <= 0 {
			extra = max(o.GetMemoryLimitInBytes(), 0)
		}
		if t.MemorySwapLimitInBytes, err = sum("memory_swap_limit_in_bytes", r.GetMemorySwapLimitInBytes(), extra); err != nil {
			return nil, err
		}
	}
	for _, h := range r.GetHugepageLimits() {
		l := h.GetLimit()
		for _, oh := range o.GetHugepageLimits() {
			if oh.GetPageSize() == h.GetPageSize() {
				if l+oh.GetLimit() < l {
					return nil, errdefs.InvalidArgument("pod hugepage_limits %s: resources plus overhead overflow", h.GetPageSize())
				}
				l += oh.GetLimit()
			}
		}
		t.HugepageLimits = append(t.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.GetPageSize(), Limit: l})
	}
	return t, nil
}

// period is a CFS period, the kernel's default when unset.
func period(p int64) int64 {
	if p <= 0 {
		return 100000
	}
	return p
}

func sum(field string, a, b int64) (int64, error) {
	if b > 0 && a > math.MaxInt64-b {
		return 0, errdefs.InvalidArgument("pod %s: resources plus overhead overflow", field)
	}
	return a + b, nil
}

// cpuShrinks reports whether the CPU bandwidth the pod may use shrinks
// from prev to next (an unset quota is unbounded).
func cpuShrinks(prev, next *runtimeapi.LinuxContainerResources) bool {
	ratio := func(r *runtimeapi.LinuxContainerResources) float64 {
		if r.GetCpuQuota() <= 0 {
			return math.Inf(1)
		}
		return float64(r.GetCpuQuota()) / float64(period(r.GetCpuPeriod()))
	}
	return ratio(next) < ratio(prev)
}

// podCgroup is the cgroup berth made for pod id (p.own).
func (m *Manager) podCgroup(id string, cfg *runtimeapi.PodSandboxConfig) string {
	return (&spec.Pod{ID: id, Config: cfg}).CgroupParent(m.host.CgroupDriver)
}

// sizeNewPod makes and sizes a new pod's cgroup, when berth owns it,
// before anything runs in it; u removes it.
func (m *Manager) sizeNewPod(sb *sandbox, p podSizing, u *undo) error {
	if !p.own || !sizes(p.total) {
		return nil // runc makes it with the pod's first container
	}
	dir := m.podCgroup(sb.rec.ID, sb.cfg)
	u.add(func() { _ = m.cgroups.Remove(dir) })
	return m.cgroups.Size(dir, spec.Resources(m.host, p.total, nil))
}

// sizeSandboxSpec gives a gVisor pod's sandbox container the pod's
// limits from the start (its cgroup holds the whole pod).
func (m *Manager) sizeSandboxSpec(sb *sandbox, s *specs.Spec) error {
	if !sb.handler.Traits().Sandboxed || s.Linux == nil || s.Linux.Resources == nil {
		return nil
	}
	o, r, err := sb.podResources()
	if err != nil {
		return err
	}
	total, err := podTotal(o, r)
	if err != nil || !sizes(total) {
		return err
	}
	var shares *uint64
	if s.Linux.Resources.CPU != nil {
		shares = s.Linux.Resources.CPU.Shares
	}
	spec.Resources(m.host, total, s.Linux.Resources)
	if s.Linux.Resources.CPU.Shares == nil {
		s.Linux.Resources.CPU.Shares = shares // the sandbox container's own weight
	}
	return nil
}

// sizePod applies p to a running pod: its cgroup, when berth owns it, and
// its sandbox container, when the pod runs inside it. old is what the pod
// was sized to.
func (m *Manager) sizePod(ctx context.Context, sb *sandbox, p podSizing, old *runtimeapi.LinuxContainerResources) error {
	var steps []func() error
	if p.own {
		dir := m.podCgroup(sb.rec.ID, sb.cfg)
		steps = append(steps, func() error { return m.cgroups.Size(dir, spec.Resources(m.host, p.total, nil)) })
	}
	if p.sandbox {
		steps = append(steps, func() error { return m.sizeSandbox(ctx, sb, p.total) })
	}
	// The sandbox container's cgroup is inside the pod's, and cgroup v1
	// keeps a child's CFS quota within its parent's: a shrinking pod is
	// sized from the inside out, a growing one from the outside in.
	if len(steps) == 2 && cpuShrinks(old, p.total) {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// sizeSandbox updates the sandbox container through the runtime, as
// UpdateContainerResources does a container. The runtime keeps what an
// update leaves out: a limit the pod no longer has is lifted with -1.
func (m *Manager) sizeSandbox(ctx context.Context, sb *sandbox, total *runtimeapi.LinuxContainerResources) error {
	client, err := sb.client()
	if err != nil {
		return err
	}
	res := spec.Resources(m.host, total, nil)
	if res.Memory.Limit == nil {
		res.Memory.Limit = ptrTo(int64(-1))
	}
	if res.CPU.Quota == nil {
		res.CPU.Quota = ptrTo(int64(-1))
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if _, err := client.Update(ctx, &shimv1.UpdateRequest{Id: sb.rec.ID, Resources: raw}); err != nil {
		return fmt.Errorf("update sandbox container %s: %w", sb.rec.ID, err)
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
