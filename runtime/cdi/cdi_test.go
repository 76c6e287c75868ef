package cdi

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
)

// fakeSpec is a vendor spec with one device, null0: /dev/null under another
// name, an environment variable, a mount and a hook, and a spec-wide
// variable every device of the spec brings.
const fakeSpec = `{
  "cdiVersion": "0.6.0",
  "kind": "berth.test/fake",
  "containerEdits": {"env": ["BERTH_CDI_VENDOR=berth"]},
  "devices": [{
    "name": "null0",
    "containerEdits": {
      "env": ["BERTH_CDI=null0"],
      "deviceNodes": [{"path": "/dev/berth-null0", "hostPath": "/dev/null", "type": "c", "major": 1, "minor": 3}],
      "mounts": [{"hostPath": "/tmp", "containerPath": "/cdi", "type": "bind", "options": ["ro", "bind"]}],
      "hooks": [{"hookName": "createContainer", "path": "/bin/true"}]
    }
  }]
}`

func newRegistry(t *testing.T, dirs ...string) *Registry {
	t.Helper()
	r := New(config.CDI{Enabled: true, SpecDirs: dirs}, slog.New(slog.DiscardHandler))
	t.Cleanup(r.Close)
	return r
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// baseSpec is what spec.ForContainer leaves: a default deny of devices.
func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Env: []string{"PATH=/bin"}},
		Linux: &specs.Linux{Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
		}}},
	}
}

func TestInject(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fake.json"), fakeSpec)
	r := newRegistry(t, dir)
	s := baseSpec()
	if err := r.Inject(s, []string{"berth.test/fake=null0"}); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(s.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == "/dev/berth-null0" }); i < 0 {
		t.Errorf("no device node: %+v", s.Linux.Devices)
	} else if d := s.Linux.Devices[i]; d.Type != "c" || d.Major != 1 || d.Minor != 3 {
		t.Errorf("device node %+v, want c 1:3", d)
	}
	// The allow rule must come after the default deny: the last match wins.
	rules := s.Linux.Resources.Devices
	last := rules[len(rules)-1]
	if len(rules) != 2 || !last.Allow || last.Type != "c" || last.Major == nil || *last.Major != 1 || last.Minor == nil || *last.Minor != 3 || last.Access != "rwm" {
		t.Errorf("device cgroup rules %+v: want the deny, then allow c 1:3 rwm", rules)
	}
	for _, env := range []string{"PATH=/bin", "BERTH_CDI=null0", "BERTH_CDI_VENDOR=berth"} {
		if !slices.Contains(s.Process.Env, env) {
			t.Errorf("env %v lacks %s", s.Process.Env, env)
		}
	}
	if !slices.ContainsFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/cdi" && m.Source == "/tmp" }) {
		t.Errorf("mounts %+v lack /cdi", s.Mounts)
	}
	if s.Hooks == nil || len(s.Hooks.CreateContainer) != 1 || s.Hooks.CreateContainer[0].Path != "/bin/true" {
		t.Errorf("hooks %+v, want the createContainer hook", s.Hooks)
	}
}

func TestNoDevicesNoEdits(t *testing.T) {
	for _, r := range []*Registry{newRegistry(t, t.TempDir()), New(config.CDI{}, slog.New(slog.DiscardHandler))} {
		s := baseSpec()
		if err := r.Inject(s, nil); err != nil {
			t.Fatal(err)
		}
		if len(s.Linux.Devices) != 0 || len(s.Linux.Resources.Devices) != 1 || len(s.Process.Env) != 1 {
			t.Errorf("spec edited without devices: %+v", s)
		}
	}
}

func TestUnknownDevice(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fake.json"), fakeSpec)
	writeFile(t, filepath.Join(dir, "broken.yaml"), "cdiVersion: [")
	r := newRegistry(t, dir)
	err := r.Inject(baseSpec(), []string{"berth.test/fake=null0", "berth.test/fake=nope"})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("err %v, want FailedPrecondition", err)
	}
	for _, want := range []string{"berth.test/fake=nope", dir, "broken.yaml"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "fake=null0") {
		t.Errorf("error %q names the known device", err)
	}
}

func TestInvalidName(t *testing.T) {
	r := newRegistry(t, t.TempDir())
	for _, name := range []string{"", "null0", "berth.test/fake", "/fake=null0"} {
		if err := r.Inject(baseSpec(), []string{name}); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("device %q: err %v, want InvalidArgument naming it", name, err)
		}
	}
}

func TestDisabled(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "fake.json"), fakeSpec)
	r := New(config.CDI{Enabled: false, SpecDirs: []string{dir}}, slog.New(slog.DiscardHandler))
	err := r.Inject(baseSpec(), []string{"berth.test/fake=null0"})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "cdi.enabled") || !strings.Contains(err.Error(), "fake=null0") {
		t.Errorf("err %v, want FailedPrecondition naming cdi.enabled and the device", err)
	}
}

// A spec written after start is found: the watcher rereads the directory.
func TestRefreshOnNewSpec(t *testing.T) {
	dir := t.TempDir()
	r := newRegistry(t, dir)
	const name = "berth.test/fake=null0"
	if r.cache.GetDevice(name) != nil {
		t.Fatal("device known before its spec exists")
	}
	// As a driver should: written aside, renamed into place.
	writeFile(t, filepath.Join(dir, ".fake.tmp"), fakeSpec)
	if err := os.Rename(filepath.Join(dir, ".fake.tmp"), filepath.Join(dir, "fake.json")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.cache.GetDevice(name) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the new spec was not read")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Remove(filepath.Join(dir, "fake.json")); err != nil {
		t.Fatal(err)
	}
	for r.cache.GetDevice(name) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the removed spec is still used")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A spec directory that does not exist at start is read once it does.
func TestSpecDirAppears(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cdi")
	r := newRegistry(t, dir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "fake.json"), fakeSpec)
	if err := r.Inject(baseSpec(), []string{"berth.test/fake=null0"}); err != nil {
		t.Fatal(err)
	}
}

// A device node whose host device is missing and not fully described
// fails the injection, naming the device.
func TestBrokenDevice(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "gone.json"), `{"cdiVersion": "0.6.0", "kind": "berth.test/gone",
	  "devices": [{"name": "x", "containerEdits": {"deviceNodes": [{"path": "/dev/berth-gone-x"}]}}]}`)
	r := newRegistry(t, dir)
	err := r.Inject(baseSpec(), []string{"berth.test/gone=x"})
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "berth.test/gone=x") {
		t.Errorf("err %v, want FailedPrecondition naming the device", err)
	}
}
