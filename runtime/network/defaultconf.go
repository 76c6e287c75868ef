package network

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
)

// DefaultConfName is the file berth writes into an empty conf dir.
const DefaultConfName = "10-berth-bridge.conflist"

// DefaultBridge is the bridge of berth's default network.
const DefaultBridge = "berth0"

// renderDefaultConf is berth's default network for subnets (one per
// family): a bridge with host-local addresses, then portmap for host
// ports and bandwidth for the pods' traffic-shaping annotations, each
// receiving its capability argument. Traffic to the outside is
// masqueraded by one rule per subnet (see ensureMasquerade), not per pod
// by the bridge plugin.
//
// forceAddress: when the subnet changes (the kubelet's pod CIDR arrives,
// or the old one got taken), the bridge still holds the old gateway, and
// the bridge plugin refuses to add a second IPv4 one; forced, it moves
// the gateway to the new subnet at the next pod.
func renderDefaultConf(subnets []*net.IPNet) ([]byte, error) {
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, s := range subnets {
		ranges = append(ranges, []map[string]string{{"subnet": s.String()}})
		dst := "0.0.0.0/0"
		if s.IP.To4() == nil {
			dst = "::/0"
		}
		routes = append(routes, map[string]string{"dst": dst})
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       DefaultNetworkName,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": DefaultBridge, "isGateway": true, "hairpinMode": true, "forceAddress": true,
				"ipam": map[string]any{"type": "host-local", "ranges": ranges, "routes": routes},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{CapPortMappings: true}},
			map[string]any{"type": "bandwidth", "capabilities": map[string]bool{CapBandwidth: true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// WriteDefaultConf writes berth's default network for subnet into dir.
func WriteDefaultConf(dir, subnet string) error {
	_, s, err := net.ParseCIDR(subnet)
	if err != nil {
		return err
	}
	data, err := renderDefaultConf([]*net.IPNet{s})
	if err != nil {
		return err
	}
	return writeConf(filepath.Join(dir, DefaultConfName), data)
}

// writeConf replaces file with data atomically: libcni never reads half
// a configuration.
func writeConf(file string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil { //nolint:gosec // the CNI config dir is read by CNI plugins and tools, 0755 as installed
		return err
	}
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil { //nolint:gosec // CNI config is public (no secrets), readable as its installers make it
		return err
	}
	return os.Rename(tmp, file)
}

// ConfSubnets are the subnets a network's IPAM configurations name
// (host-local's "ranges" and its older single "subnet"), for the overlap
// checks.
func ConfSubnets(list *libcni.NetworkConfigList) []*net.IPNet {
	var out []*net.IPNet
	add := func(s string) {
		if _, n, err := net.ParseCIDR(s); err == nil {
			out = append(out, n)
		}
	}
	for _, p := range list.Plugins {
		var conf struct {
			IPAM struct {
				Subnet string `json:"subnet"`
				Ranges [][]struct {
					Subnet string `json:"subnet"`
				} `json:"ranges"`
			} `json:"ipam"`
		}
		if json.Unmarshal(p.Bytes, &conf) != nil {
			continue
		}
		add(conf.IPAM.Subnet)
		for _, set := range conf.IPAM.Ranges {
			for _, r := range set {
				add(r.Subnet)
			}
		}
	}
	return out
}

// ConfBridges are the bridges a network's bridge plugins make: addresses
// and routes on them are the network's own, not a conflict.
func ConfBridges(list *libcni.NetworkConfigList) []string {
	var out []string
	for _, p := range list.Plugins {
		if p.Network.Type != "bridge" {
			continue
		}
		var conf struct {
			Bridge string `json:"bridge"`
		}
		_ = json.Unmarshal(p.Bytes, &conf)
		if conf.Bridge == "" {
			conf.Bridge = "cni0" // the bridge plugin's default
		}
		out = append(out, conf.Bridge)
	}
	return out
}
