package spec

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// checkPrivileged refuses a privileged container in a pod that is not:
// the pod's privilege bounds its containers'. The kubelet never sends
// one (it validates the pod first) and containerd refuses it ("no
// privileged container allowed in sandbox"); granting it would give a
// container of an unprivileged pod the node's devices and capabilities.
func checkPrivileged(p *Pod, sc *runtimeapi.LinuxContainerSecurityContext) error {
	if sc.GetPrivileged() && !p.Config.GetLinux().GetSecurityContext().GetPrivileged() {
		return errdefs.InvalidArgument("LinuxContainerSecurityContext.privileged: a privileged container needs a privileged pod, and the pod's LinuxSandboxSecurityContext.privileged is false")
	}
	return nil
}
