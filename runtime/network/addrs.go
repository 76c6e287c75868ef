package network

import (
	"errors"
	"fmt"

	cnitypes "github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// restoreAddrs puts the addresses of a pod's CNI result back on its
// interfaces in the namespace at path where they are missing.
//
// gVisor's netstack takes the addresses off the pod's veth when its
// sandbox starts. The bridge plugin finds the masquerade rules to delete
// by the addresses on the interface, so without this every gVisor pod
// would leave its iptables rules behind.
func restoreAddrs(path string, res cnitypes.Result) error {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return err
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // nothing to restore into
		}
		return err
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	for _, ip := range r.IPs {
		if ip.Interface == nil || *ip.Interface < 0 || *ip.Interface >= len(r.Interfaces) || r.Interfaces[*ip.Interface].Sandbox == "" {
			continue
		}
		link, err := h.LinkByName(r.Interfaces[*ip.Interface].Name)
		if err != nil {
			continue // gone with the namespace's interfaces: nothing to find rules by
		}
		have, err := h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		if hasAddr(have, ip.Address.IP) {
			continue
		}
		addr := &netlink.Addr{IPNet: &ip.Address}
		if err := h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("restore %s on %s: %w", ip.Address.String(), link.Attrs().Name, err)
		}
	}
	return nil
}

func hasAddr(addrs []netlink.Addr, ip []byte) bool {
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return true
		}
	}
	return false
}
