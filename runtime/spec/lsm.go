package spec

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// berth applies no AppArmor profile and no SELinux label yet. A request
// for one is refused, naming the field, never dropped: a dropped label is
// a silent downgrade. Unconfined and empty requests ask for nothing.
// containerd, on a node without AppArmor, refuses every profile type but
// Unconfined, RuntimeDefault included; berth does the same on every node.

// CheckSandboxSecurity refuses the LSM requests of a pod that berth
// cannot apply.
func CheckSandboxSecurity(cfg *runtimeapi.PodSandboxConfig) error {
	sc := cfg.GetLinux().GetSecurityContext()
	if err := checkSELinux("LinuxSandboxSecurityContext.selinux_options", sc.GetSelinuxOptions()); err != nil {
		return err
	}
	return checkAppArmor("LinuxSandboxSecurityContext.apparmor", sc.GetApparmor())
}

// CheckContainerSecurity refuses the LSM requests of a container that
// berth cannot apply.
func CheckContainerSecurity(sc *runtimeapi.LinuxContainerSecurityContext) error {
	if err := checkSELinux("LinuxContainerSecurityContext.selinux_options", sc.GetSelinuxOptions()); err != nil {
		return err
	}
	if err := checkAppArmor("LinuxContainerSecurityContext.apparmor", sc.GetApparmor()); err != nil {
		return err
	}
	// Deprecated in the CRI, but the kubelet still sends it.
	if p := sc.GetApparmorProfile(); p != "" && p != "unconfined" { //nolint:staticcheck // deprecated, but kubelets still send it
		return errdefs.InvalidArgument("LinuxContainerSecurityContext.apparmor_profile: AppArmor profile %q cannot be applied: berth applies no AppArmor profiles (only \"unconfined\")", p)
	}
	return nil
}

func checkAppArmor(field string, sp *runtimeapi.SecurityProfile) error {
	if sp == nil {
		return nil
	}
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		if sp.GetLocalhostRef() != "" {
			return errdefs.InvalidArgument("%s: localhost_ref %q is only valid with profile type Localhost", field, sp.GetLocalhostRef())
		}
		return nil
	case runtimeapi.SecurityProfile_Localhost:
		return errdefs.InvalidArgument("%s: AppArmor profile localhost/%s cannot be applied: berth applies no AppArmor profiles (only Unconfined)", field, sp.GetLocalhostRef())
	}
	return errdefs.InvalidArgument("%s: AppArmor profile type %s cannot be applied: berth applies no AppArmor profiles (only Unconfined)", field, sp.GetProfileType())
}

func checkSELinux(field string, o *runtimeapi.SELinuxOption) error {
	if o.GetUser() == "" && o.GetRole() == "" && o.GetType() == "" && o.GetLevel() == "" {
		return nil
	}
	return errdefs.InvalidArgument("%s: SELinux label %s:%s:%s:%s cannot be applied: berth applies no SELinux labels",
		field, o.GetUser(), o.GetRole(), o.GetType(), o.GetLevel())
}
