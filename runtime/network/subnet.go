package network

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/berthrt/berth/runtime/errdefs"
)

// HostNet is an address or a route the host holds: a pod subnet that
// overlaps one is unreachable from the host (or hides what is behind it).
type HostNet struct {
	Net   *net.IPNet
	Dev   string // interface; "" for a route without one
	Route bool   // a route of the main table, else an interface's address
}

func (h HostNet) String() string {
	what := "address " + h.Net.String()
	if h.Route {
		what = "route " + h.Net.String()
	}
	if h.Dev != "" {
		what += " on " + h.Dev
	}
	return what
}

// HostNets lists the host's addresses and main-table routes, IPv4 and
// IPv6. Addresses count even on an interface that is down: it has no
// route yet, but gets one when it comes up (podman's and containerd's
// bridges are down until their first pod).
func HostNets() ([]HostNet, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []HostNet
	for _, a := range addrs {
		if a.IPNet != nil {
			out = append(out, HostNet{Net: a.IPNet, Dev: names[a.LinkIndex]})
		}
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL) // the main table
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst != nil {
			out = append(out, HostNet{Net: r.Dst, Dev: names[r.LinkIndex], Route: true})
		}
	}
	return out, nil
}

// Overlapping returns the host networks that share addresses with
// subnet, but for those on the network's own bridges and default routes
// (which overlap everything and mean nothing here).
func Overlapping(subnet *net.IPNet, nets []HostNet, ownBridges ...string) []HostNet {
	var out []HostNet
	for _, h := range nets {
		if h.Net == nil || slices.Contains(ownBridges, h.Dev) {
			continue
		}
		if ones, _ := h.Net.Mask.Size(); ones == 0 {
			continue
		}
		if h.Net.Contains(subnet.IP) || subnet.Contains(h.Net.IP) {
			out = append(out, h)
		}
	}
	return out
}

// freeSubnetCandidates are the private /16s berth tries, in order, when
// its default subnet is taken. They skip 10.88 (containerd's and
// podman's default), 10.89 (podman's pool for new networks), 10.96/12
// (Kubernetes' default service range) and 10.244 (flannel's and
// kubeadm's usual pod range): each is likely to appear on the node later.
func freeSubnetCandidates() []*net.IPNet {
	var out []*net.IPNet
	for b := 90; b <= 255; b++ {
		if (b >= 96 && b <= 111) || b == 244 {
			continue
		}
		out = append(out, &net.IPNet{IP: net.IPv4(10, byte(b), 0, 0).To4(), Mask: net.CIDRMask(16, 32)})
	}
	return out
}

// SubnetPlan is the subnet berth gives its default network and why.
type SubnetPlan struct {
	Subnet *net.IPNet
	// Taken lists what holds the wanted subnet when another was picked.
	Taken  []HostNet
	Source string // one of the source* values
}

// Where the default network's subnet came from; recorded with it.
const (
	sourceDefault = "default"  // cni.default_subnet's built-in value, free
	sourcePicked  = "picked"   // a free /16, the default being taken
	sourceConfig  = "config"   // cni.default_subnet set in the config file
	sourcePodCIDR = "pod_cidr" // the kubelet's, from UpdateRuntimeConfig
)

// PlanDefaultSubnet decides the subnet of berth's default network:
// wanted when no other interface or route holds it; else, when wanted
// was set explicitly, a FailedPrecondition naming what holds it (two
// bridges on one subnet leave pods unreachable, silently); else the first
// free candidate /16.
func PlanDefaultSubnet(wanted string, explicit bool, nets []HostNet) (SubnetPlan, error) {
	_, want, err := net.ParseCIDR(wanted)
	if err != nil {
		return SubnetPlan{}, errdefs.InvalidArgument("cni.default_subnet %q: %v", wanted, err)
	}
	taken := Overlapping(want, nets, DefaultBridge)
	switch {
	case len(taken) == 0 && explicit:
		return SubnetPlan{Subnet: want, Source: sourceConfig}, nil
	case len(taken) == 0:
		return SubnetPlan{Subnet: want, Source: sourceDefault}, nil
	case explicit:
		return SubnetPlan{}, errdefs.FailedPrecondition("cni.default_subnet %s overlaps the host's %s: another network holds it and pods on %s would be unreachable; set a free subnet, or remove cni.default_subnet for berth to pick one",
			want, joinNets(taken), DefaultBridge)
	}
	for _, c := range freeSubnetCandidates() {
		if len(Overlapping(c, nets, DefaultBridge)) == 0 {
			return SubnetPlan{Subnet: c, Taken: taken, Source: sourcePicked}, nil
		}
	}
	return SubnetPlan{}, errdefs.FailedPrecondition("the default pod subnet %s is taken (%s) and no free private /16 is left; set cni.default_subnet", want, joinNets(taken))
}

func joinNets(nets []HostNet) string {
	s := make([]string, len(nets))
	for i, n := range nets {
		s[i] = n.String()
	}
	return strings.Join(s, ", ")
}
