package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// LSM is what the node's Linux security modules let berth apply. The
// zero value is a node with neither: an AppArmor profile other than
// Unconfined is refused (as containerd does), SELinux options are
// accepted and ignored (as containerd does with enable_selinux off).
type LSM struct {
	// AppArmor: the kernel enforces AppArmor.
	AppArmor bool
	// AppArmorProfiles lists the loaded profiles (apparmor.ProfilesFile
	// when empty).
	AppArmorProfiles string
	// LoadAppArmorDefault makes sure berth's default profile is loaded;
	// nil when it must be loaded already. The spec package runs nothing
	// itself.
	LoadAppArmorDefault func() error
	// SELinux: enable_selinux is set and the host has SELinux.
	SELinux bool
}

// labels are the LSM settings of one container.
type labels struct {
	appArmor, process, mount string
}

func (l labels) apply(s *specs.Spec) {
	s.Process.ApparmorProfile = l.appArmor
	s.Process.SelinuxLabel = l.process
	s.Linux.MountLabel = l.mount
}

const (
	podAppArmor = "LinuxSandboxSecurityContext.apparmor"
	podSELinux  = "LinuxSandboxSecurityContext.selinux_options"
	ctrAppArmor = "LinuxContainerSecurityContext.apparmor"
	ctrProfile  = "LinuxContainerSecurityContext.apparmor_profile"
	ctrSELinux  = "LinuxContainerSecurityContext.selinux_options"
)

// CheckSandboxSecurity refuses the LSM requests of a pod that berth
// cannot apply on this node: checked before anything of the pod is made,
// since a pod without a sandbox container has no spec of its own.
func CheckSandboxSecurity(h Host, cfg *runtimeapi.PodSandboxConfig) error {
	_, err := sandboxLabels(h, &Pod{Config: cfg})
	return err
}

// sandboxLabels are the pod's own: its sandbox container's.
func sandboxLabels(h Host, p *Pod) (labels, error) {
	sc := p.Config.GetLinux().GetSecurityContext()
	var l labels
	req, err := appArmorRequest(podAppArmor, sc.GetApparmor(), "", "")
	if err != nil {
		return l, err
	}
	if l.appArmor, err = appArmorProfile(h, req, sc.GetPrivileged()); err != nil {
		return l, err
	}
	l.process, l.mount, err = selinuxLabels(h, p, podSELinux, sc.GetSelinuxOptions(), nil, sc.GetPrivileged())
	return l, err
}

// containerLabels are an app container's: its own requests, the pod's
// where it makes none. The pod's requests are checked for every
// container, as they are its defaults.
func containerLabels(h Host, p *Pod, sc *runtimeapi.LinuxContainerSecurityContext) (labels, error) {
	if _, err := sandboxLabels(h, p); err != nil {
		return labels{}, err
	}
	var l labels
	pod := p.Config.GetLinux().GetSecurityContext()
	req, err := appArmorRequest(ctrAppArmor, sc.GetApparmor(), ctrProfile, sc.GetApparmorProfile()) //nolint:staticcheck // deprecated, but kubelets still send it
	if err != nil {
		return l, err
	}
	if req.profile == nil && pod.GetApparmor() != nil {
		req = appArmorReq{field: podAppArmor, profile: pod.GetApparmor()}
	}
	if l.appArmor, err = appArmorProfile(h, req, sc.GetPrivileged()); err != nil {
		return l, err
	}
	l.process, l.mount, err = selinuxLabels(h, p, ctrSELinux, sc.GetSelinuxOptions(), pod.GetSelinuxOptions(), sc.GetPrivileged())
	return l, err
}
