package spec

import (
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/cgroups"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// CgroupParent is the pod's cgroup parent for driver. A pod the kubelet
// gave none gets one of its own, so that pod stats are the pod's: under
// /berth with cgroupfs, berth-<id>.slice (in berth.slice) with systemd,
// which systemd makes with the pod's first container's scope and berth
// stops when the pod goes (OwnSlice).
func (p *Pod) CgroupParent(driver string) string {
	cp := p.Config.GetLinux().GetCgroupParent()
	if driver == "systemd" {
		if cp == "" {
			return "berth-" + p.ID + ".slice"
		}
		// The kubelet names the slice ("kubepods-burstable-pod1.slice");
		// critest gives a path to it ("/test.slice"): systemd knows a
		// slice by its name alone, the path follows from it.
		return path.Base(cp)
	}
	if cp != "" {
		return cp
	}
	return path.Join("/berth", p.ID)
}

// OwnCgroup reports whether the pod's cgroup parent is a cgroupfs cgroup
// berth made, to size and remove.
func (p *Pod) OwnCgroup(driver string) bool {
	return p.Config.GetLinux().GetCgroupParent() == "" && driver != "systemd"
}

// OwnSlice reports whether the pod's cgroup parent is a systemd slice
// berth named, to stop when the pod goes.
func (p *Pod) OwnSlice(driver string) bool {
	return p.Config.GetLinux().GetCgroupParent() == "" && driver == "systemd"
}

// CheckCgroupParent refuses a cgroup parent the driver cannot use: with
// systemd a slice (as the kubelet's systemd driver names them), with
// cgroupfs an absolute path. A mismatch is a kubelet and berthd configured with
// different drivers, which would otherwise fail at the first container.
func CheckCgroupParent(h Host, cfg *runtimeapi.PodSandboxConfig) error {
	cp := cfg.GetLinux().GetCgroupParent()
	if cp == "" {
		return nil
	}
	isSlice := strings.HasSuffix(cp, ".slice") && path.Base(cp) != ".slice" && !strings.Contains(path.Base(cp), ":")
	switch {
	case h.CgroupDriver == "systemd" && !isSlice:
		return errdefs.InvalidArgument("LinuxPodSandboxConfig.cgroup_parent %q: berthd's cgroup_driver is systemd, which takes a slice (kubepods-pod1.slice); is the kubelet's cgroupDriver cgroupfs?", cp)
	case h.CgroupDriver != "systemd" && !path.IsAbs(cp):
		// A relative path would be the runtime's to place (runc: below its
		// own cgroup, the shim's).
		return errdefs.InvalidArgument("LinuxPodSandboxConfig.cgroup_parent %q: berthd's cgroup_driver is cgroupfs, which takes an absolute cgroup path (/kubepods/pod1); is the kubelet's cgroupDriver systemd?", cp)
	}
	return nil
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
