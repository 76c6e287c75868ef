package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

// TestSizeRealCgroup sizes a fresh pod cgroup, resizes it, lifts its
// limits, and has the kernel refuse a pod quota below a child's (v1).
func TestSizeRealCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	mode := host.Cgroups()
	r := Reader{Mode: mode, Driver: "cgroupfs"}
	top := "/berth-size-test-" + strconv.Itoa(os.Getpid())
	dir := top + "/pod"
	t.Cleanup(func() {
		if err := r.Remove(top); err != nil {
			t.Error(err)
		}
	})
	read := func(controller, file string) string {
		t.Helper()
		p := filepath.Join("/sys/fs/cgroup", controller, dir, file)
		if mode == host.CgroupV2 {
			p = filepath.Join("/sys/fs/cgroup", dir, file)
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(raw))
	}
	want := func(controller, file, v string) {
		t.Helper()
		if got := read(controller, file); got != v {
			t.Errorf("%s = %q, want %q", file, got, v)
		}
	}
	p := func(v int64) *int64 { return &v }
	u := func(v uint64) *uint64 { return &v }

	for _, step := range []struct {
		name  string
		res   specs.LinuxResources
		mem   string
		quota string
	}{
		{"sized", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p(64 << 20)}, CPU: &specs.LinuxCPU{Quota: p(50000), Period: u(100000), Shares: u(512)}}, "67108864", "50000"},
		{"resized", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p(32 << 20)}, CPU: &specs.LinuxCPU{Quota: p(200000), Period: u(100000), Shares: u(2048)}}, "33554432", "200000"},
		{"lifted", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: p(-1)}, CPU: &specs.LinuxCPU{}}, "", ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			if err := r.Size(dir, &step.res); err != nil {
				t.Fatal(err)
			}
			if mode == host.CgroupV2 {
				wantMem, wantMax, wantWeight := step.mem, step.quota+" 100000", "100"
				if step.mem == "" {
					wantMem, wantMax = "max", "max 100000"
				} else {
					wantWeight = strconv.FormatUint(cgroup2.ConvertCPUSharesToCgroupV2Value(*step.res.CPU.Shares), 10)
				}
				want("", "memory.max", wantMem)
				want("", "cpu.max", wantMax)
				want("", "cpu.weight", wantWeight)
				return
			}
			if step.mem == "" {
				if v, _ := strconv.ParseUint(read("memory", "memory.limit_in_bytes"), 10, 64); v < 1<<62 {
					t.Errorf("lifted memory limit = %d", v)
				}
				want("cpu", "cpu.cfs_quota_us", "-1")
				want("cpu", "cpu.shares", "1024")
				return
			}
			want("memory", "memory.limit_in_bytes", step.mem)
			want("cpu", "cpu.cfs_quota_us", step.quota)
			want("cpu", "cpu.shares", strconv.FormatUint(*step.res.CPU.Shares, 10))
		})
	}

	if mode == host.CgroupV2 {
		return
	}
	// A container cgroup inside the pod with half a CPU: the pod cannot
	// go below it.
	child := filepath.Join("/sys/fs/cgroup/cpu", dir, "ctr")
	if err := os.Mkdir(child, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(child, "cpu.cfs_quota_us"), []byte("50000"), 0); err != nil {
		t.Fatal(err)
	}
	err := r.Size(dir, &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: p(20000), Period: u(100000)}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a pod quota below its container's: %v", err)
	}
}
