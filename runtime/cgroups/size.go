package cgroups

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// The pod cgroups berth makes (a pod the kubelet gave no cgroup parent)
// are sized here: the pod-level resources of RunPodSandbox and
// UpdatePodSandboxResources.

// sizeMount is where the hierarchies are mounted.
const sizeMount = "/sys/fs/cgroup"

// Kernel defaults: what a limit the pod no longer sets returns to.
const (
	defaultShares   = 1024   // cgroup v1 cpu.shares
	defaultWeight   = 100    // cgroup v2 cpu.weight
	defaultPeriodUS = 100000 // cfs period, both versions
)

// Size makes the cgroup at dir (relative to the hierarchy roots) when it
// does not exist and sets its limits to res. A sizing replaces the last
// one: a memory, swap or CPU limit res leaves unset (nil, or -1) is
// lifted, CPU shares return to the default and cpusets to the parent's,
// so that a resize that drops a limit drops it on the host too. Unified
// (cgroup v2) files and hugepage sizes are written as given.
//
// The kernel refuses a pod limit below what a container in the pod
// already has (cgroup v1 CFS quota) or below what the pod uses (memory):
// those are InvalidArgument and FailedPrecondition.
func (r Reader) Size(dir string, res *specs.LinuxResources) error {
	var err error
	if r.Mode == host.CgroupV2 {
		err = size2(dir, res)
	} else {
		err = size1(dir, res)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL):
		return errdefs.InvalidArgument("size cgroup %s: the kernel refuses the limits (is a container's own CPU limit above the pod's, or the memory+swap limit below the memory limit?): %v", dir, err)
	case errors.Is(err, unix.EBUSY):
		return errdefs.FailedPrecondition("size cgroup %s: the pod uses more memory than the new limit: %v", dir, err)
	}
	return fmt.Errorf("size cgroup %s: %w", dir, err)
}

// limited reports whether a limit is given: nil, 0 and -1 (OCI's "none") are not.
func limited(v *int64) bool { return v != nil && *v > 0 }

// podSubsystems are the v1 controllers a pod's limits are in; runc makes
// the pod's directory in the others when it makes its containers'.
var podSubsystems = map[cgroup1.Name]bool{cgroup1.Cpu: true, cgroup1.Cpuset: true, cgroup1.Memory: true, cgroup1.Hugetlb: true}

func podHierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		if podSubsystems[s.Name()] {
			out = append(out, s)
		}
	}
	return out, nil
}

func size1(dir string, res *specs.LinuxResources) error {
	cpu := specs.LinuxCPU{Shares: pointer(uint64(defaultShares)), Quota: pointer(int64(-1)), Period: pointer(uint64(defaultPeriodUS))}
	if c := res.CPU; c != nil {
		if c.Shares != nil {
			cpu.Shares = c.Shares
		}
		if limited(c.Quota) {
			cpu.Quota = c.Quota
		}
		if c.Period != nil {
			cpu.Period = c.Period
		}
		cpu.Cpus, cpu.Mems = c.Cpus, c.Mems
	}
	parent := filepath.Join(sizeMount, "cpuset", filepath.Dir(dir))
	for _, v := range []struct {
		val  *string
		file string
	}{{&cpu.Cpus, "cpuset.cpus"}, {&cpu.Mems, "cpuset.mems"}} {
		if *v.val == "" {
			raw, err := os.ReadFile(filepath.Join(parent, v.file))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			*v.val = strings.TrimSpace(string(raw))
		}
	}
	// Memory is set apart (below), through Update, which orders the
	// memory and memory+swap writes.
	cg, err := cgroup1.New(cgroup1.StaticPath(dir), &specs.LinuxResources{CPU: &cpu, HugepageLimits: res.HugepageLimits}, cgroup1.WithHierarchy(podHierarchy))
	if err != nil {
		return err
	}
	mem := specs.LinuxMemory{Limit: pointer(int64(-1))}
	if res.Memory != nil && limited(res.Memory.Limit) {
		mem.Limit = res.Memory.Limit
	}
	if _, err := os.Stat(filepath.Join(sizeMount, "memory", dir, "memory.memsw.limit_in_bytes")); err == nil {
		// Lifted first: memory+swap may never be below the memory limit,
		// and nothing is below none.
		if err := cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: pointer(int64(-1))}}); err != nil {
			return err
		}
		if res.Memory != nil && limited(res.Memory.Swap) {
			mem.Swap = res.Memory.Swap
		}
	} else if res.Memory != nil && limited(res.Memory.Swap) {
		return errdefs.FailedPrecondition("a memory+swap limit: this kernel does not account swap (memory.memsw)")
	}
	return cg.Update(&specs.LinuxResources{Memory: &mem})
}

func size2(dir string, res *specs.LinuxResources) error {
	// Converted without the "none"s, which the library would write as -1.
	clean := specs.LinuxResources{HugepageLimits: res.HugepageLimits}
	if c := res.CPU; c != nil {
		cc := *c
		if !limited(cc.Quota) {
			cc.Quota = nil
		}
		clean.CPU = &cc
	}
	if m := res.Memory; m != nil {
		clean.Memory = &specs.LinuxMemory{}
		if limited(m.Limit) {
			clean.Memory.Limit = m.Limit
		}
		if limited(m.Swap) {
			clean.Memory.Swap = m.Swap
		}
	}
	r2 := cgroup2.ToResources(&clean)
	if r2.CPU == nil {
		r2.CPU = &cgroup2.CPU{}
	}
	if r2.CPU.Weight == nil {
		r2.CPU.Weight = pointer(uint64(defaultWeight))
	}
	if r2.CPU.Max == "" {
		// No period given: a quota (if any) is the default period's.
		var quota *int64
		if clean.CPU != nil {
			quota = clean.CPU.Quota
		}
		r2.CPU.Max = cgroup2.NewCPUMax(quota, nil)
	}
	if r2.Memory == nil {
		r2.Memory = &cgroup2.Memory{}
	}
	// "max" is any value the kernel rounds to its largest.
	if r2.Memory.Max == nil {
		r2.Memory.Max = pointer(int64(math.MaxInt64))
	}
	path := filepath.Join(sizeMount, dir)
	if r2.Memory.Swap == nil {
		if _, err := os.Stat(filepath.Join(path, "memory.swap.max")); err == nil {
			r2.Memory.Swap = pointer(int64(math.MaxInt64))
		}
	}
	if _, err := cgroup2.NewManager(sizeMount, dir, r2); err != nil {
		return err
	}
	// An empty cpuset is the parent's, which the library cannot write.
	// Without the controller (no cpuset ever given) there is none to reset.
	for file, val := range map[string]string{"cpuset.cpus": cpusOf(res), "cpuset.mems": memsOf(res)} {
		if val != "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(path, file), []byte("\n"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	for key, val := range res.Unified {
		// A file of this cgroup, nothing else.
		if key == "" || strings.ContainsRune(key, '/') || strings.HasPrefix(key, ".") {
			return errdefs.InvalidArgument("unified key %q: not a cgroup file name", key)
		}
		if err := os.WriteFile(filepath.Join(path, key), []byte(val), 0); err != nil {
			return fmt.Errorf("unified %s: %w", key, err)
		}
	}
	return nil
}

func cpusOf(res *specs.LinuxResources) string {
	if res.CPU == nil {
		return ""
	}
	return res.CPU.Cpus
}

func memsOf(res *specs.LinuxResources) string {
	if res.CPU == nil {
		return ""
	}
	return res.CPU.Mems
}

func pointer[T any](v T) *T { return &v }
