package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

// cdiSpec is the vendor spec of the fake devices: null0, the host's
// /dev/null as /dev/berth-null0 with an environment variable and a
// read-only mount of payload; and, when the host has /dev/fuse, fuse0 as
// /dev/berth-fuse, a device berth's default cgroup rules deny, so that
// opening it proves the rule CDI adds.
func cdiSpec(payload string, fuse bool) string {
	devices := []map[string]any{{
		"name": "null0",
		"containerEdits": map[string]any{
			"env":         []string{"BERTH_CDI=null0"},
			"deviceNodes": []map[string]any{{"path": "/dev/berth-null0", "hostPath": "/dev/null", "type": "c", "major": 1, "minor": 3}},
			"mounts":      []map[string]any{{"hostPath": payload, "containerPath": "/cdi", "type": "bind", "options": []string{"ro", "bind"}}},
		},
	}}
	if fuse {
		devices = append(devices, map[string]any{
			"name":           "fuse0",
			"containerEdits": map[string]any{"deviceNodes": []map[string]any{{"path": "/dev/berth-fuse", "hostPath": "/dev/fuse"}}},
		})
	}
	data, _ := json.Marshal(map[string]any{"cdiVersion": "0.6.0", "kind": "berth.test/fake", "devices": devices})
	return string(data)
}

// hostFuse reports whether the host has /dev/fuse (c 10:229).
func hostFuse() bool {
	var st unix.Stat_t
	return unix.Stat("/dev/fuse", &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR &&
		unix.Major(st.Rdev) == 10 && unix.Minor(st.Rdev) == 229
}

// ctrDirs counts the containers' directories under berthd's root.
func ctrDirs(t *testing.T, b *harness.Berthd) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(b.Root, "containers"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestCDI: a container that asks for a CDI device (CRI's CDI_devices, or
// the device plugin annotation) gets its node, which it can open, its
// environment and its mount, from a spec written after berthd started; a
// container asking for an unknown device is refused and leaves nothing.
// gVisor is left out: it exposes the device nodes it supports only.
func TestCDI(t *testing.T) {
	for _, handler := range []string{"runc", "crun"} {
		t.Run(handler, func(t *testing.T) {
			harness.RequireRoot(t)
			dir := t.TempDir()
			specDir, payload := filepath.Join(dir, "cdi"), filepath.Join(dir, "payload")
			for _, d := range []string{specDir, payload} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(payload, "hello"), []byte("from cdi\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			reg := fixtures.Registry(t)
			b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: handler,
				Extra: fmt.Sprintf("[cdi]\nspec_dirs = [%q]\n", specDir)})
			b.Crictl(t, "pull", "busybox:1.36")
			// Written aside and renamed into place, as a DRA driver does;
			// berthd must notice it.
			fuse := hostFuse()
			if err := os.WriteFile(filepath.Join(specDir, ".fake.tmp"), []byte(cdiSpec(payload, fuse)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(specDir, ".fake.tmp"), filepath.Join(specDir, "fake.json")); err != nil {
				t.Fatal(err)
			}

			before := b.CountLeaks(t)
			podCfg := podConfig(t, dir, "cdi", 0)
			pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
			defer waitNoLeaks(t, b, before)
			defer b.Crictl(t, "rmp", "-f", pod)
			rt := b.Client(t)
			create := func(cfg *runtimeapi.ContainerConfig) (string, error) {
				resp, err := rt.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
					PodSandboxId: pod, Config: cfg, SandboxConfig: podSpec(dir, "cdi"),
				})
				return resp.GetContainerId(), err
			}

			t.Run("CDI_devices", func(t *testing.T) {
				cfg := ctrSpec("dev", "sleep", "600")
				cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/fake=null0"}}
				script := `echo "$BERTH_CDI"; [ -c /dev/berth-null0 ] && echo x > /dev/berth-null0 && echo written; cat /cdi/hello`
				want := "null0\nwritten\nfrom cdi\n"
				if fuse {
					cfg.CDIDevices = append(cfg.CDIDevices, &runtimeapi.CDIDevice{Name: "berth.test/fake=fuse0"})
					script += `; : < /dev/berth-fuse && echo opened`
					want += "opened\n"
				}
				id, err := create(cfg)
				if err != nil {
					t.Fatalf("CreateContainer: %v\n%s", err, b.Log())
				}
				b.Crictl(t, "start", id)
				if out, err := b.TryCrictl(t, "exec", "-s", id, "sh", "-c", script); strings.TrimSpace(out) != strings.TrimSpace(want) {
					t.Errorf("in the container: %q (%v), want %q", out, err, want)
				}
				// The device's allow rule follows berth's default deny.
				data, err := os.ReadFile(filepath.Join(inspectCtr(t, b, id).Info.Bundle, "config.json"))
				if err != nil {
					t.Fatal(err)
				}
				var s specs.Spec
				if err := json.Unmarshal(data, &s); err != nil {
					t.Fatal(err)
				}
				rules := s.Linux.Resources.Devices
				last := rules[len(rules)-1]
				if fuse {
					last = rules[len(rules)-2]
				}
				if rules[0].Allow || !last.Allow || last.Type != "c" || last.Major == nil || *last.Major != 1 || last.Minor == nil || *last.Minor != 3 {
					t.Errorf("device cgroup rules %+v: want the default deny first, allow c 1:3 among the last", rules)
				}
			})

			t.Run("device plugin annotation", func(t *testing.T) {
				cfg := ctrSpec("annotated", "sleep", "600")
				cfg.Annotations = map[string]string{"cdi.k8s.io/berth.test_null0": "berth.test/fake=null0"}
				id, err := create(cfg)
				if err != nil {
					t.Fatalf("CreateContainer: %v", err)
				}
				b.Crictl(t, "start", id)
				if out, err := b.TryCrictl(t, "exec", "-s", id, "sh", "-c", `echo "$BERTH_CDI"; [ -c /dev/berth-null0 ] && echo node`); strings.Join(strings.Fields(out), " ") != "null0 node" {
					t.Errorf("in the container: %q (%v), want null0 and the node", out, err)
				}
			})

			t.Run("unknown device refused", func(t *testing.T) {
				leaks := b.CountLeaks(t)
				listed := func() int {
					resp, err := rt.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
					if err != nil {
						t.Fatal(err)
					}
					return len(resp.GetContainers())
				}
				n, dirs := listed(), ctrDirs(t, b)
				cfg := ctrSpec("unknown", "sleep", "600")
				cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/fake=nope"}}
				_, err := create(cfg)
				if c := status.Code(err); c != codes.InvalidArgument && c != codes.FailedPrecondition || !strings.Contains(err.Error(), "berth.test/fake=nope") || !strings.Contains(err.Error(), specDir) {
					t.Fatalf("CreateContainer of an unknown device: %v, want InvalidArgument or FailedPrecondition naming it and %s", err, specDir)
				}
				if m := listed(); m != n {
					t.Errorf("%d containers listed after the refusal, %d before", m, n)
				}
				if after := b.CountLeaks(t); after != leaks {
					t.Errorf("the refused container left: before %+v, after %+v", leaks, after)
				}
				if d := ctrDirs(t, b); d != dirs {
					t.Errorf("%d container directories after the refusal, %d before", d, dirs)
				}
				// The name is free again: the same container without the
				// device is created.
				cfg.CDIDevices = nil
				if _, err := create(cfg); err != nil {
					t.Errorf("CreateContainer without the device: %v", err)
				}
			})
		})
	}
}
