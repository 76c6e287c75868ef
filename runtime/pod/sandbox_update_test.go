package pod

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

const mib = 1 << 20

func TestPodTotal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		o, r    *runtimeapi.LinuxContainerResources
		want    *runtimeapi.LinuxContainerResources
		wantErr error
	}{
		{name: "none", want: &runtimeapi.LinuxContainerResources{}},
		{
			name: "kubelet's guaranteed pod with overhead",
			o:    &runtimeapi.LinuxContainerResources{CpuShares: 102, CpuQuota: 10000, CpuPeriod: 100000, MemoryLimitInBytes: 16 * mib},
			r:    &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 * mib},
			want: &runtimeapi.LinuxContainerResources{CpuShares: 614, CpuQuota: 60000, CpuPeriod: 100000, MemoryLimitInBytes: 80 * mib},
		},
		{
			// The kubelet's -1 quota and 0 memory: no limit; the
			// overhead does not make one.
			name: "unbounded pod stays unbounded",
			o:    &runtimeapi.LinuxContainerResources{CpuShares: 2, CpuQuota: 10000, MemoryLimitInBytes: 16 * mib},
			r:    &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: -1, CpuPeriod: 100000},
			want: &runtimeapi.LinuxContainerResources{CpuShares: 258},
		},
		{
			name: "overhead quota in the resources' period",
			o:    &runtimeapi.LinuxContainerResources{CpuQuota: 10000, CpuPeriod: 100000},
			r:    &runtimeapi.LinuxContainerResources{CpuQuota: 25000, CpuPeriod: 50000},
			want: &runtimeapi.LinuxContainerResources{CpuQuota: 30000, CpuPeriod: 50000},
		},
		{
			name: "default period",
			r:    &runtimeapi.LinuxContainerResources{CpuQuota: 25000},
			want: &runtimeapi.LinuxContainerResources{CpuQuota: 25000, CpuPeriod: 100000},
		},
		{
			name: "memory+swap grows by the overhead's memory",
			o:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 16 * mib},
			r:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 * mib, MemorySwapLimitInBytes: 128 * mib},
			want: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 80 * mib, MemorySwapLimitInBytes: 144 * mib},
		},
		{
			name: "hugepages of the resources' sizes",
			o:    &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 2 * mib}, {PageSize: "1GB", Limit: 1 << 30}}},
			r:    &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 * mib}}},
			want: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 6 * mib}}},
		},
		{
			name: "cpuset and unified are the resources'",
			o:    &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1"},
			r:    &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1", CpusetMems: "0", Unified: map[string]string{"memory.high": "1000000"}},
			want: &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1", CpusetMems: "0", Unified: map[string]string{"memory.high": "1000000"}},
		},
		{
			name:    "an overhead cpuset of its own",
			o:       &runtimeapi.LinuxContainerResources{CpusetCpus: "2"},
			r:       &runtimeapi.LinuxContainerResources{CpusetCpus: "0-1"},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "overhead cgroup files",
			o:       &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1"}},
			wantErr: errdefs.ErrInvalidArgument,
		},
		{
			name:    "overflow",
			o:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 62},
			r:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 3 << 61},
			wantErr: errdefs.ErrInvalidArgument,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podTotal(tc.o, tc.r)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("total = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCPUShrinks(t *testing.T) {
	half := &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000}
	one := &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 50000}
	for _, tc := range []struct {
		prev, next *runtimeapi.LinuxContainerResources
		want       bool
	}{
		{one, half, true}, {half, one, false}, {nil, half, true}, {half, nil, false}, {nil, nil, false},
	} {
		if got := cpuShrinks(tc.prev, tc.next); got != tc.want {
			t.Errorf("cpuShrinks(%v, %v) = %v", tc.prev, tc.next, got)
		}
	}
}

// sizedPod is a pod config with pod-level resources (64 MiB, half a CPU)
// and overhead (16 MiB, a tenth).
func sizedPod(name string) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name)
	cfg.Linux.Resources = &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 64 * mib}
	cfg.Linux.Overhead = &runtimeapi.LinuxContainerResources{CpuQuota: 10000, CpuPeriod: 100000, MemoryLimitInBytes: 16 * mib}
	return cfg
}

// lastSize is the last sizing of dir, nil without one.
func (f *fakeCgroups) lastSize(dir string) *specs.LinuxResources {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.sized[dir]; len(s) > 0 {
		return s[len(s)-1]
	}
	return nil
}

func (f *fakeCgroups) sizings() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.sized {
		n += len(s)
	}
	return n
}

func wantLimits(t *testing.T, what string, r *specs.LinuxResources, mem, quota int64) {
	t.Helper()
	if r == nil {
		t.Fatalf("%s: not sized", what)
	}
	gotMem, gotQuota := int64(0), int64(0)
	if r.Memory != nil && r.Memory.Limit != nil {
		gotMem = *r.Memory.Limit
	}
	if r.CPU != nil && r.CPU.Quota != nil {
		gotQuota = *r.CPU.Quota
	}
	if gotMem != mem || gotQuota != quota {
		t.Errorf("%s: memory %d, quota %d; want %d, %d", what, gotMem, gotQuota, mem, quota)
	}
}

// podInfoResources reads the pod-level resources of the verbose status.
func podInfoResources(t *testing.T, e *env, id string) (overhead, resources *runtimeapi.LinuxContainerResources) {
	t.Helper()
	_, info, err := e.m.PodSandboxStatus(context.Background(), id, true)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Overhead, Resources *runtimeapi.ContainerResources
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil {
		t.Fatal(err)
	}
	return v.Overhead.GetLinux(), v.Resources.GetLinux()
}

// TestRunPodSandboxSizesItsCgroup: a pod without a cgroup parent gets a
// cgroup of berth's sized to its resources plus overhead before anything
// runs; its removal (or a failed run) removes it.
func TestRunPodSandboxSizesItsCgroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, err := e.m.RunPodSandbox(ctx, sizedPod("p"), "")
	if err != nil {
		t.Fatal(err)
	}
	dir := "/berth/" + id
	wantLimits(t, "pod cgroup", e.cgroups.lastSize(dir), 80*mib, 60000)
	if o, r := podInfoResources(t, e, id); o.GetMemoryLimitInBytes() != 16*mib || r.GetCpuQuota() != 50000 {
		t.Errorf("status reports overhead %v, resources %v", o, r)
	}
	// A record that no update touched (as every older record) reports
	// the config's.
	e.restart()
	if o, r := podInfoResources(t, e, id); o.GetMemoryLimitInBytes() != 16*mib || r.GetCpuQuota() != 50000 {
		t.Errorf("after a restart, status reports overhead %v, resources %v", o, r)
	}
	if err := e.m.RemovePodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	if len(e.cgroups.removed) != 1 || e.cgroups.removed[0] != dir {
		t.Errorf("removed cgroups %v", e.cgroups.removed)
	}

	// Without pod-level resources, runc makes the cgroup with the pod's
	// first container, as before.
	if _, err := e.m.RunPodSandbox(ctx, podConfig("plain"), ""); err != nil {
		t.Fatal(err)
	}
	if n := e.cgroups.sizings(); n != 1 {
		t.Errorf("%d sizings, want the first pod's only", n)
	}

	// A failed run removes the cgroup it sized.
	e.shims.set("Spawn", errInjected)
	if _, err := e.m.RunPodSandbox(ctx, sizedPod("failed"), ""); err == nil {
		t.Fatal("RunPodSandbox succeeded")
	}
	if n := len(e.cgroups.removed); n != 2 {
		t.Errorf("a failed run left its cgroup: removed %v", e.cgroups.removed)
	}
}

// TestUpdatePodSandboxResources: a resize sizes the pod cgroup berth made,
// replacing the last sizing, and is recorded across restarts.
func TestUpdatePodSandboxResources(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.runPod("p")
	dir := "/berth/" + id
	r := &runtimeapi.LinuxContainerResources{CpuShares: 1024, CpuQuota: 100000, CpuPeriod: 100000, MemoryLimitInBytes: 128 * mib}
	o := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 * mib}
	if err := e.m.UpdatePodSandboxResources(ctx, id[:8], o, r); err != nil {
		t.Fatal(err)
	}
	wantLimits(t, "resized pod", e.cgroups.lastSize(dir), 136*mib, 100000)
	if s := e.shimOf(id); s.called("Update") != 0 {
		t.Error("a pod without a sandbox container had its shim update something")
	}

	e.restart()
	if gotO, gotR := podInfoResources(t, e, id); !proto.Equal(gotO, o) || !proto.Equal(gotR, r) {
		t.Errorf("after a restart, status reports overhead %v, resources %v", gotO, gotR)
	}

	// Both replaced: nothing given is no limit.
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, nil); err != nil {
		t.Fatal(err)
	}
	wantLimits(t, "pod without resources", e.cgroups.lastSize(dir), 0, 0)
	if gotO, gotR := podInfoResources(t, e, id); sizes(gotO) || sizes(gotR) {
		t.Errorf("status reports overhead %v, resources %v", gotO, gotR)
	}

	// A kernel refusal reaches the caller, and nothing is recorded.
	e.cgroups.set("Size", errdefs.InvalidArgument("refused"))
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, r); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("refused sizing: %v", err)
	}
	if _, gotR := podInfoResources(t, e, id); sizes(gotR) {
		t.Errorf("a refused resize was recorded: %v", gotR)
	}
	e.cgroups.set("Size", nil)

	// A stopped pod runs nothing: recorded only.
	if err := e.m.StopPodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	before := e.cgroups.sizings()
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, r); err != nil {
		t.Fatal(err)
	}
	if e.cgroups.sizings() != before {
		t.Error("a stopped pod's cgroup was sized")
	}
	if _, gotR := podInfoResources(t, e, id); !proto.Equal(gotR, r) {
		t.Errorf("stopped pod's resources: %v", gotR)
	}

	if err := e.m.UpdatePodSandboxResources(ctx, "nope", nil, r); !errdefs.IsNotFound(err) {
		t.Errorf("unknown pod: %v", err)
	}
}

// TestPodResourcesOfAKubeletCgroup: the kubelet sized the cgroup it made
// before it called: berth records.
func TestPodResourcesOfAKubeletCgroup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := sizedPod("p")
	cfg.Linux.CgroupParent = "/kubepods/burstable/pod1234"
	id, err := e.m.RunPodSandbox(ctx, cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	r := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 256 * mib}
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, r); err != nil {
		t.Fatal(err)
	}
	if n := e.cgroups.sizings(); n != 0 {
		t.Errorf("berth sized the kubelet's cgroup %d times", n)
	}
	if _, gotR := podInfoResources(t, e, id); !proto.Equal(gotR, r) {
		t.Errorf("status reports resources %v", gotR)
	}
}

// TestPodResourcesOfAGVisorPod: a gVisor pod runs inside its sandbox
// container, which is sized at create and through the runtime's update;
// the pod cgroup around it is sized from the outside in when it grows and
// from the inside out when it shrinks (cgroup v1 keeps a child's CFS quota
// within its parent's).
func TestPodResourcesOfAGVisorPod(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id, err := e.m.RunPodSandbox(ctx, sizedPod("p"), "runsc")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(e.m.podDir(id), "pause", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	wantLimits(t, "sandbox container spec", s.Linux.Resources, 80*mib, 60000)
	if sh := s.Linux.Resources.CPU.Shares; sh == nil || *sh != 512 {
		t.Errorf("sandbox container shares %v, want the pod's 512", sh)
	}
	if len(s.Linux.Resources.Devices) == 0 {
		t.Error("sizing dropped the sandbox container's device rules")
	}

	shim := e.shimOf(id)
	sandboxUpdate := func() *specs.LinuxResources {
		t.Helper()
		shim.mu.Lock()
		defer shim.mu.Unlock()
		if len(shim.updates) == 0 {
			return nil
		}
		u := shim.updates[len(shim.updates)-1]
		if u.Id != id {
			t.Errorf("updated %s, want the sandbox container %s", u.Id, id)
		}
		var r specs.LinuxResources
		if err := json.Unmarshal(u.Resources, &r); err != nil {
			t.Fatal(err)
		}
		return &r
	}
	grow := &runtimeapi.LinuxContainerResources{CpuQuota: 200000, CpuPeriod: 100000, MemoryLimitInBytes: 256 * mib}
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, grow); err != nil {
		t.Fatal(err)
	}
	wantLimits(t, "grown sandbox container", sandboxUpdate(), 256*mib, 200000)
	wantLimits(t, "grown pod cgroup", e.cgroups.lastSize("/berth/"+id), 256*mib, 200000)

	// Growing, the pod cgroup is sized first: its failure stops the
	// sandbox container's update.
	e.cgroups.set("Size", errInjected)
	updates := shim.called("Update")
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, &runtimeapi.LinuxContainerResources{CpuQuota: 400000, CpuPeriod: 100000}); err == nil {
		t.Fatal("a failed sizing succeeded")
	}
	if shim.called("Update") != updates {
		t.Error("growing, the sandbox container was updated before the pod cgroup")
	}
	// Shrinking, the sandbox container goes first.
	shrink := &runtimeapi.LinuxContainerResources{CpuQuota: 50000, CpuPeriod: 100000}
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, shrink); err == nil {
		t.Fatal("a failed sizing succeeded")
	}
	if shim.called("Update") != updates+1 {
		t.Error("shrinking, the sandbox container was not updated before the pod cgroup")
	}
	e.cgroups.set("Size", nil)
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, shrink); err != nil {
		t.Fatal(err)
	}
	// The runtime keeps what an update leaves out: -1 lifts the memory
	// limit the pod no longer has.
	wantLimits(t, "shrunk sandbox container", sandboxUpdate(), -1, 50000)
}

// TestPodResourcesRefused: what berth cannot honour fails the request
// before anything is made or changed.
func TestPodResourcesRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.runPod("p")

	e.m.host.CgroupMode = host.CgroupV1
	unified := &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000000"}}
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, unified); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("unified on cgroup v1: %v", err)
	}
	cfg := sizedPod("unified")
	cfg.Linux.Resources = unified
	if _, err := e.m.RunPodSandbox(ctx, cfg, ""); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("RunPodSandbox, unified on cgroup v1: %v", err)
	}
	overheadCpuset := &runtimeapi.LinuxContainerResources{CpusetCpus: "3"}
	if err := e.m.UpdatePodSandboxResources(ctx, id, overheadCpuset, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("an overhead cpuset: %v", err)
	}

	// systemd driver, no parent: containers go to system.slice, no pod
	// cgroup to size.
	e.cfg.CgroupDriver = "systemd"
	e.restart()
	if _, err := e.m.RunPodSandbox(ctx, sizedPod("systemd"), ""); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("RunPodSandbox, systemd without a parent: %v", err)
	}
	if err := e.m.UpdatePodSandboxResources(ctx, id, nil, sizedPod("x").Linux.Resources); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("resize, systemd without a parent: %v", err)
	}
	// Resources that set nothing are fine anywhere.
	if err := e.m.UpdatePodSandboxResources(ctx, id, &runtimeapi.LinuxContainerResources{}, nil); err != nil {
		t.Errorf("empty resize: %v", err)
	}
	if n := e.cgroups.sizings(); n != 0 {
		t.Errorf("%d sizings of refused requests", n)
	}
}
