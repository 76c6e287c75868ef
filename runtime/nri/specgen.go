package nri

import (
	"fmt"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/host"
)

// specGen is the small OCI spec editor the NRI library's adjustment code
// (pkg/runtime-tools/generate) drives: the methods of runtime-tools'
// Generator it calls, on berth's spec directly. Each does what its
// runtime-tools namesake does; runtime-tools itself is not imported for
// them (its last release predates the runtime-spec berth builds on).
type specGen struct {
	s *specs.Spec
	// oomFloor is the lowest OOM score adjustment berthd may give (its
	// own, without CAP_SYS_RESOURCE): a plugin asking lower gets it.
	oomFloor int
}

func (g *specGen) Spec() *specs.Spec { return g.s }

func (g *specGen) process() *specs.Process {
	if g.s.Process == nil {
		g.s.Process = &specs.Process{}
	}
	return g.s.Process
}

func (g *specGen) linux() *specs.Linux {
	if g.s.Linux == nil {
		g.s.Linux = &specs.Linux{}
	}
	return g.s.Linux
}

func (g *specGen) resources() *specs.LinuxResources {
	l := g.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (g *specGen) cpu() *specs.LinuxCPU {
	r := g.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (g *specGen) memory() *specs.LinuxMemory {
	r := g.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (g *specGen) hooks() *specs.Hooks {
	if g.s.Hooks == nil {
		g.s.Hooks = &specs.Hooks{}
	}
	return g.s.Hooks
}

func (g *specGen) AddAnnotation(key, value string) {
	if g.s.Annotations == nil {
		g.s.Annotations = map[string]string{}
	}
	g.s.Annotations[key] = value
}

func (g *specGen) RemoveAnnotation(key string) { delete(g.s.Annotations, key) }

// AddDevice adds a device node, replacing one at the same path.
func (g *specGen) AddDevice(d specs.LinuxDevice) {
	l := g.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (g *specGen) RemoveDevice(path string) {
	if g.s.Linux == nil {
		return
	}
	g.s.Linux.Devices = slices.DeleteFunc(g.s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
}

func (g *specGen) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := g.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

// namespaceType accepts the OCI names, and runtime-tools' short ones.
func namespaceType(ns string) (specs.LinuxNamespaceType, error) {
	switch ns {
	case "network", "net":
		return specs.NetworkNamespace, nil
	case "pid", "ipc", "uts", "user", "cgroup", "time":
		return specs.LinuxNamespaceType(ns), nil
	case "mount", "mnt":
		return specs.MountNamespace, nil
	}
	return "", fmt.Errorf("unknown namespace type %q", ns)
}

func (g *specGen) AddOrReplaceLinuxNamespace(ns, path string) error {
	typ, err := namespaceType(ns)
	if err != nil {
		return err
	}
	l := g.linux()
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == typ {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: typ, Path: path})
	return nil
}

func (g *specGen) RemoveLinuxNamespace(ns string) error {
	typ, err := namespaceType(ns)
	if err != nil {
		return err
	}
	if g.s.Linux != nil {
		g.s.Linux.Namespaces = slices.DeleteFunc(g.s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == typ })
	}
	return nil
}

func (g *specGen) AddPreStartHook(h specs.Hook) {
	g.hooks().Prestart = append(g.hooks().Prestart, h) //nolint:staticcheck // plugins may still ask for prestart hooks
}

func (g *specGen) AddPostStartHook(h specs.Hook) {
	g.hooks().Poststart = append(g.hooks().Poststart, h)
}

func (g *specGen) AddPostStopHook(h specs.Hook) { g.hooks().Poststop = append(g.hooks().Poststop, h) }

// AddProcessEnv sets name=value, replacing an earlier value of name.
func (g *specGen) AddProcessEnv(name, value string) {
	p := g.process()
	kv := name + "=" + value
	for i, e := range p.Env {
		if k, _, _ := strings.Cut(e, "="); k == name {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func (g *specGen) ClearProcessEnv() {
	if g.s.Process != nil {
		g.s.Process.Env = nil
	}
}

func (g *specGen) SetProcessArgs(args []string) { g.process().Args = slices.Clone(args) }

func (g *specGen) SetProcessOOMScoreAdj(adj int) {
	v := host.ClampOOMScoreAdj(adj, g.oomFloor)
	g.process().OOMScoreAdj = &v
}

// AddLinuxResourcesHugepageLimit sets the limit of a page size.
func (g *specGen) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := g.resources()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (g *specGen) AddLinuxResourcesUnified(key, val string) {
	r := g.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (g *specGen) AddMount(m specs.Mount) { g.s.Mounts = append(g.s.Mounts, m) }

func (g *specGen) RemoveMount(dest string) {
	g.s.Mounts = slices.DeleteFunc(g.s.Mounts, func(m specs.Mount) bool { return m.Destination == dest })
}

func (g *specGen) ClearMounts() { g.s.Mounts = nil }

func (g *specGen) Mounts() []specs.Mount { return slices.Clone(g.s.Mounts) }

func (g *specGen) AddLinuxSysctl(key, value string) {
	l := g.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (g *specGen) RemoveLinuxSysctl(key string) {
	if g.s.Linux != nil {
		delete(g.s.Linux.Sysctl, key)
	}
}

func (g *specGen) SetLinuxCgroupsPath(path string) { g.linux().CgroupsPath = path }

func (g *specGen) SetLinuxResourcesCPUCpus(cpus string) { g.cpu().Cpus = cpus }

func (g *specGen) SetLinuxResourcesCPUMems(mems string) { g.cpu().Mems = mems }

func (g *specGen) SetLinuxResourcesCPUPeriod(period uint64) { g.cpu().Period = &period }

func (g *specGen) SetLinuxResourcesCPUQuota(quota int64) { g.cpu().Quota = &quota }

func (g *specGen) SetLinuxResourcesCPURealtimePeriod(period uint64) {
	g.cpu().RealtimePeriod = &period
}

func (g *specGen) SetLinuxResourcesCPURealtimeRuntime(runtime int64) {
	g.cpu().RealtimeRuntime = &runtime
}

func (g *specGen) SetLinuxResourcesCPUShares(shares uint64) { g.cpu().Shares = &shares }

func (g *specGen) SetLinuxResourcesMemoryLimit(limit int64) { g.memory().Limit = &limit }

func (g *specGen) SetLinuxResourcesMemorySwap(swap int64) { g.memory().Swap = &swap }

// SetLinuxRootPropagation takes the propagations runc accepts for the
// root.
func (g *specGen) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
	default:
		return fmt.Errorf("rootfs propagation %q is not one of private, slave, shared, unbindable (or their r-forms)", rp)
	}
	g.linux().RootfsPropagation = rp
	return nil
}
