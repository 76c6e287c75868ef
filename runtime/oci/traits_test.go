package oci

import (
	"slices"
	"testing"

	"github.com/berthrt/berth/runtime/config"
)

func TestParseKind(t *testing.T) {
	for _, tc := range []struct {
		kind, path string
		want       Kind
	}{
		{"", "/usr/sbin/runc", KindRunc}, {"", "/usr/bin/crun", KindCrun}, {"", "/usr/local/bin/runsc", KindRunsc},
		{"", "/opt/bin/youki", KindOCI}, {"runc", "/opt/bin/my-runtime", KindRunc}, {"oci", "/usr/sbin/runc", KindOCI},
	} {
		if got, err := ParseKind(tc.kind, tc.path); err != nil || got != tc.want {
			t.Errorf("ParseKind(%q, %q) = %q, %v; want %q", tc.kind, tc.path, got, err, tc.want)
		}
	}
	if _, err := ParseKind("kata", "/usr/bin/kata-runtime"); err == nil {
		t.Error("an unknown kind was accepted")
	}
}

// The config validates kinds against its own list: it must be this table's.
func TestConfigKindsAreKnown(t *testing.T) {
	var known []string
	for k := range kinds {
		known = append(known, string(k))
	}
	slices.Sort(known)
	cfg := slices.Sorted(slices.Values(config.RuntimeKinds))
	if !slices.Equal(known, cfg) {
		t.Errorf("runtime/oci knows %v, the config accepts %v", known, cfg)
	}
}

func TestTraitsGuessedWithoutKind(t *testing.T) {
	r := &Runtime{Path: "/usr/local/bin/runsc"}
	if !r.Traits().Sandboxed {
		t.Error("a runsc runtime without a kind is not sandboxed")
	}
	r = &Runtime{Path: "/usr/local/bin/runsc", Kind: KindOCI}
	if r.Traits().Sandboxed || r.Traits().DirectExec {
		t.Error("a runtime declared oci got runsc's traits from its name")
	}
}
