package network

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestPodBandwidth(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        *Bandwidth
		wantErr     string // the annotation the error names
	}{
		{"none", nil, nil, ""},
		{"unrelated", map[string]string{"a": "b"}, nil, ""},
		{"egress", map[string]string{EgressBandwidthAnnotation: "1M"}, &Bandwidth{EgressRate: 1_000_000, EgressBurst: 1_000_000}, ""},
		{"ingress", map[string]string{IngressBandwidthAnnotation: "10Mi"}, &Bandwidth{IngressRate: 10 << 20, IngressBurst: 10 << 20}, ""},
		{"both, bursts at their bounds", map[string]string{IngressBandwidthAnnotation: "1k", EgressBandwidthAnnotation: "1P"},
			&Bandwidth{IngressRate: 1000, IngressBurst: minBurst, EgressRate: 1e15, EgressBurst: math.MaxUint32}, ""},
		{"not a quantity", map[string]string{EgressBandwidthAnnotation: "fast"}, nil, EgressBandwidthAnnotation},
		{"bytes unit", map[string]string{IngressBandwidthAnnotation: "1MB"}, nil, IngressBandwidthAnnotation},
		{"too small", map[string]string{IngressBandwidthAnnotation: "999"}, nil, IngressBandwidthAnnotation},
		{"too large", map[string]string{EgressBandwidthAnnotation: "2P"}, nil, EgressBandwidthAnnotation},
		{"negative", map[string]string{EgressBandwidthAnnotation: "-1M"}, nil, EgressBandwidthAnnotation},
		{"empty", map[string]string{EgressBandwidthAnnotation: ""}, nil, EgressBandwidthAnnotation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PodBandwidth(tc.annotations)
			if tc.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want InvalidArgument naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Errorf("PodBandwidth = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// fakePlugin writes a CNI plugin that records its stdin per command into
// dir/<name>-<command>.json and answers ADD with a fixed result.
func fakePlugin(t *testing.T, binDir, dumpDir, name string) {
	t.Helper()
	script := `#!/bin/sh
cat > "` + dumpDir + `/` + name + `-$CNI_COMMAND.json"
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24"}]}'
fi
`
	if err := os.WriteFile(filepath.Join(binDir, name), []byte(script), 0o700); err != nil { //nolint:gosec // an executable plugin for the test
		t.Fatal(err)
	}
}

// libcni hands the annotations and the bandwidth only to the plugins
// declaring those capabilities, at ADD and (from its cache) at DEL.
func TestCapabilityArgsReachDeclaringPlugins(t *testing.T) {
	dir := t.TempDir()
	bin, dump, conf := filepath.Join(dir, "bin"), filepath.Join(dir, "dump"), filepath.Join(dir, "net.d")
	for _, d := range []string{bin, dump, conf} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	fakePlugin(t, bin, dump, "fakecap")
	fakePlugin(t, bin, dump, "fakeplain")
	list := `{"cniVersion":"1.0.0","name":"caps","plugins":[
		{"type":"fakecap","capabilities":{"bandwidth":true,"io.kubernetes.cri.pod-annotations":true,"portMappings":true}},
		{"type":"fakeplain"}]}`
	if err := os.WriteFile(filepath.Join(conf, "10-caps.conflist"), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(context.Background(), Options{ConfDir: conf, BinDirs: []string{bin}, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	pod := Pod{ID: "abc", Name: "p", Namespace: "ns", UID: "u", NetNS: "/nonexistent",
		Annotations: map[string]string{EgressBandwidthAnnotation: "1M", "team": "a"}}
	att, err := c.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	type runtimeConfig struct {
		RuntimeConfig map[string]json.RawMessage `json:"runtimeConfig"`
	}
	read := func(file string) runtimeConfig {
		t.Helper()
		var rc runtimeConfig
		data, err := os.ReadFile(filepath.Join(dump, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &rc); err != nil {
			t.Fatal(err)
		}
		return rc
	}
	check := func(cmd string) {
		t.Helper()
		rc := read("fakecap-" + cmd + ".json")
		var bw Bandwidth
		if err := json.Unmarshal(rc.RuntimeConfig[CapBandwidth], &bw); err != nil || bw != (Bandwidth{EgressRate: 1_000_000, EgressBurst: 1_000_000}) {
			t.Errorf("%s: bandwidth = %s", cmd, rc.RuntimeConfig[CapBandwidth])
		}
		var ann map[string]string
		if err := json.Unmarshal(rc.RuntimeConfig[CapPodAnnotations], &ann); err != nil || ann["team"] != "a" || ann[EgressBandwidthAnnotation] != "1M" {
			t.Errorf("%s: pod annotations = %s", cmd, rc.RuntimeConfig[CapPodAnnotations])
		}
		if _, ok := rc.RuntimeConfig[CapPortMappings]; ok {
			t.Errorf("%s: portMappings passed for a pod without host ports", cmd)
		}
		if plain := read("fakeplain-" + cmd + ".json"); len(plain.RuntimeConfig) != 0 {
			t.Errorf("%s: a plugin declaring no capability got %v", cmd, plain.RuntimeConfig)
		}
	}
	check("ADD")
	pod.Network = att.Network
	pod.Annotations = nil // DEL uses what ADD was given (libcni's cache)
	if err := c.Teardown(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	check("DEL")

	// A bad annotation fails Setup before any plugin runs.
	_ = os.Remove(filepath.Join(dump, "fakecap-ADD.json"))
	bad := Pod{ID: "def", NetNS: "/nonexistent", Annotations: map[string]string{IngressBandwidthAnnotation: "lots"}}
	if _, err := c.Setup(context.Background(), bad); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), IngressBandwidthAnnotation) {
		t.Errorf("Setup with a bad annotation: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dump, "fakecap-ADD.json")); err == nil {
		t.Error("a plugin ran for a pod with a bad annotation")
	}
}
