package nri

import (
	"fmt"
	"maps"
	"strings"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// fromCRIResources is a CRI resource request as NRI's LinuxResources. A
// zero CRI value means "not set" and stays unset, so that a plugin tells
// a limit it was given from one it was not.
func fromCRIResources(r *runtimeapi.LinuxContainerResources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	out := &api.LinuxResources{
		Cpu:    &api.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems},
		Memory: &api.LinuxMemory{},
	}
	if r.CpuShares > 0 {
		out.Cpu.Shares = api.UInt64(uint64(r.CpuShares))
	}
	if r.CpuQuota != 0 {
		out.Cpu.Quota = api.Int64(r.CpuQuota)
	}
	if r.CpuPeriod > 0 {
		out.Cpu.Period = api.UInt64(uint64(r.CpuPeriod))
	}
	if r.MemoryLimitInBytes > 0 {
		out.Memory.Limit = api.Int64(r.MemoryLimitInBytes)
	}
	if r.MemorySwapLimitInBytes != 0 {
		out.Memory.Swap = api.Int64(r.MemorySwapLimitInBytes)
	}
	for _, l := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &api.HugepageLimit{PageSize: l.PageSize, Limit: l.Limit})
	}
	if len(r.Unified) > 0 {
		out.Unified = maps.Clone(r.Unified)
	}
	return out
}

// mergeResources applies what NRI resources u set onto the CRI resources
// cur (which it leaves alone): plugins' updates are partial, naming only
// what they change. What a CRI update cannot carry (and so berth cannot
// apply to a running container) is refused, never dropped.
func mergeResources(cur *runtimeapi.LinuxContainerResources, u *api.LinuxResources) (*runtimeapi.LinuxContainerResources, error) {
	out := &runtimeapi.LinuxContainerResources{}
	if cur != nil {
		out = proto.Clone(cur).(*runtimeapi.LinuxContainerResources)
	}
	if u == nil {
		return out, nil
	}
	if err := unsupportedUpdate(u); err != nil {
		return nil, err
	}
	if c := u.Cpu; c != nil {
		if v := c.Shares.Get(); v != nil {
			out.CpuShares = int64(*v) //nolint:gosec // CPU shares are small
		}
		if v := c.Quota.Get(); v != nil {
			out.CpuQuota = *v
		}
		if v := c.Period.Get(); v != nil {
			out.CpuPeriod = int64(*v) //nolint:gosec // a period in µs
		}
		if c.Cpus != "" {
			out.CpusetCpus = c.Cpus
		}
		if c.Mems != "" {
			out.CpusetMems = c.Mems
		}
	}
	if m := u.Memory; m != nil {
		if v := m.Limit.Get(); v != nil {
			out.MemoryLimitInBytes = *v
		}
		if v := m.Swap.Get(); v != nil {
			out.MemorySwapLimitInBytes = *v
		}
	}
	for _, l := range u.HugepageLimits {
		replaced := false
		for _, have := range out.HugepageLimits {
			if have.PageSize == l.PageSize {
				have.Limit, replaced = l.Limit, true
			}
		}
		if !replaced {
			out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: l.PageSize, Limit: l.Limit})
		}
	}
	if len(u.Unified) > 0 {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		maps.Copy(out.Unified, u.Unified)
	}
	return out, nil
}

// unsupportedUpdate names the fields of u that a live update cannot set.
func unsupportedUpdate(u *api.LinuxResources) error {
	var bad []string
	if c := u.Cpu; c != nil && (c.RealtimeRuntime != nil || c.RealtimePeriod != nil) {
		bad = append(bad, "cpu realtime")
	}
	if m := u.Memory; m != nil && (m.Reservation != nil || m.Kernel != nil || m.KernelTcp != nil || m.Swappiness != nil || m.DisableOomKiller != nil || m.UseHierarchy != nil) {
		bad = append(bad, "memory reservation, kernel, swappiness or OOM killer settings (use unified)")
	}
	if u.BlockioClass != nil {
		bad = append(bad, "block I/O class")
	}
	if u.RdtClass != nil {
		bad = append(bad, "RDT class")
	}
	if u.Pids != nil {
		bad = append(bad, "pids limit")
	}
	if len(u.Devices) > 0 {
		bad = append(bad, "device rules")
	}
	if len(bad) == 0 {
		return nil
	}
	return errdefs.InvalidArgument("a running container's %s cannot be updated", strings.Join(bad, ", "))
}

// describeUpdate is a short form of an update, for logs.
func describeUpdate(u *api.ContainerUpdate) string {
	return fmt.Sprintf("%s (ignore failure: %v)", u.GetContainerId(), u.GetIgnoreFailure())
}
