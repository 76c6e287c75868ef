package main

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/network"
)

func hostNet(t *testing.T, s, dev string, route bool) network.HostNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return network.HostNet{Net: n, Dev: dev, Route: route}
}

func TestSubnetFindings(t *testing.T) {
	cni0 := []network.HostNet{hostNet(t, "10.88.0.1/16", "cni0", false), hostNet(t, "10.88.0.0/16", "cni0", true)}
	berth := func(subnet string) *libcni.NetworkConfigList {
		l, err := libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"berth","plugins":[{"type":"bridge","bridge":"berth0","ipam":{"type":"host-local","ranges":[[{"subnet":"` + subnet + `"}]]}}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	containerd, err := libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"containerd-net","plugins":[{"type":"bridge","ipam":{"type":"host-local","subnet":"10.88.0.0/16"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	dhcp, err := libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"lan","plugins":[{"type":"macvlan","ipam":{"type":"dhcp"}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	auto, explicit := config.Default(), config.Default()
	explicit.CNI.DefaultSubnetSet = true
	for _, tc := range []struct {
		name    string
		cfg     *config.Config
		list    *libcni.NetworkConfigList
		nets    []network.HostNet
		netsErr error
		ok      bool
		detail  string // in the finding's detail
	}{
		{"berth's network clear", auto, berth("10.88.0.0/16"), []network.HostNet{hostNet(t, "10.88.0.1/16", "berth0", false)}, nil, true, "no overlap"},
		{"berth's network under cni0", auto, berth("10.88.0.0/16"), cni0, nil, false, "route 10.88.0.0/16 on cni0"},
		{"a wider route", auto, berth("10.90.0.0/16"), []network.HostNet{hostNet(t, "10.0.0.0/8", "wg0", true)}, nil, false, "route 10.0.0.0/8 on wg0"},
		{"containerd's own bridge is its own", auto, containerd, cni0, nil, true, "no overlap"},
		{"no subnet named", auto, dhcp, cni0, nil, true, "names no subnet"},
		{"default to write, free", auto, nil, nil, nil, true, "10.88.0.0/16: no overlap"},
		{"default to write, taken", auto, nil, cni0, nil, true, "berthd will use 10.90.0.0/16"},
		{"explicit default taken", explicit, nil, cni0, nil, false, "cni.default_subnet 10.88.0.0/16 overlaps"},
		{"host unreadable", auto, nil, nil, errors.New("netlink: permission denied"), false, "cannot list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := subnetFindings(tc.cfg, tc.list, tc.nets, tc.netsErr)
			if len(fs) != 1 || fs[0].ok != tc.ok || !strings.Contains(fs[0].detail, tc.detail) {
				t.Errorf("findings = %+v, want ok=%v with %q", fs, tc.ok, tc.detail)
			}
			if !fs[0].ok && fs[0].fix == "" && tc.netsErr == nil {
				t.Error("a failed finding has no fix")
			}
		})
	}
}
