package network

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestNewNetNS pins a network namespace and finds its loopback up, and
// the namespace of the test's own threads untouched.
func TestNewNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces and mounts")
	}
	self, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	path := filepath.Join(t.TempDir(), "ns", "net")
	if err := NewNetNS(path); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := RemoveNetNS(path); err != nil {
			t.Error(err)
		}
	}()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if ns.Equal(self) {
		t.Fatal("the pinned namespace is the test's own")
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo in the new namespace is down: %v", lo.Attrs().Flags)
	}
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 {
		t.Errorf("the new namespace has %d links, want lo alone", len(links))
	}
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(self) {
		t.Error("the test's thread left its namespace")
	}
}
