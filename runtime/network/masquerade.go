package network

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// DefaultNetworkName is the name of the network WriteDefaultConf writes.
const DefaultNetworkName = "berth"

// masqueradeComment marks berth's rule in the nat table.
const masqueradeComment = "berth: default pod network to the outside"

// ensureMasquerade keeps one nat rule that masquerades traffic from subnet
// leaving it. The default network's bridge does not (no ipMasq): its
// per-pod chains would cost several iptables runs at every pod start and
// stop and grow the nat table by a chain per pod; one rule for the subnet,
// as Docker and Podman keep per network, does the same. An IPv6 subnet
// (a dual-stack pod CIDR) gets its rule from ip6tables.
func ensureMasquerade(ctx context.Context, subnet string) error {
	tool := "iptables"
	if ip, _, err := net.ParseCIDR(subnet); err == nil && ip.To4() == nil {
		tool = "ip6tables"
	}
	rule := []string{"POSTROUTING", "-s", subnet, "!", "-d", subnet, "-m", "comment", "--comment", masqueradeComment, "-j", "MASQUERADE"}
	iptables := func(op string) ([]byte, error) {
		args := append([]string{"-w", "-t", "nat", op}, rule...)
		return exec.CommandContext(ctx, tool, args...).CombinedOutput()
	}
	if _, err := iptables("-C"); err == nil {
		return nil
	}
	if out, err := iptables("-A"); err != nil {
		return fmt.Errorf("masquerade the default pod network %s: %w: %s", subnet, err, strings.TrimSpace(string(out)))
	}
	return nil
}
