package spec

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/runtime/pinns"
)

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
// shares the node's, the pod's network namespace, and a cgroup namespace
// on cgroup v2.
func sandboxNamespaces(h Host, p *Pod, ns *runtimeapi.NamespaceOption) []specs.LinuxNamespace {
	out := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if ns.GetPid() != runtimeapi.NamespaceMode_NODE {
		out = append(out, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if ns.GetIpc() != runtimeapi.NamespaceMode_NODE {
		out = append(out, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if ns.GetNetwork() != runtimeapi.NamespaceMode_NODE {
		out = append(out,
			specs.LinuxNamespace{Type: specs.UTSNamespace},
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: p.NetNS})
	}
	if h.CgroupMode == host.CgroupV2 {
		out = append(out, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return out
}
