// Package spec turns CRI pod and container configs, with the image config,
// into OCI runtime specs that the pod's handler accepts.
package spec

import (
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// Target is what the spec must suit about the handler.
type Target struct {
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
	// LSM is what AppArmor and SELinux let berth apply (lsm.go).
	LSM
	// DeviceOwnershipFromSecurityContext: requested devices are owned by
	// the container's run_as_user/run_as_group (devices.go).
	DeviceOwnershipFromSecurityContext bool
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
	// sandbox container (or has a user namespace).
	IPCNS, UTSNS string
	// UserNS is the pod's pinned user namespace, "" for the node's; UIDs
	// and GIDs are its mappings.
	UserNS     string
	UIDs, GIDs []specs.LinuxIDMapping
	// Sysctls are the (normalised) ones the sandbox container sets; berth
	// sets the others itself.
	Sysctls map[string]string
	// Files bound into containers; empty ones are skipped.
	Hostname, ResolvConf, Hosts, Shm string
}

// Sandbox builds the spec of a pod's sandbox (pause) container.
func Sandbox(rt Target, h Host, p *Pod, img *v1.ConfigFile, rootfs string) (*specs.Spec, error) {
	lsm, err := sandboxLabels(h, p)
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
		Annotations: annotations(rt, h, p, ContainerTypeSandbox, nil),
		Linux: &specs.Linux{
			CgroupsPath:   CgroupsPath(h, p, p.ID),
			Sysctl:        p.Sysctls,
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
	// The pause process reads no files: its groups are the pod's, given
	// as they are (neither policy adds /etc/group's to what is listed).
	for _, g := range sc.GetSupplementalGroups() {
		s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g)) //nolint:gosec // a gid the kubelet validated
	}
	if sc.GetPrivileged() {
		s.Process.Capabilities = capSet(withinBounding(allCaps, h.Bounding), nil)
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	}
	s.Linux.Namespaces = sandboxNamespaces(h, p, ns)
	if ns.GetNetwork() == runtimeapi.NamespaceMode_NODE || p.UTSNS != "" {
		// The node's UTS namespace, or one berth named when it pinned it.
		s.Hostname = ""
	}
	setUserNS(s, p)
	sec, err := seccompFor(sc.GetSeccomp(), sc.GetSeccompProfilePath(), sc.GetPrivileged(), s) //nolint:staticcheck // deprecated, but older kubelets send it
	if err != nil {
		return nil, err
	}
	s.Linux.Seccomp = sec
	lsm.apply(s)
	return s, nil
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
func ForContainer(rt Target, h Host, p *Pod, c Container) (*specs.Spec, *User, error) {
	cfg := c.Config
	sc := cfg.GetLinux().GetSecurityContext()
	// The pod's labels are its containers' defaults.
	lsm, err := containerLabels(h, p, sc)
	if err != nil {
		return nil, nil, err
	}
	if err := checkContainerRequest(h, p, cfg); err != nil {
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
		Annotations: annotations(rt, h, p, ContainerTypeApp, cfg.GetAnnotations()),
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
	if !privileged {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = protectedPaths(sc, p.UserNS != "")
	}

	s.Linux.Namespaces = containerNamespaces(h, p, c, namespaceOptions(p, sc.GetNamespaceOptions()))
	setUserNS(s, p)
	if err := addDevices(h, s, cfg, privileged); err != nil {
		return nil, nil, err
	}
	if err := addMounts(rt, s, p, cfg, c.ImageVolumes, privileged); err != nil {
		return nil, nil, err
	}
	sec, err := seccompFor(sc.GetSeccomp(), sc.GetSeccompProfilePath(), privileged, s) //nolint:staticcheck // deprecated, but older kubelets send it
	if err != nil {
		return nil, nil, err
	}
	s.Linux.Seccomp = sec
	lsm.apply(s)
	return s, u, nil
}

func ptr[T any](v T) *T { return &v }
