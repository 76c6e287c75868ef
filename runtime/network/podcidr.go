package network

import (
	"context"
	"net"
	"slices"
	"strings"

	"github.com/berthrt/berth/runtime/errdefs"
)

// SetPodCIDR puts the kubelet's pod CIDR (UpdateRuntimeConfig's
// pod_cidr: one subnet, or an IPv4 and an IPv6 one separated by a comma)
// into berth's default network, as containerd renders its conf_template.
// Only berth's own default conflist is rewritten, and only when the
// CIDR changes: the kubelet sends it again after restarts. With an
// administrator's network the kubelet's CIDR is theirs to use, and this
// does nothing. A malformed CIDR is InvalidArgument.
func (c *CNI) SetPodCIDR(ctx context.Context, podCIDR string) error {
	subnets, err := parsePodCIDRs(podCIDR)
	if err != nil {
		return err
	}
	c.renderMu.Lock()
	defer c.renderMu.Unlock()
	rec, owned := c.owned()
	if !owned {
		c.log.Info("pod CIDR left to the CNI configuration: it is not berth's default network", "podCIDR", podCIDR, "confDir", c.opts.ConfDir)
		return nil
	}
	if slices.Equal(rec.Subnets, subnetStrings(subnets)) {
		return nil
	}
	if nets, err := c.opts.HostNets(); err == nil {
		c.warnOverlaps(subnetStrings(subnets), nets)
	}
	if err := c.writeDefault(subnets, sourcePodCIDR); err != nil {
		return err
	}
	// Pods already running keep their addresses in the old subnet, and
	// its masquerade rule with them.
	for _, s := range subnets {
		if err := c.opts.masquerade(ctx, s.String()); err != nil {
			return err
		}
	}
	c.log.Info("default CNI network now on the kubelet's pod CIDR", "file", rec.File, "podCIDR", podCIDR, "was", strings.Join(rec.Subnets, ","))
	return nil
}

// parsePodCIDRs reads a pod_cidr: subnets given by their network
// address (host-local refuses host bits), at most one per family, each
// with room for a gateway and a pod.
func parsePodCIDRs(podCIDR string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	var v4, v6 bool
	for _, part := range strings.Split(podCIDR, ",") {
		part = strings.TrimSpace(part)
		ip, n, err := net.ParseCIDR(part)
		if err != nil {
			return nil, errdefs.InvalidArgument("pod_cidr %q: %v", podCIDR, err)
		}
		if !ip.Equal(n.IP) {
			return nil, errdefs.InvalidArgument("pod_cidr %q: %s has host bits set (the network is %s)", podCIDR, part, n)
		}
		ones, bits := n.Mask.Size()
		if bits-ones < 2 {
			return nil, errdefs.InvalidArgument("pod_cidr %q: %s has no room for a gateway and pods", podCIDR, part)
		}
		isV4 := n.IP.To4() != nil
		if (isV4 && v4) || (!isV4 && v6) {
			return nil, errdefs.InvalidArgument("pod_cidr %q: more than one subnet of a family", podCIDR)
		}
		v4, v6 = v4 || isV4, v6 || !isV4
		out = append(out, n)
	}
	return out, nil
}
