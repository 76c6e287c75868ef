package network

import (
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/berthrt/berth/runtime/pinns"
)

// NewNetNS creates a network namespace pinned at path, with its loopback
// interface up (so no loopback plugin needs to run). Sysctls come after
// CNI ADD: per-interface ones need the interfaces.
func NewNetNS(path string) error {
	return pinns.Pin(path, pinns.Net, LoopbackUp)
}

// RemoveNetNS unpins and removes the namespace at path; a missing one is
// not an error.
func RemoveNetNS(path string) error { return pinns.Remove(path) }

// LoopbackUp sets "lo" up in the calling thread's namespace (the netlink
// socket is opened on the calling thread).
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
