// Package spec turns CRI pod and container configs, with the image config,
// into OCI runtime specs that the pod's handler accepts.
package spec

import (
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/cgroups"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/runtime/pinns"
)

// Annotations that tell runtimes (gVisor among them) how a pod's
// containers belong together.
const (
	AnnContainerType     = "io.kubernetes.cri.container-type"
	AnnSandboxID         = "io.kubernetes.cri.sandbox-id"
	AnnSandboxName       = "io.kubernetes.cri.sandbox-name"
	AnnSandboxNamespace  = "io.kubernetes.cri.sandbox-namespace"
	AnnSandboxUID        = "io.kubernetes.cri.sandbox-uid"
	AnnSandboxLogDir     = "io.kubernetes.cri.sandbox-log-directory"
	AnnContainerName     = "io.kubernetes.cri.container-name"
	AnnImageName         = "io.kubernetes.cri.image-name"
	ContainerTypeSandbox = "sandbox"
	ContainerTypeApp     = "container"
)

// Runtime is what the spec must suit about the handler.
type Runtime struct {
	Kind        string // runc, crun, runsc, ...
	OCIVersion  string
	RRO         bool // supports recursive read-only mounts
	Annotations map[string]string
	// PodAnnotations and ContainerAnnotations are the patterns (path.Match)
	// of the CRI pod and container annotations that reach the runtime,
	// which may act on them (crun on run.oci.*, runsc on dev.gvisor.*):
	// none unless the handler's configuration lists them.
	PodAnnotations, ContainerAnnotations []string
}

// Host is what the spec must suit about the node.
type Host struct {
	CgroupDriver string // cgroupfs or systemd
	CgroupMode   host.CgroupMode
	OOMFloor     int
	// Bounding is the node's capability bounding set (bit n: capability n).
	Bounding uint64
}

// Pod is the sandbox a spec is for.
type Pod struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	// NetNS is the pod's network namespace path; "" for host network.
	NetNS string
	// PausePid is the sandbox container's init, whose namespaces app
	// containers join (0 while building the sandbox itself, and in a pod
	// without one).
	PausePid int
	// IPCNS and UTSNS are the pod's pinned namespaces when it has no
	// sandbox container.
	IPCNS, UTSNS string
	// Files bound into containers; empty ones are skipped.
	Hostname, ResolvConf, Hosts, Shm string
}

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

// Sandbox builds the spec of a pod's sandbox (pause) container.
func Sandbox(rt Runtime, h Host, p *Pod, img *v1.ConfigFile, rootfs string) (*specs.Spec, error) {
	if err := CheckSandboxSecurity(p.Config); err != nil {
		return nil, err
	}
	sysctls, err := normalizeSysctls(p.Config.GetLinux().GetSysctls())
	if err != nil {
		return nil, err
	}
	sc := p.Config.GetLinux().GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	args := append(slices.Clone(img.Config.Entrypoint), img.Config.Cmd...)
	if len(args) == 0 {
		args = []string{"/pause"}
	}
	s := &specs.Spec{
		Version:  rt.OCIVersion,
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: p.Config.GetHostname(),
		Process: &specs.Process{
			Args:            args,
			Env:             img.Config.Env,
			Cwd:             "/",
			NoNewPrivileges: true,
			OOMScoreAdj:     ptr(host.ClampOOMScoreAdj(-998, h.OOMFloor)),
			Capabilities:    &specs.LinuxCapabilities{},
		},
		Mounts:      baseMounts(),
		Annotations: annotations(rt, p, ContainerTypeSandbox, nil),
		Linux: &specs.Linux{
			CgroupsPath:   CgroupsPath(h, p, p.ID),
			Sysctl:        sysctls,
			MaskedPaths:   defaultMaskedPaths,
			ReadonlyPaths: defaultReadonlyPaths,
			Resources: &specs.LinuxResources{
				Devices: defaultDeviceRules(),
				CPU:     &specs.LinuxCPU{Shares: ptr(uint64(2))},
			},
		},
	}
	if sc.GetRunAsUser() != nil {
		s.Process.User.UID = uint32(sc.GetRunAsUser().GetValue())
	}
	if sc.GetRunAsGroup() != nil {
		s.Process.User.GID = uint32(sc.GetRunAsGroup().GetValue())
	}
	if sc.GetPrivileged() {
		s.Process.Capabilities = capSet(withinBounding(allCaps, h.Bounding), nil)
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	}
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if ns.GetPid() != runtimeapi.NamespaceMode_NODE {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if ns.GetIpc() != runtimeapi.NamespaceMode_NODE {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if ns.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		s.Linux.Namespaces = append(s.Linux.Namespaces,
			specs.LinuxNamespace{Type: specs.UTSNamespace},
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.NetNS})
	} else {
		// The pod shares the node's UTS namespace: its name is the node's.
		s.Hostname = ""
	}
	if h.CgroupMode == host.CgroupV2 {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	sec, err := seccompFor(sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged(), s)
	if err != nil {
		return nil, err
	}
	s.Linux.Seccomp = sec
	return s, nil
}

// normalizeSysctls checks the pod's sysctl names and puts them in the dot
// form runtimes expect.
func normalizeSysctls(in map[string]string) (map[string]string, error) {
	if len(in) == 0 {
		return in, nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		name, err := pinns.NormalizeSysctl(k)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

// annotations are a spec's: the pod's and the container's (ctr) CRI
// annotations that the handler lets through, then the handler's own, then
// berth's, which nothing overrides.
func annotations(rt Runtime, p *Pod, typ string, ctr map[string]string) map[string]string {
	a := passThrough(p.Config.GetAnnotations(), rt.PodAnnotations)
	maps.Copy(a, passThrough(ctr, rt.ContainerAnnotations))
	maps.Copy(a, rt.Annotations)
	md := p.Config.GetMetadata()
	a[AnnContainerType] = typ
	a[AnnSandboxID] = p.ID
	a[AnnSandboxName] = md.GetName()
	a[AnnSandboxNamespace] = md.GetNamespace()
	a[AnnSandboxUID] = md.GetUid()
	if d := p.Config.GetLogDirectory(); d != "" {
		a[AnnSandboxLogDir] = d
	}
	return a
}

// reservedAnnotations are the prefixes of the keys that tell runtimes how
// a pod's containers belong together (berth's, and CRI-O's that runsc
// also reads): never a tenant's to set, whatever the allow-list says.
var reservedAnnotations = []string{"io.kubernetes.cri.", "io.kubernetes.cri-o."}

// passThrough returns the annotations whose key matches one of patterns.
func passThrough(in map[string]string, patterns []string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		if slices.ContainsFunc(reservedAnnotations, func(p string) bool { return strings.HasPrefix(k, p) }) {
			continue
		}
		if slices.ContainsFunc(patterns, func(p string) bool { ok, _ := path.Match(p, k); return ok }) {
			out[k] = v
		}
	}
	return out
}

// Container is what a container spec is built from.
type Container struct {
	ID        string
	Config    *runtimeapi.ContainerConfig
	Image     *v1.ConfigFile
	ImageName string
	// Rootfs is the mounted root filesystem (passwd and group are read
	// from it).
	Rootfs string
	// TargetPid is the init of the container whose PID namespace this one
	// joins (NamespaceMode TARGET).
	TargetPid int
	// ImageVolumes are the mounted image volumes' host directories, by
	// container path.
	ImageVolumes map[string]string
}

// ForContainer builds the spec of an app container and returns the user it
// runs as.
func ForContainer(rt Runtime, h Host, p *Pod, c Container) (*specs.Spec, *User, error) {
	cfg := c.Config
	sc := cfg.GetLinux().GetSecurityContext()
	// The pod's labels are its containers' defaults.
	if err := CheckSandboxSecurity(p.Config); err != nil {
		return nil, nil, err
	}
	if err := CheckContainerSecurity(sc); err != nil {
		return nil, nil, err
	}
	args, err := commandLine(cfg, &c.Image.Config)
	if err != nil {
		return nil, nil, err
	}
	if sc.GetRunAsGroup() != nil && sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" && c.Image.Config.User == "" {
		return nil, nil, errdefs.InvalidArgument("run_as_group needs run_as_user or run_as_username")
	}
	u, err := ResolveUser(c.Rootfs, UserRequest{
		ImageUser:          c.Image.Config.User,
		RunAsUser:          optInt(sc.GetRunAsUser()),
		RunAsUsername:      sc.GetRunAsUsername(),
		RunAsGroup:         optInt(sc.GetRunAsGroup()),
		SupplementalGroups: sc.GetSupplementalGroups(),
		Strict:             sc.GetSupplementalGroupsPolicy() == runtimeapi.SupplementalGroupsPolicy_Strict,
	})
	if err != nil {
		return nil, nil, err
	}
	cwd := cfg.GetWorkingDir()
	if cwd == "" {
		cwd = c.Image.Config.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	env := mergeEnv(c.Image.Config.Env, cfg.GetEnvs())
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	if hn := p.Config.GetHostname(); hn != "" && !hasEnv(env, "HOSTNAME") {
		env = append(env, "HOSTNAME="+hn)
	}
	privileged := sc.GetPrivileged()
	s := &specs.Spec{
		Version: rt.OCIVersion,
		Root:    &specs.Root{Path: c.Rootfs, Readonly: sc.GetReadonlyRootfs()},
		Process: &specs.Process{
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			Terminal:        cfg.GetTty(),
			User:            specs.User{UID: u.UID, GID: u.GID, AdditionalGids: u.AdditionalGids},
			NoNewPrivileges: sc.GetNoNewPrivs(),
		},
		Annotations: annotations(rt, p, ContainerTypeApp, cfg.GetAnnotations()),
		Linux: &specs.Linux{
			CgroupsPath: CgroupsPath(h, p, c.ID),
			Resources:   &specs.LinuxResources{Devices: defaultDeviceRules()},
		},
	}
	s.Annotations[AnnContainerName] = cfg.GetMetadata().GetName()
	s.Annotations[AnnImageName] = c.ImageName

	caps := containerCaps(sc)
	if privileged {
		caps = allCaps
	}
	s.Process.Capabilities = capSet(withinBounding(caps, h.Bounding), withinBounding(ambientCaps(sc), h.Bounding))
	if r := cfg.GetLinux().GetResources(); r != nil {
		s.Process.OOMScoreAdj = ptr(host.ClampOOMScoreAdj(int(r.OomScoreAdj), h.OOMFloor))
		s.Linux.Resources = Resources(h, r, s.Linux.Resources)
	}
	masked, readonly := sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if masked == nil && readonly == nil {
		masked, readonly = defaultMaskedPaths, defaultReadonlyPaths
	}
	if !privileged {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = masked, readonly
	}

	s.Linux.Namespaces = containerNamespaces(h, p, c, namespaceOptions(p, sc.GetNamespaceOptions()))
	if err := addDevices(s, cfg.GetDevices(), privileged); err != nil {
		return nil, nil, err
	}
	if err := addMounts(rt, s, p, cfg, c.ImageVolumes, privileged); err != nil {
		return nil, nil, err
	}
	sec, err := seccompFor(sc.GetSeccomp(), sc.GetSeccompProfilePath(), privileged, s)
	if err != nil {
		return nil, nil, err
	}
	s.Linux.Seccomp = sec
	return s, u, nil
}

func optInt(v *runtimeapi.Int64Value) *int64 {
	if v == nil {
		return nil
	}
	return &v.Value
}

// commandLine applies the kubelet's rules: the CRI command replaces the
// image entrypoint (and then its cmd); CRI args replace the image cmd.
func commandLine(cfg *runtimeapi.ContainerConfig, img *v1.Config) ([]string, error) {
	var args []string
	switch {
	case len(cfg.GetCommand()) > 0:
		args = append(slices.Clone(cfg.Command), cfg.GetArgs()...)
	case len(cfg.GetArgs()) > 0:
		args = append(slices.Clone(img.Entrypoint), cfg.Args...)
	default:
		args = append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
	if len(args) == 0 {
		return nil, errdefs.InvalidArgument("no command: the config and the image give none")
	}
	return args, nil
}

func mergeEnv(image []string, cri []*runtimeapi.KeyValue) []string {
	out := slices.Clone(image)
	for _, kv := range cri {
		prefix := kv.Key + "="
		if i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, prefix) }); i >= 0 {
			out[i] = prefix + string(kv.Value)
		} else {
			out = append(out, prefix+string(kv.Value))
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	return slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, key+"=") })
}

func normCap(c string) string {
	c = strings.ToUpper(c)
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

// containerCaps applies add and drop to the default set; "ALL" in add
// starts from every capability, "ALL" in drop from none.
func containerCaps(sc *runtimeapi.LinuxContainerSecurityContext) []string {
	caps := slices.Clone(defaultCaps)
	add, drop := sc.GetCapabilities().GetAddCapabilities(), sc.GetCapabilities().GetDropCapabilities()
	isAll := func(c string) bool { return strings.EqualFold(c, "ALL") }
	if slices.ContainsFunc(add, isAll) {
		caps = slices.Clone(allCaps)
	}
	if slices.ContainsFunc(drop, isAll) {
		caps = nil
	}
	for _, c := range add {
		if !isAll(c) && !slices.Contains(caps, normCap(c)) {
			caps = append(caps, normCap(c))
		}
	}
	for _, c := range drop {
		if !isAll(c) {
			caps = slices.DeleteFunc(caps, func(x string) bool { return x == normCap(c) })
		}
	}
	return caps
}

func ambientCaps(sc *runtimeapi.LinuxContainerSecurityContext) []string {
	var out []string
	for _, c := range sc.GetCapabilities().GetAddAmbientCapabilities() {
		out = append(out, normCap(c))
	}
	return out
}

// capSet grants caps as bounding, effective and permitted; inheritable
// stays empty (no capability passes through exec of a file without it).
func capSet(caps, ambient []string) *specs.LinuxCapabilities {
	c := &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	if len(ambient) > 0 {
		c.Ambient, c.Inheritable = ambient, ambient
	}
	return c
}

// namespaceOptions are a container's effective namespace modes: network
// and IPC are the pod's (a container cannot leave its pod's network), and
// so is a host PID namespace; otherwise the container's own PID mode.
func namespaceOptions(p *Pod, ctr *runtimeapi.NamespaceOption) *runtimeapi.NamespaceOption {
	pod := p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	ns := &runtimeapi.NamespaceOption{
		Network:  pod.GetNetwork(),
		Ipc:      pod.GetIpc(),
		Pid:      ctr.GetPid(),
		TargetId: ctr.GetTargetId(),
	}
	if pod.GetPid() == runtimeapi.NamespaceMode_NODE {
		ns.Pid = runtimeapi.NamespaceMode_NODE
	}
	return ns
}

func containerNamespaces(h Host, p *Pod, c Container, ns *runtimeapi.NamespaceOption) []specs.LinuxNamespace {
	join := func(typ specs.LinuxNamespaceType, kind, pinned string) specs.LinuxNamespace {
		switch {
		case pinned != "":
			return specs.LinuxNamespace{Type: typ, Path: pinned}
		case p.PausePid != 0:
			return specs.LinuxNamespace{Type: typ, Path: fmt.Sprintf("/proc/%d/ns/%s", p.PausePid, kind)}
		}
		return specs.LinuxNamespace{Type: typ}
	}
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	switch ns.GetPid() {
	case runtimeapi.NamespaceMode_NODE:
	case runtimeapi.NamespaceMode_POD:
		out = append(out, join(specs.PIDNamespace, "pid", ""))
	case runtimeapi.NamespaceMode_TARGET:
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: fmt.Sprintf("/proc/%d/ns/pid", c.TargetPid)})
	default:
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if ns.GetIpc() != runtimeapi.NamespaceMode_NODE {
		out = append(out, join(specs.IPCNamespace, "ipc", p.IPCNS))
	}
	if ns.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		out = append(out, join(specs.UTSNamespace, "uts", p.UTSNS), specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.NetNS})
	}
	if h.CgroupMode == host.CgroupV2 {
		out = append(out, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return out
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

func addDevices(s *specs.Spec, devices []*runtimeapi.Device, privileged bool) error {
	if privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		hostDevs, err := hostDevices("/dev")
		if err != nil {
			return err
		}
		s.Linux.Devices = append(s.Linux.Devices, hostDevs...)
	}
	for _, d := range devices {
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		dev, err := deviceAt(d.HostPath, d.ContainerPath)
		if err != nil {
			return errdefs.InvalidArgument("device %s: %v", d.HostPath, err)
		}
		s.Linux.Devices = append(s.Linux.Devices, dev)
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: dev.Type, Major: ptr(dev.Major), Minor: ptr(dev.Minor), Access: perms,
		})
	}
	return nil
}

func hostDevices(dir string) ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			switch p {
			case "/dev/pts", "/dev/mqueue", "/dev/shm":
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || d.Type()&os.ModeDevice == 0 {
			return nil
		}
		if dev, err := deviceAt(p, p); err == nil {
			out = append(out, dev)
		}
		return nil
	})
	return out, err
}

func addMounts(rt Runtime, s *specs.Spec, p *Pod, cfg *runtimeapi.ContainerConfig, volumes map[string]string, privileged bool) error {
	mounts := baseMounts()
	if privileged {
		for i := range mounts {
			if mounts[i].Destination == "/sys" || mounts[i].Destination == "/sys/fs/cgroup" {
				mounts[i].Options = slices.DeleteFunc(mounts[i].Options, func(o string) bool { return o == "ro" })
				mounts[i].Options = append(mounts[i].Options, "rw")
			}
		}
	}
	taken := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		taken[path.Clean(m.ContainerPath)] = true
	}
	ro := cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	bind := func(src, dst string, readonly bool, extra ...string) {
		if src == "" || taken[dst] {
			return
		}
		opts := append([]string{"rbind", "rprivate"}, extra...)
		if readonly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	bind(p.Hostname, "/etc/hostname", ro)
	bind(p.Hosts, "/etc/hosts", ro)
	bind(p.ResolvConf, "/etc/resolv.conf", ro)
	if namespaceOptions(p, cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()).GetIpc() == runtimeapi.NamespaceMode_NODE {
		bind("/dev/shm", "/dev/shm", false)
	} else {
		bind(p.Shm, "/dev/shm", false, "nosuid", "nodev", "noexec")
	}

	propagation := ""
	for _, m := range cfg.GetMounts() {
		dst := path.Clean(m.ContainerPath)
		if !path.IsAbs(dst) {
			return errdefs.InvalidArgument("mount destination %q is not absolute", m.ContainerPath)
		}
		if m.GetImage().GetImage() != "" {
			src, ok := volumes[dst]
			if !ok {
				return errdefs.InvalidArgument("image volume %s is not mounted", dst)
			}
			mounts = slices.DeleteFunc(mounts, func(x specs.Mount) bool { return x.Destination == dst })
			mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
			continue
		}
		if m.HostPath == "" {
			return errdefs.InvalidArgument("mount %s has no host path", dst)
		}
		src, err := filepath.EvalSymlinks(m.HostPath)
		if os.IsNotExist(err) {
			// As the kubelet's other runtimes do: a missing host path
			// becomes an empty directory.
			if err := os.MkdirAll(m.HostPath, 0o755); err != nil {
				return fmt.Errorf("create mount source %s: %w", m.HostPath, err)
			}
			src, err = filepath.EvalSymlinks(m.HostPath)
		}
		if err != nil {
			return errdefs.InvalidArgument("mount source %s: %v", m.HostPath, err)
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			opts = append(opts, "rshared")
			propagation = "rshared"
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			opts = append(opts, "rslave")
			if propagation == "" {
				propagation = "rslave"
			}
		default:
			opts = append(opts, "rprivate")
		}
		switch {
		case m.RecursiveReadOnly:
			if !m.Readonly {
				return errdefs.InvalidArgument("mount %s: recursive read-only needs read-only", dst)
			}
			if m.Propagation != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				// Mounts propagated in later could not be made read-only.
				return errdefs.InvalidArgument("mount %s: recursive read-only needs private propagation", dst)
			}
			if !rt.RRO {
				return errdefs.InvalidArgument("mount %s: RROUnsupported: runtime %s has no recursive read-only mounts", dst, rt.Kind)
			}
			opts = append(opts, "rro")
		case m.Readonly:
			opts = append(opts, "ro")
		default:
			opts = append(opts, "rw")
		}
		opts = append(opts, m.MountOptions...)
		mounts = slices.DeleteFunc(mounts, func(x specs.Mount) bool { return x.Destination == dst })
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	// Parents before children.
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(mounts[i].Destination, "/") < strings.Count(mounts[j].Destination, "/")
	})
	s.Mounts = mounts
	if propagation != "" {
		s.Linux.RootfsPropagation = propagation
	}
	return nil
}

// seccompFor picks the seccomp profile: none for privileged containers and
// Unconfined, the RuntimeDefault profile, or a Localhost file.
func seccompFor(sp *runtimeapi.SecurityProfile, legacy string, privileged bool, s *specs.Spec) (*specs.LinuxSeccomp, error) {
	if privileged {
		return nil, nil
	}
	typ, ref := runtimeapi.SecurityProfile_Unconfined, ""
	switch {
	case sp != nil:
		typ, ref = sp.ProfileType, sp.LocalhostRef
	case legacy == "runtime/default" || legacy == "docker/default":
		typ = runtimeapi.SecurityProfile_RuntimeDefault
	case strings.HasPrefix(legacy, "localhost/"):
		typ, ref = runtimeapi.SecurityProfile_Localhost, strings.TrimPrefix(legacy, "localhost/")
	case legacy == "" || legacy == "unconfined":
	default:
		return nil, errdefs.InvalidArgument("unknown seccomp profile %q", legacy)
	}
	switch typ {
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return seccomp.GetDefaultProfile(s)
	case runtimeapi.SecurityProfile_Localhost:
		if !filepath.IsAbs(ref) {
			return nil, errdefs.InvalidArgument("seccomp localhost profile %q is not an absolute path", ref)
		}
		data, err := os.ReadFile(ref)
		if err != nil {
			return nil, errdefs.InvalidArgument("seccomp localhost profile: %v", err)
		}
		prof, err := seccomp.LoadProfile(string(data), s)
		if err != nil {
			return nil, errdefs.InvalidArgument("seccomp localhost profile %s: %v", ref, err)
		}
		return prof, nil
	}
	return nil, nil
}

// ParseSignal reads a STOPSIGNAL value ("SIGTERM", "TERM", "15").
func ParseSignal(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return n, true
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	n, ok := signals[name]
	return n, ok
}

var signals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "BUS": 7, "FPE": 8,
	"KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15,
	"STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22,
	"URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29,
	"PWR": 30, "SYS": 31, "RTMIN": 34, "RTMAX": 64,
}
