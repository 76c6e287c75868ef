package pod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
)

const cdiFakeSpec = `{"cdiVersion": "0.6.0", "kind": "berth.test/fake", "devices": [{"name": "null0", "containerEdits": {
  "env": ["BERTH_CDI=null0"],
  "deviceNodes": [{"path": "/dev/berth-null0", "hostPath": "/dev/null", "type": "c", "major": 1, "minor": 3}]}}]}`

// withCDI restarts e's manager with CDI on (or off) over a spec directory
// holding the fake device.
func withCDI(t *testing.T, e *env, enabled bool) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fake.json"), []byte(cdiFakeSpec), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cfg.CDI = config.CDI{Enabled: enabled, SpecDirs: []string{dir}}
	e.restart()
}

// The device the CRI field names and the one of the device plugin
// annotation both reach the bundle's spec.
func TestCreateContainerCDI(t *testing.T) {
	e := newEnv(t)
	withCDI(t, e, true)
	podID := e.runPod("p")
	cfg := ctrConfig("c")
	cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: "berth.test/fake=null0"}}
	cfg.Annotations = map[string]string{"cdi.k8s.io/berth.test_null0": "berth.test/fake=null0"}
	id, err := e.m.CreateContainer(context.Background(), podID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := e.bundleSpec(id)
	if n := len(slices.DeleteFunc(slices.Clone(s.Linux.Devices), func(d specs.LinuxDevice) bool { return d.Path != "/dev/berth-null0" })); n != 1 {
		t.Errorf("%d /dev/berth-null0 nodes in %+v, want 1", n, s.Linux.Devices)
	}
	if !slices.Contains(s.Process.Env, "BERTH_CDI=null0") {
		t.Errorf("env %v lacks BERTH_CDI", s.Process.Env)
	}
	if st, _, err := e.m.ContainerStatus(context.Background(), id, false); err != nil || st.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Errorf("status %v, %v", st, err)
	}
}

// A device berth cannot give is a refused container, and nothing of it
// is left.
func TestCreateContainerCDIRefused(t *testing.T) {
	for _, tc := range []struct {
		name    string
		enabled bool
		device  string
		want    error
		says    string
	}{
		{"unknown device", true, "berth.test/fake=nope", errdefs.ErrFailedPrecondition, "berth.test/fake=nope"},
		{"bad name", true, "nope", errdefs.ErrInvalidArgument, "nope"},
		{"CDI disabled", false, "berth.test/fake=null0", errdefs.ErrFailedPrecondition, "cdi.enabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			withCDI(t, e, tc.enabled)
			podID := e.runPod("p")
			mounts := e.mounts.count()
			cfg := ctrConfig("c")
			cfg.CDIDevices = []*runtimeapi.CDIDevice{{Name: tc.device}}
			_, err := e.m.CreateContainer(context.Background(), podID, cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("CreateContainer: %v, want %v naming %s", err, tc.want, tc.says)
			}
			if n := e.records(bucketContainers); n != 0 {
				t.Errorf("%d container records left", n)
			}
			if e.images.count() != 0 || e.mounts.count() > mounts {
				t.Errorf("left: leases %v, mounts %v", e.images.leases, e.mounts.mounts)
			}
			if err := e.m.RemovePodSandbox(context.Background(), podID); err != nil {
				t.Fatal(err)
			}
			e.wantClean("pod removal after a refused CDI device")
		})
	}
}
