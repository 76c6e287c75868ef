package main

import (
	"fmt"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/network"
)

// subnetFindings reports overlaps between the pod network's subnets and
// the host's addresses and routes: two bridges on one subnet (berth's and
// containerd's cni0 both on 10.88.0.0/16) leave pods unreachable with no
// error anywhere. list is the CNI network in use; nil when berthd will
// write its default one, whose subnet it then plans as it will at start.
func subnetFindings(cfg *config.Config, list *libcni.NetworkConfigList, nets []network.HostNet, netsErr error) []finding {
	if netsErr != nil {
		return []finding{{name: "cni subnet", detail: "cannot list the host's addresses and routes: " + netsErr.Error()}}
	}
	if list == nil {
		plan, err := network.PlanDefaultSubnet(cfg.CNI.DefaultSubnet, cfg.CNI.DefaultSubnetSet, nets)
		switch {
		case err != nil:
			return []finding{{name: "cni subnet", detail: err.Error(), fix: "set [cni] default_subnet to a free subnet, or remove it for berthd to pick one"}}
		case len(plan.Taken) > 0:
			return []finding{{name: "cni subnet", ok: true, detail: fmt.Sprintf("%s is held by the host's %s; berthd will use %s",
				cfg.CNI.DefaultSubnet, describe(plan.Taken), plan.Subnet)}}
		}
		return []finding{{name: "cni subnet", ok: true, detail: plan.Subnet.String() + ": no overlap with the host's addresses and routes"}}
	}
	subnets := network.ConfSubnets(list)
	if len(subnets) == 0 {
		return []finding{{name: "cni subnet", ok: true, detail: "network " + list.Name + " names no subnet in its IPAM; not checked"}}
	}
	var out []finding
	for _, s := range subnets {
		taken := network.Overlapping(s, nets, network.ConfBridges(list)...)
		if len(taken) == 0 {
			out = append(out, finding{name: "cni subnet " + s.String(), ok: true, detail: "no overlap with the host's addresses and routes"})
			continue
		}
		out = append(out, finding{name: "cni subnet " + s.String(), detail: "network " + list.Name + " overlaps the host's " + describe(taken) + ": its pods may be unreachable",
			fix: "give one of the two networks another subnet"})
	}
	return out
}

func describe(nets []network.HostNet) string {
	s := make([]string, len(nets))
	for i, n := range nets {
		s[i] = n.String()
	}
	return strings.Join(s, ", ")
}
