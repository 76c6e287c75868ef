package pod

import (
	"fmt"
	"maps"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pinns"
)

// Defaults of pods with their own network namespace (as containerd 2.x):
// non-root processes bind any port and ping.
const (
	sysctlPortStart = "net.ipv4.ip_unprivileged_port_start"
	sysctlPingRange = "net.ipv4.ping_group_range"
)

// sysctlPlan says who sets each of a pod's sysctls.
type sysctlPlan struct {
	// net: berth, in the pod's network namespace after CNI ADD.
	net map[string]string
	// pinned: berth, in the IPC and UTS namespaces it pins.
	pinned map[pinns.Kind]map[string]string
	// sandbox: the runtime, in the sandbox container's namespaces.
	sandbox map[string]string
}

// planSysctls splits a pod's (checked, normalised) sysctls by who sets
// them; berthPins says berth pins the pod's IPC and UTS namespaces, u is
// the pod's user namespace (nil: the node's).
func (m *Manager) planSysctls(h *oci.Handler, cfg *runtimeapi.PodSandboxConfig, berthPins bool, u *userNS, split map[pinns.Kind]map[string]string) (sysctlPlan, error) {
	var p sysctlPlan
	if h.Traits().Sandboxed {
		// gVisor keeps them in its own kernel, network stack included;
		// berth's defaults are Linux's, not necessarily its.
		p.sandbox = map[string]string{}
		for _, kv := range split {
			maps.Copy(p.sandbox, kv)
		}
		return p, nil
	}
	if !hostNetwork(cfg) {
		p.net = maps.Clone(split[pinns.Net])
		if p.net == nil {
			p.net = map[string]string{}
		}
		if v, set := p.net[sysctlPingRange]; set && u != nil {
			host, err := hostGroupRange(v, u)
			if err != nil {
				return p, err
			}
			p.net[sysctlPingRange] = host
		}
		sec := m.cfg.Security
		if _, set := p.net[sysctlPortStart]; sec.UnprivilegedPorts && !set {
			p.net[sysctlPortStart] = "0"
		}
		if _, set := p.net[sysctlPingRange]; sec.UnprivilegedICMP && !set {
			p.net[sysctlPingRange] = "0 2147483647"
			if u != nil {
				// Berth writes host gids: the pod's are these (the pod
				// reads "0 <length-1>").
				g := u.GIDs[0]
				p.net[sysctlPingRange] = fmt.Sprintf("%d %d", g.HostID, uint64(g.HostID)+uint64(g.Size)-1)
			}
		}
	}
	if berthPins {
		p.pinned = map[pinns.Kind]map[string]string{pinns.IPC: split[pinns.IPC], pinns.UTS: split[pinns.UTS]}
		return p, nil
	}
	p.sandbox = map[string]string{}
	maps.Copy(p.sandbox, split[pinns.IPC])
	maps.Copy(p.sandbox, split[pinns.UTS])
	return p, nil
}

// hostGroupRange is a pod's ping_group_range ("first last", the pod's
// gids) in host gids: berth writes it from the host's user namespace,
// where the kernel reads the numbers, while runtimes write it from the
// pod's. A range outside the pod's groups is refused.
func hostGroupRange(v string, u *userNS) (string, error) {
	var first, last uint32
	if n, err := fmt.Sscanf(v, "%d %d", &first, &last); n != 2 || err != nil || first > last {
		return "", errdefs.InvalidArgument("sysctl %s=%q: want \"first last\" group ids", sysctlPingRange, v)
	}
	g := u.GIDs[0]
	if last >= g.Size {
		return "", errdefs.InvalidArgument("sysctl %s=%q: the pod's user namespace maps groups 0 to %d only", sysctlPingRange, v, g.Size-1)
	}
	return fmt.Sprintf("%d %d", uint64(g.HostID)+uint64(first), uint64(g.HostID)+uint64(last)), nil
}
