package spec

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/host"
)

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

// sandboxNamespaces are the namespaces of a pod's sandbox container: its
// own mount namespace, new PID, IPC and UTS namespaces unless the pod
// shares the node's (or berth pinned them: a pod with a user namespace),
// the pod's network namespace, and a cgroup namespace on cgroup v2.
func sandboxNamespaces(h Host, p *Pod, ns *runtimeapi.NamespaceOption) []specs.LinuxNamespace {
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if ns.GetPid() != runtimeapi.NamespaceMode_NODE {
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if ns.GetIpc() != runtimeapi.NamespaceMode_NODE {
		out = append(out, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: p.IPCNS})
	}
	if ns.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		out = append(out,
			specs.LinuxNamespace{Type: specs.UTSNamespace, Path: p.UTSNS},
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.NetNS})
	}
	if h.CgroupMode == host.CgroupV2 {
		out = append(out, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return out
}

// setUserNS puts a container of a pod with a user namespace in it: the
// runtime joins the pinned namespace (so every container of the pod, and
// the namespaces it owns, share one) and checks the mappings against it.
func setUserNS(s *specs.Spec, p *Pod) {
	if p.UserNS == "" {
		return
	}
	s.Linux.Namespaces = append([]specs.LinuxNamespace{{Type: specs.UserNamespace, Path: p.UserNS}}, s.Linux.Namespaces...)
	s.Linux.UIDMappings, s.Linux.GIDMappings = p.UIDs, p.GIDs
}
