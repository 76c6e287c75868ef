package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/containernetworking/cni/libcni"
)

// ownerRecord is what berth remembers of the default conflist it wrote,
// in its CNI cache dir: the file, its digest, its subnets and where they
// came from. berth rewrites the file (a new subnet, the kubelet's pod
// CIDR) only while the file is exactly what it wrote: an administrator's
// configuration, or berth's file once edited by hand, is never replaced.
type ownerRecord struct {
	File    string   `json:"file"`
	SHA256  string   `json:"sha256"`
	Subnets []string `json:"subnets"`
	Source  string   `json:"source"`
}

func (c *CNI) recordPath() string {
	return filepath.Join(c.opts.CacheDir, "berth-default-network.json")
}

func (c *CNI) defaultConfPath() string { return filepath.Join(c.opts.ConfDir, DefaultConfName) }

// owned returns the record of berth's default conflist when the file is
// still the one berth wrote.
func (c *CNI) owned() (*ownerRecord, bool) {
	if c.opts.CacheDir == "" {
		return nil, false
	}
	data, err := os.ReadFile(c.recordPath())
	if err != nil {
		return nil, false
	}
	var rec ownerRecord
	if json.Unmarshal(data, &rec) != nil || rec.File != c.defaultConfPath() {
		return nil, false
	}
	conf, err := os.ReadFile(rec.File)
	if err != nil || digest(conf) != rec.SHA256 {
		return nil, false
	}
	return &rec, true
}

// writeDefault writes berth's default network for subnets, then the
// record that makes it berth's. A crash between the two leaves a file
// berth no longer owns: it then stays as it is, the safe side.
func (c *CNI) writeDefault(subnets []*net.IPNet, source string) error {
	data, err := renderDefaultConf(subnets)
	if err != nil {
		return err
	}
	if err := writeConf(c.defaultConfPath(), data); err != nil {
		return err
	}
	c.forget()
	if c.opts.CacheDir == "" {
		return nil // nowhere to remember it: berth will not touch it again
	}
	rec := ownerRecord{File: c.defaultConfPath(), SHA256: digest(data), Subnets: subnetStrings(subnets), Source: source}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.opts.CacheDir, 0o700); err != nil {
		return err
	}
	tmp := c.recordPath() + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.recordPath())
}

// ensureDefault gives an empty conf dir berth's default network, and
// keeps berth's own one (while it is in use) on a subnet no other network
// holds: a bridge that came up on the same subnet since (containerd's
// cni0, podman's) moves a default subnet elsewhere, and stops berth when
// the subnet was set explicitly. The kubelet's pod CIDR is kept as given.
func (c *CNI) ensureDefault() error {
	files, err := libcni.ConfFiles(c.opts.ConfDir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return fmt.Errorf("cni conf dir: %w", err)
	}
	slices.Sort(files)
	rec, owned := c.owned()
	if len(files) > 0 && (!owned || files[0] != rec.File) {
		return nil // an administrator's network
	}
	nets, err := c.opts.HostNets()
	if err != nil {
		// Not knowing the host's networks is no reason to have none.
		c.log.Warn("cannot list the host's networks to check the pod subnet against", "err", err)
	}
	if owned && rec.Source == sourcePodCIDR {
		c.warnOverlaps(rec.Subnets, nets)
		return nil
	}
	// A subnet in use stays while it is free and was not the explicit
	// setting (which the config file may have changed or dropped since):
	// its pods hold addresses in it.
	if owned && rec.Source != sourceConfig && len(rec.Subnets) == 1 && !c.opts.SubnetExplicit {
		if _, cur, err := net.ParseCIDR(rec.Subnets[0]); err == nil && len(Overlapping(cur, nets, DefaultBridge)) == 0 {
			return nil
		}
	}
	plan, err := PlanDefaultSubnet(c.opts.DefaultSubnet, c.opts.SubnetExplicit, nets)
	if err != nil {
		return err
	}
	if owned && rec.Source == plan.Source && slices.Equal(rec.Subnets, subnetStrings([]*net.IPNet{plan.Subnet})) {
		return nil
	}
	if len(plan.Taken) > 0 {
		c.log.Warn("the default pod subnet is taken by another network; "+DefaultBridge+" gets a free one",
			"default", c.opts.DefaultSubnet, "takenBy", joinNets(plan.Taken), "subnet", plan.Subnet.String())
	}
	if err := c.writeDefault([]*net.IPNet{plan.Subnet}, plan.Source); err != nil {
		return err
	}
	c.log.Info("wrote the default CNI network", "file", c.defaultConfPath(), "subnet", plan.Subnet.String(), "source", plan.Source)
	return nil
}

// warnOverlaps logs each host network overlapping one of subnets.
func (c *CNI) warnOverlaps(subnets []string, nets []HostNet) {
	for _, s := range subnets {
		if _, n, err := net.ParseCIDR(s); err == nil {
			if taken := Overlapping(n, nets, DefaultBridge); len(taken) > 0 {
				c.log.Warn("the pod subnet overlaps another network of the host; pods may be unreachable", "subnet", s, "overlaps", joinNets(taken))
			}
		}
	}
}

func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func subnetStrings(subnets []*net.IPNet) []string {
	out := make([]string, len(subnets))
	for i, s := range subnets {
		out[i] = s.String()
	}
	return out
}
