package network

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/berthrt/berth/runtime/errdefs"
)

func cidr(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip // an address keeps its host bits, as netlink reports it
	return n
}

func route(t *testing.T, s, dev string) HostNet {
	return HostNet{Net: cidr(t, s), Dev: dev, Route: true}
}
func addr(t *testing.T, s, dev string) HostNet { return HostNet{Net: cidr(t, s), Dev: dev} }

func TestOverlapping(t *testing.T) {
	nets := []HostNet{
		route(t, "0.0.0.0/0", "eth0"),       // default route: overlaps all, means nothing
		route(t, "192.0.2.0/24", "eth0"),    // unrelated
		route(t, "10.88.0.0/16", "cni0"),    // containerd's bridge
		addr(t, "10.88.0.1/16", "berth0"),   // berth's own
		route(t, "10.0.0.0/8", "tun0"),      // a VPN's wider route
		addr(t, "10.89.3.4/32", "lo"),       // a single address inside
		addr(t, "fd00::2/64", "eth0"),       // another family
		route(t, "10.90.0.0/24", "podman1"), // a narrower network inside
	}
	names := func(hs []HostNet) string {
		var s []string
		for _, h := range hs {
			s = append(s, h.String())
		}
		return strings.Join(s, "; ")
	}
	for _, tc := range []struct {
		subnet string
		want   string
	}{
		{"10.88.0.0/16", "route 10.88.0.0/16 on cni0; route 10.0.0.0/8 on tun0"},
		{"10.89.0.0/16", "route 10.0.0.0/8 on tun0; address 10.89.3.4/32 on lo"},
		{"10.90.0.0/16", "route 10.0.0.0/8 on tun0; route 10.90.0.0/24 on podman1"},
		{"172.20.0.0/16", ""},
		{"fd00::/48", "address fd00::2/64 on eth0"},
	} {
		got := names(Overlapping(cidr(t, tc.subnet), nets, DefaultBridge))
		if got != tc.want {
			t.Errorf("Overlapping(%s) = %q, want %q", tc.subnet, got, tc.want)
		}
	}
}

func TestPlanDefaultSubnet(t *testing.T) {
	cni0 := []HostNet{addr(t, "10.88.0.1/16", "cni0"), route(t, "10.88.0.0/16", "cni0")}
	for _, tc := range []struct {
		name     string
		wanted   string
		explicit bool
		nets     []HostNet
		subnet   string // "" means an error
		source   string
	}{
		{"free default", "10.88.0.0/16", false, nil, "10.88.0.0/16", sourceDefault},
		{"own bridge only", "10.88.0.0/16", false, []HostNet{addr(t, "10.88.0.1/16", "berth0")}, "10.88.0.0/16", sourceDefault},
		{"taken default picks", "10.88.0.0/16", false, cni0, "10.90.0.0/16", sourcePicked},
		{"down interface's address counts", "10.88.0.0/16", false, []HostNet{addr(t, "10.88.0.1/16", "dummy0")}, "10.90.0.0/16", sourcePicked},
		{"picks past taken candidates", "10.88.0.0/16", false,
			append([]HostNet{route(t, "10.90.0.0/15", "x"), addr(t, "10.92.7.1/24", "y")}, cni0...), "10.93.0.0/16", sourcePicked},
		{"skips the service range", "10.88.0.0/16", false,
			append([]HostNet{route(t, "10.90.0.0/15", "x"), route(t, "10.92.0.0/14", "y")}, cni0...), "10.112.0.0/16", sourcePicked},
		{"explicit free", "10.50.0.0/16", true, cni0, "10.50.0.0/16", sourceConfig},
		{"explicit taken refuses", "10.88.0.0/16", true, cni0, "", ""},
		{"nothing free", "10.88.0.0/16", false, []HostNet{route(t, "10.0.0.0/8", "tun0")}, "", ""},
		{"bad subnet", "10.88.0.0/33", false, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := PlanDefaultSubnet(tc.wanted, tc.explicit, tc.nets)
			if tc.subnet == "" {
				if err == nil {
					t.Fatalf("plan = %+v, want an error", plan)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.Subnet.String() != tc.subnet || plan.Source != tc.source {
				t.Errorf("plan = %s (%s), want %s (%s)", plan.Subnet, plan.Source, tc.subnet, tc.source)
			}
			if (plan.Source == sourcePicked) != (len(plan.Taken) > 0) {
				t.Errorf("taken = %v", plan.Taken)
			}
		})
	}
	// The refusal says what holds the subnet and how to get out of it.
	_, err := PlanDefaultSubnet("10.88.0.0/16", true, cni0)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "on cni0") || !strings.Contains(err.Error(), "cni.default_subnet") {
		t.Errorf("explicit conflict: %v", err)
	}
}
