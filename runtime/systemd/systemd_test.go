package systemd

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// TestStopSliceRefusesWhatItMustNotStop: only a slice, by its name, and
// never one with processes left (stopping it would kill them). Neither
// case reaches systemd.
func TestStopSliceRefusesWhatItMustNotStop(t *testing.T) {
	root := t.TempDir()
	busy := filepath.Join(root, "berth.slice", "berth-p1.slice")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "cgroup.events"), []byte("populated 1\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Manager{CgroupRoot: root}
	if err := m.StopSlice(context.Background(), "berth-p1.slice"); !errors.Is(err, ErrPopulated) {
		t.Errorf("a populated slice: %v", err)
	}
	for _, name := range []string{"berth-p1.scope", "/berth.slice/berth-p1.slice", "a:b.slice"} {
		if err := m.StopSlice(context.Background(), name); err == nil {
			t.Errorf("%q stopped", name)
		}
	}
}

func TestPopulated(t *testing.T) {
	dir := t.TempDir()
	if populated(dir) || populated(filepath.Join(dir, "missing")) {
		t.Error("a cgroup without events, or none, is not populated")
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.events"), []byte("populated 0\nfrozen 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if populated(dir) {
		t.Error("populated 0")
	}
}

// TestCgroupProperties: the files a runtime wrote, as systemd's unit
// properties.
func TestCgroupProperties(t *testing.T) {
	dir := t.TempDir()
	for f, v := range map[string]string{
		"memory.max": "100663296\n", "memory.high": "max\n", "cpu.weight": "59\n", "cpu.max": "20000 100000\n",
		"cpuset.cpus": "0-1,9\n", "cpuset.mems": "\n", "pids.max": "max\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	props, err := cgroupProperties(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, p := range props {
		got[p.Name] = p.Value.Value()
	}
	want := map[string]any{
		"MemoryMax": uint64(100663296), "MemoryHigh": uint64(math.MaxUint64), "CPUWeight": uint64(59),
		"CPUQuotaPeriodUSec": uint64(100000), "CPUQuotaPerSecUSec": uint64(200000),
		"AllowedCPUs": []byte{0x03, 0x02}, "TasksMax": uint64(math.MaxUint64),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("properties:\n got %v\nwant %v", got, want)
	}
	if _, err := cpuMask("3-1"); err == nil {
		t.Error("a backwards range")
	}
}

// TestConnectionOutlivesTheRequest: the shared connection to systemd is
// not made with the context of the request that happened to open it
// (godbus closes a connection when its context ends, under every other
// request using it).
func TestConnectionOutlivesTheRequest(t *testing.T) {
	var dialed context.Context
	m := &Manager{dial: func(ctx context.Context) (*sdbus.Conn, error) {
		dialed = ctx
		return nil, errors.New("no bus in this test")
	}}
	req, cancel := context.WithCancel(context.Background())
	if _, err := m.Version(req); err == nil {
		t.Fatal("Version without a bus")
	}
	cancel()
	if dialed == nil {
		t.Fatal("never dialed")
	}
	if dialed.Done() != nil || dialed.Err() != nil {
		t.Errorf("the connection's context ends with the request's: %v", dialed.Err())
	}
}
