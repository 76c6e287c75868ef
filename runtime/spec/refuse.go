package spec

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// checkContainerRequest refuses, before anything of the container is
// built, what it asks that its pod or the node does not allow and berth
// would otherwise drop.
func checkContainerRequest(h Host, p *Pod, cfg *runtimeapi.ContainerConfig) error {
	sc := cfg.GetLinux().GetSecurityContext()
	if err := checkPrivileged(p, sc); err != nil {
		return err
	}
	if err := checkNamespaceModes(p, sc.GetNamespaceOptions()); err != nil {
		return err
	}
	return CheckResources(h, cfg.GetLinux().GetResources())
}

// checkNamespaceModes refuses a container whose namespace request its pod
// contradicts. A container gets its pod's network and IPC namespaces, and
// the node's PID namespace in a host-PID pod (namespaceOptions): POD, the
// zero value, follows the pod; an explicit request for something else
// would be dropped.
func checkNamespaceModes(p *Pod, ctr *runtimeapi.NamespaceOption) error {
	pod := p.Config.GetLinux().GetSecurityContext().GetNamespaceOptions()
	for _, ns := range []struct {
		name     string
		pod, ctr runtimeapi.NamespaceMode
	}{
		{"network", pod.GetNetwork(), ctr.GetNetwork()},
		{"ipc", pod.GetIpc(), ctr.GetIpc()},
	} {
		podOnNode := ns.pod == runtimeapi.NamespaceMode_NODE
		if ns.ctr == runtimeapi.NamespaceMode_NODE && !podOnNode {
			return errdefs.InvalidArgument("LinuxContainerSecurityContext.namespace_options.%s is NODE, but the pod has its own: a container shares its pod's %s namespace", ns.name, ns.name)
		}
		if ns.ctr == runtimeapi.NamespaceMode_CONTAINER && podOnNode {
			return errdefs.InvalidArgument("LinuxContainerSecurityContext.namespace_options.%s is CONTAINER, but the pod shares the node's: a container shares its pod's %s namespace", ns.name, ns.name)
		}
	}
	if pod.GetPid() == runtimeapi.NamespaceMode_NODE {
		if m := ctr.GetPid(); m == runtimeapi.NamespaceMode_CONTAINER || m == runtimeapi.NamespaceMode_TARGET {
			return errdefs.InvalidArgument("LinuxContainerSecurityContext.namespace_options.pid is %s, but the pod shares the node's PID namespace, and so do its containers", m)
		}
	} else if ctr.GetPid() == runtimeapi.NamespaceMode_NODE {
		// hostPID is the pod's to choose (the kubelet asks it of the pod
		// and then of every container); in a pod with a user namespace it
		// would also leave the container without a PID namespace of its own.
		return errdefs.InvalidArgument("LinuxContainerSecurityContext.namespace_options.pid is NODE, but the pod has its own PID namespaces: only a host-PID pod's containers share the node's")
	}
	return nil
}

// CheckResources refuses resources the node cannot apply: unified, the
// cgroup v2 files, when containers are in cgroup v1 hierarchies.
func CheckResources(h Host, r *runtimeapi.LinuxContainerResources) error {
	if len(r.GetUnified()) > 0 && h.CgroupMode != host.CgroupV2 {
		return errdefs.FailedPrecondition("LinuxContainerResources.unified: it sets cgroup v2 files, and this node's containers are in cgroup %s", h.CgroupMode)
	}
	return nil
}
