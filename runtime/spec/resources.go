package spec

import (
	"path"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/cgroups"
	"github.com/berthrt/berth/runtime/host"
)

// CgroupParent is the pod's cgroup parent for driver. A pod the kubelet
// gave none gets one of its own under /berth (cgroupfs), so that pod stats
// are the pod's.
func (p *Pod) CgroupParent(driver string) string {
	if cp := p.Config.GetLinux().GetCgroupParent(); cp != "" {
		return cp
	}
	if driver == "systemd" {
		return "system.slice"
	}
	return path.Join("/berth", p.ID)
}

// OwnCgroup reports whether the pod's cgroup parent is berth's to remove.
func (p *Pod) OwnCgroup(driver string) bool {
	return p.Config.GetLinux().GetCgroupParent() == "" && driver != "systemd"
}

// CgroupsPath is the OCI cgroupsPath of container id in pod p.
func CgroupsPath(h Host, p *Pod, id string) string {
	parent := p.CgroupParent(h.CgroupDriver)
	if h.CgroupDriver == "systemd" {
		return parent + ":berth:" + id
	}
	return path.Join(parent, id)
}

// MemoryCgroupDir is the absolute directory of the memory controller for
// an OCI cgroupsPath (where the shim reads OOM kills).
func MemoryCgroupDir(h Host, cgroupsPath string) string {
	rel := cgroups.Reader{Mode: h.CgroupMode, Driver: h.CgroupDriver}.Dir(cgroupsPath)
	if h.CgroupMode == host.CgroupV2 {
		return filepath.Join("/sys/fs/cgroup", rel)
	}
	return filepath.Join("/sys/fs/cgroup/memory", rel)
}

// Resources maps CRI resources onto base (which may be nil).
func Resources(h Host, r *runtimeapi.LinuxContainerResources, base *specs.LinuxResources) *specs.LinuxResources {
	if base == nil {
		base = &specs.LinuxResources{}
	}
	cpu := &specs.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems}
	if r.CpuShares > 0 {
		cpu.Shares = ptr(uint64(r.CpuShares))
	}
	if r.CpuQuota > 0 {
		cpu.Quota = ptr(r.CpuQuota)
	}
	if r.CpuPeriod > 0 {
		cpu.Period = ptr(uint64(r.CpuPeriod))
	}
	base.CPU = cpu
	mem := &specs.LinuxMemory{}
	if r.MemoryLimitInBytes > 0 {
		mem.Limit = ptr(r.MemoryLimitInBytes)
	}
	if r.MemorySwapLimitInBytes > 0 {
		mem.Swap = ptr(r.MemorySwapLimitInBytes)
	}
	base.Memory = mem
	base.HugepageLimits = nil
	for _, l := range r.HugepageLimits {
		base.HugepageLimits = append(base.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: l.PageSize, Limit: l.Limit})
	}
	if h.CgroupMode == host.CgroupV2 && len(r.Unified) > 0 {
		base.Unified = r.Unified
	}
	return base
}
