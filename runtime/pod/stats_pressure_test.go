package pod

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/cgroups"
	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/runtime/spec"
)

// TestStatsSwapIOPressureV2: ContainerStats and PodSandboxStats carry the
// swap, I/O pressure and CPU/memory pressure of cgroup v2 files.
func TestStatsSwapIOPressureV2(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	root := t.TempDir()
	e.m.host.CgroupMode = host.CgroupV2
	e.m.stats.cgroupRoot = root
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	sb, err := e.m.getSandbox(podID)
	if err != nil {
		t.Fatal(err)
	}
	pressure := "some avg10=2.00 avg60=1.00 avg300=0.50 total=1000\nfull avg10=1.00 avg60=0.50 avg300=0.25 total=500\n"
	files := map[string]string{
		"cpu.stat": "usage_usec 10\n", "memory.stat": "anon 1\n", "memory.current": "4096\n", "memory.max": "max\n",
		"memory.swap.current": "1024\n", "memory.swap.max": "4096\n",
		"cpu.pressure": pressure, "memory.pressure": pressure, "io.pressure": pressure,
	}
	for _, dir := range []string{e.m.containerCgroupsPath(sb, id), (&spec.Pod{ID: podID, Config: sb.cfg}).CgroupParent("cgroupfs")} {
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	st, err := e.m.ContainerStats(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if sw := st.GetSwap(); sw.GetSwapUsageBytes().GetValue() != 1024 || sw.GetSwapAvailableBytes().GetValue() != 3072 || sw.GetTimestamp() == 0 {
		t.Errorf("swap: %v", sw)
	}
	wantPSI := func(what string, p *runtimeapi.PsiStats) {
		t.Helper()
		if p.GetSome().GetTotal() != 1_000_000 || p.GetSome().GetAvg10() != 2 || p.GetFull().GetAvg300() != 0.25 || p.GetFull().GetTotal() != 500_000 {
			t.Errorf("%s pressure: %v", what, p)
		}
	}
	wantPSI("container cpu", st.GetCpu().GetPsi())
	wantPSI("container memory", st.GetMemory().GetPsi())
	wantPSI("container io", st.GetIo().GetPsi())
	ps, err := e.m.PodSandboxStats(ctx, podID)
	if err != nil {
		t.Fatal(err)
	}
	wantPSI("pod cpu", ps.GetLinux().GetCpu().GetPsi())
	wantPSI("pod memory", ps.GetLinux().GetMemory().GetPsi())
	wantPSI("pod io", ps.GetLinux().GetIo().GetPsi())
	if n := len(ps.GetLinux().GetContainers()); n != 1 || ps.GetLinux().GetContainers()[0].GetSwap() == nil {
		t.Errorf("pod's containers: %v", ps.GetLinux().GetContainers())
	}
}

// Where the kernel has neither swap accounting nor PSI, the fields stay
// unset rather than zero.
func TestStatsWithoutSwapOrPressure(t *testing.T) {
	if u := swapUsage(sampleWith(false, false)); u != nil {
		t.Errorf("swap without accounting: %v", u)
	}
	if io := ioUsage(sampleWith(true, false)); io != nil {
		t.Errorf("io without pressure: %v", io)
	}
	// Swap accounted but not limited: no available bytes.
	if u := swapUsage(sampleWith(true, false)); u == nil || u.SwapAvailableBytes != nil {
		t.Errorf("unlimited swap: %v", u)
	}
	// Over the limit (the limit was lowered): none available, not a wrap.
	over := sampleWith(true, true)
	over.MemSwap, over.SwapLimit = 10, 5
	if u := swapUsage(over); u.GetSwapAvailableBytes().GetValue() != 0 || u.SwapAvailableBytes == nil {
		t.Errorf("swap over its limit: %v", u)
	}
}

func sampleWith(hasSwap, limited bool) cgroups.Sample {
	return cgroups.Sample{At: time.Now(), HasSwap: hasSwap, SwapLimited: limited}
}

// TestStatsSampleReused: the stats calls of one collection read a cgroup
// once (ListPodSandboxStats after ListContainerStats answers from the
// same sample); an update of the limits reads afresh.
func TestStatsSampleReused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	root := t.TempDir()
	e.m.host.CgroupMode = host.CgroupV2
	e.m.stats.cgroupRoot = root
	podID := e.runPod("p")
	id := e.createCtr(podID, "c")
	if err := e.m.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	sb, err := e.m.getSandbox(podID)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, e.m.containerCgroupsPath(sb, id))
	write := func(usage string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"cpu.stat": "usage_usec 10\n", "memory.stat": "anon 1\n", "memory.current": usage, "memory.max": "max\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("4096\n")
	usage := func() uint64 {
		t.Helper()
		st, err := e.m.ContainerStats(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return st.GetMemory().GetUsageBytes().GetValue()
	}
	if got := usage(); got != 4096 {
		t.Fatalf("usage %d", got)
	}
	write("8192\n")
	ls := e.m.ListPodSandboxStats(ctx, &runtimeapi.PodSandboxStatsFilter{Id: podID})
	if len(ls) != 1 || len(ls[0].GetLinux().GetContainers()) != 1 {
		t.Fatalf("pod stats: %v", ls)
	}
	// Taken within sampleTTL of the first: the same sample (a slow
	// machine may take longer: then it is a new one).
	if got := ls[0].GetLinux().GetContainers()[0].GetMemory().GetUsageBytes().GetValue(); got != 4096 && got != 8192 {
		t.Errorf("usage in pod stats %d", got)
	}
	e.m.dropRecentSamples()
	if got := usage(); got != 8192 {
		t.Errorf("usage after the samples were dropped: %d, want 8192", got)
	}
	e.m.forgetStats(id)
	e.m.stats.mu.Lock()
	for k := range e.m.stats.marks {
		if strings.HasSuffix(k, id) {
			t.Errorf("sample of a removed container kept: %s", k)
		}
	}
	e.m.stats.mu.Unlock()
}

// TestStatsRateOfConcurrentReads: a sample read at the same time as the
// last one (two stats calls missing the cache at once), or finishing
// after a later one, keeps the last CPU rate instead of one measured over
// microseconds; a sample read before an update of limits is not answered
// again.
func TestStatsRateOfConcurrentReads(t *testing.T) {
	e := newEnv(t)
	t0 := time.Now()
	at := func(d time.Duration, cpu uint64) cgroups.Sample { return cgroups.Sample{At: t0.Add(d), CPUNanos: cpu} }
	gen := e.m.stats.gen
	if r := e.m.record("k", at(0, 0), gen); r != nil {
		t.Fatalf("first rate %v", r)
	}
	r := e.m.record("k", at(time.Second, 5e8), gen)
	if r.GetValue() != 5e8 {
		t.Fatalf("rate %v, want half a core", r)
	}
	for name, s := range map[string]cgroups.Sample{"same time": at(time.Second+time.Microsecond, 5e8+1000), "older": at(time.Second-time.Millisecond, 5e8-1000)} {
		if got := e.m.record("k", s, gen); got.GetValue() != 5e8 {
			t.Errorf("%s: rate %v, want the last one", name, got)
		}
	}
	if got := e.m.record("k", at(2*time.Second, 1e9), gen); got.GetValue() != 5e8 {
		t.Errorf("next rate %v", got)
	}
	// A read begun before an update of limits, recorded after it.
	e.m.dropRecentSamples()
	e.m.record("k", at(3*time.Second, 15e8), gen)
	e.m.stats.mu.Lock()
	reusable := e.m.stats.marks["k"].gen == e.m.stats.gen
	e.m.stats.mu.Unlock()
	if reusable {
		t.Error("a sample read before an update of limits answers again")
	}
}
