package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthrt/berth/runtime/errdefs"
)

// testNode is a conf dir and cache dir with injected host networks; it
// records masquerade calls instead of touching the host's nat table.
type testNode struct {
	t        *testing.T
	conf     string
	cache    string
	nets     []HostNet
	explicit bool
	subnet   string
	masq     []string
	log      bytes.Buffer
}

func newTestNode(t *testing.T) *testNode {
	dir := t.TempDir()
	return &testNode{t: t, conf: filepath.Join(dir, "net.d"), cache: filepath.Join(dir, "cache"), subnet: "10.88.0.0/16"}
}

func (n *testNode) start() (*CNI, error) {
	return New(context.Background(), Options{
		ConfDir: n.conf, CacheDir: n.cache, DefaultSubnet: n.subnet, SubnetExplicit: n.explicit,
		HostNets: func() ([]HostNet, error) { return n.nets, nil },
		Log:      slog.New(slog.NewTextHandler(&n.log, nil)),
		masquerade: func(_ context.Context, s string) error {
			n.masq = append(n.masq, s)
			return nil
		},
	})
}

func (n *testNode) mustStart() *CNI {
	n.t.Helper()
	c, err := n.start()
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

func (n *testNode) file() string { return filepath.Join(n.conf, DefaultConfName) }

// subnets reads the subnets of berth's conflist.
func (n *testNode) subnets() []string {
	n.t.Helper()
	list, err := LoadConfList(n.file())
	if err != nil {
		n.t.Fatal(err)
	}
	return subnetStrings(ConfSubnets(list))
}

func TestDefaultConf(t *testing.T) {
	n := newTestNode(t)
	n.mustStart()
	list, err := LoadConfList(n.file())
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	caps := map[string]map[string]bool{}
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
		caps[p.Network.Type] = p.Network.Capabilities
	}
	if !slices.Equal(types, []string{"bridge", "portmap", "bandwidth"}) || !caps["bandwidth"][CapBandwidth] || !caps["portmap"][CapPortMappings] {
		t.Errorf("plugins %v, capabilities %v", types, caps)
	}
	var bridge struct {
		Bridge       string `json:"bridge"`
		ForceAddress bool   `json:"forceAddress"`
	}
	if err := json.Unmarshal(list.Plugins[0].Bytes, &bridge); err != nil || bridge.Bridge != DefaultBridge || !bridge.ForceAddress {
		t.Errorf("bridge = %+v %v", bridge, err)
	}
	if got := n.subnets(); !slices.Equal(got, []string{"10.88.0.0/16"}) {
		t.Errorf("subnets = %v", got)
	}
	if !slices.Equal(n.masq, []string{"10.88.0.0/16"}) {
		t.Errorf("masqueraded %v", n.masq)
	}
	if !slices.Equal(ConfBridges(list), []string{DefaultBridge}) {
		t.Errorf("bridges = %v", ConfBridges(list))
	}
}

// containerd's cni0 already holds 10.88.0.0/16: berth picks a free /16
// and says so; set explicitly, it refuses, naming the other network.
func TestDefaultSubnetTaken(t *testing.T) {
	cni0 := []HostNet{addr(t, "10.88.0.1/16", "cni0"), route(t, "10.88.0.0/16", "cni0")}
	t.Run("picked", func(t *testing.T) {
		n := newTestNode(t)
		n.nets = cni0
		n.mustStart()
		if got := n.subnets(); !slices.Equal(got, []string{"10.90.0.0/16"}) {
			t.Errorf("subnets = %v", got)
		}
		if log := n.log.String(); !strings.Contains(log, "takenBy=") || !strings.Contains(log, "cni0") || !strings.Contains(log, "subnet=10.90.0.0/16") {
			t.Errorf("log:\n%s", log)
		}
	})
	t.Run("explicit", func(t *testing.T) {
		n := newTestNode(t)
		n.nets, n.explicit = cni0, true
		_, err := n.start()
		if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "cni0") {
			t.Fatalf("start: %v", err)
		}
		if _, err := os.Stat(n.file()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a conflist was written: %v", err)
		}
	})
}

// At restart berth's own conflist keeps its subnet while it is free,
// moves when another network took it since, and follows an explicit
// setting.
func TestDefaultConfAtRestart(t *testing.T) {
	n := newTestNode(t)
	n.mustStart()
	before, _ := os.ReadFile(n.file())
	n.mustStart()
	if after, _ := os.ReadFile(n.file()); !bytes.Equal(before, after) {
		t.Error("a restart rewrote an unchanged network")
	}
	n.nets = []HostNet{route(t, "10.88.0.0/16", "cni0")}
	n.mustStart()
	if got := n.subnets(); !slices.Equal(got, []string{"10.90.0.0/16"}) {
		t.Errorf("after cni0 took 10.88: %v", got)
	}
	// The default is free again: the picked subnet stays (pods hold it).
	n.nets = nil
	n.mustStart()
	if got := n.subnets(); !slices.Equal(got, []string{"10.90.0.0/16"}) {
		t.Errorf("picked subnet not kept: %v", got)
	}
	n.subnet, n.explicit = "10.50.0.0/16", true
	n.mustStart()
	if got := n.subnets(); !slices.Equal(got, []string{"10.50.0.0/16"}) {
		t.Errorf("explicit subnet not applied: %v", got)
	}
	n.nets = []HostNet{route(t, "10.50.0.0/16", "docker9")}
	if _, err := n.start(); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("explicit subnet taken at restart: %v", err)
	}
}

// An administrator's network, or berth's file edited by hand, is never
// rewritten: not at start, not for a pod CIDR.
func TestAdminConfLeftAlone(t *testing.T) {
	taken := []HostNet{route(t, "10.88.0.0/16", "cni0")}
	t.Run("admin's", func(t *testing.T) {
		n := newTestNode(t)
		n.nets = taken
		admin := `{"cniVersion":"1.0.0","name":"mine","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.88.0.0/16"}}]}`
		if err := os.MkdirAll(n.conf, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n.conf, "05-mine.conflist"), []byte(admin), 0o600); err != nil {
			t.Fatal(err)
		}
		c := n.mustStart()
		if err := c.SetPodCIDR(context.Background(), "10.244.1.0/24"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(n.file()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("berth wrote its conflist next to the admin's: %v", err)
		}
		if data, _ := os.ReadFile(filepath.Join(n.conf, "05-mine.conflist")); string(data) != admin {
			t.Errorf("the admin's conflist changed:\n%s", data)
		}
		if len(n.masq) != 0 {
			t.Errorf("masqueraded the admin's network: %v", n.masq)
		}
	})
	t.Run("edited", func(t *testing.T) {
		n := newTestNode(t)
		c := n.mustStart()
		edited, _ := os.ReadFile(n.file())
		edited = bytes.Replace(edited, []byte(`"hairpinMode": true`), []byte(`"hairpinMode": false`), 1)
		if err := os.WriteFile(n.file(), edited, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.SetPodCIDR(context.Background(), "10.244.1.0/24"); err != nil {
			t.Fatal(err)
		}
		n.nets = taken
		n.mustStart()
		if data, _ := os.ReadFile(n.file()); !bytes.Equal(data, edited) {
			t.Errorf("berth rewrote a conflist edited by hand:\n%s", data)
		}
	})
}

func TestSetPodCIDR(t *testing.T) {
	n := newTestNode(t)
	c := n.mustStart()
	ctx := context.Background()
	if err := c.SetPodCIDR(ctx, "10.244.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if got := n.subnets(); !slices.Equal(got, []string{"10.244.1.0/24"}) {
		t.Errorf("subnets = %v", got)
	}
	if !slices.Contains(n.masq, "10.244.1.0/24") {
		t.Errorf("masqueraded %v", n.masq)
	}
	// Unchanged: the file is not rewritten.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(n.file(), old, old); err != nil {
		t.Fatal(err)
	}
	if err := c.SetPodCIDR(ctx, " 10.244.1.0/24 "); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(n.file()); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("the same CIDR rewrote the file: %v %v", fi.ModTime(), err)
	}
	// A restart keeps the kubelet's CIDR, even where it overlaps.
	n.nets = []HostNet{route(t, "10.244.0.0/16", "flannel.1")}
	n.mustStart()
	if got := n.subnets(); !slices.Equal(got, []string{"10.244.1.0/24"}) {
		t.Errorf("after restart: %v", got)
	}
	if !strings.Contains(n.log.String(), "flannel.1") {
		t.Errorf("overlap not logged:\n%s", n.log.String())
	}
	// Dual stack: one range set and one default route per family.
	if err := c.SetPodCIDR(ctx, "10.244.2.0/24,fd00:10:244:2::/64"); err != nil {
		t.Fatal(err)
	}
	if got := n.subnets(); !slices.Equal(got, []string{"10.244.2.0/24", "fd00:10:244:2::/64"}) {
		t.Errorf("dual stack subnets = %v", got)
	}
	if data, _ := os.ReadFile(n.file()); !strings.Contains(string(data), `"::/0"`) || !strings.Contains(string(data), `"0.0.0.0/0"`) {
		t.Errorf("dual stack routes:\n%s", data)
	}
	for _, bad := range []string{"nonsense", "10.244.1.5/24", "10.0.0.0/31", "10.1.0.0/24,10.2.0.0/24", "10.1.0.0/24,", "fd00::/127"} {
		if err := c.SetPodCIDR(ctx, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("SetPodCIDR(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	if got := n.subnets(); !slices.Equal(got, []string{"10.244.2.0/24", "fd00:10:244:2::/64"}) {
		t.Errorf("a refused CIDR changed the network: %v", got)
	}
}
