package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	stats1 "github.com/containerd/cgroups/v3/cgroup1/stats"

	"github.com/berthrt/berth/runtime/host"
)

// fakeCgroup writes files into root/dir, a cgroup2 cgroup as the kernel
// shows it.
func fakeCgroup(t *testing.T, root, dir string, files map[string]string) {
	t.Helper()
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

const (
	cpuPressure = "some avg10=1.50 avg60=0.75 avg300=0.25 total=123456\nfull avg10=0.50 avg60=0.10 avg300=0.00 total=4567\n"
	ioPressure  = "some avg10=0.00 avg60=0.00 avg300=0.00 total=10\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n"
)

// TestReadV2FakeFiles: swap, I/O and pressure of a cgroup v2 cgroup, from
// the files the kernel writes.
func TestReadV2FakeFiles(t *testing.T) {
	root := t.TempDir()
	fakeCgroup(t, root, "pod/ctr", map[string]string{
		"cpu.stat":            "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\n",
		"memory.stat":         "anon 4096\nfile 8192\ninactive_file 4096\npgfault 3\npgmajfault 1\n",
		"memory.current":      "16384\n",
		"memory.max":          "1048576\n",
		"memory.swap.current": "65536\n",
		"memory.swap.max":     "262144\n",
		"io.stat":             "8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n",
		"cpu.pressure":        cpuPressure,
		"memory.pressure":     "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"io.pressure":         ioPressure,
		"pids.current":        "3\n",
	})
	r := Reader{Mode: host.CgroupV2, Driver: "cgroupfs", Root: root}
	s, err := r.Read("/pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUNanos != 2_000_000 || s.MemUsage != 16384 || s.WorkingSet != 12288 || s.MemLimit != 1048576 || s.Processes != 3 {
		t.Errorf("cpu/memory/pids: %+v", s)
	}
	if !s.HasSwap || s.MemSwap != 65536 || !s.SwapLimited || s.SwapLimit != 262144 {
		t.Errorf("swap: has %v used %d limited %v limit %d", s.HasSwap, s.MemSwap, s.SwapLimited, s.SwapLimit)
	}
	if len(s.IO) != 1 || s.IO[0].ReadBytes != 1024 || s.IO[0].Writes != 2 {
		t.Errorf("io: %+v", s.IO)
	}
	p := s.Pressure
	if p.CPU == nil || p.CPU.Some.Total != 123_456_000 || p.CPU.Some.Avg10 != 1.5 || p.CPU.Full.Avg60 != 0.1 {
		t.Errorf("cpu pressure: %+v", p.CPU)
	}
	if p.Memory == nil || p.IO == nil || p.IO.Full.Total != 7000 {
		t.Errorf("memory/io pressure: %+v %+v", p.Memory, p.IO)
	}
}

// TestReadV2SwapKinds: "max" is no limit, 0 is a limit (no swap), and no
// swap files is no swap accounting.
func TestReadV2SwapKinds(t *testing.T) {
	root := t.TempDir()
	base := map[string]string{"memory.stat": "anon 100\n", "memory.current": "100\n", "memory.max": "max\n"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	fakeCgroup(t, root, "unlimited", with(map[string]string{"memory.swap.current": "5\n", "memory.swap.max": "max\n"}))
	fakeCgroup(t, root, "noswap", with(map[string]string{"memory.swap.current": "0\n", "memory.swap.max": "0\n"}))
	fakeCgroup(t, root, "unaccounted", base)
	r := Reader{Mode: host.CgroupV2, Driver: "cgroupfs", Root: root}
	for dir, want := range map[string]struct {
		has, limited bool
		used         uint64
	}{
		"unlimited":   {true, false, 5},
		"noswap":      {true, true, 0},
		"unaccounted": {false, false, 0},
	} {
		s, err := r.Read("/" + dir)
		if err != nil {
			t.Fatal(err)
		}
		if s.HasSwap != want.has || s.SwapLimited != want.limited || s.MemSwap != want.used || s.SwapLimit != 0 || s.MemLimit != 0 {
			t.Errorf("%s: has %v limited %v used %d limit %d (memory limit %d)", dir, s.HasSwap, s.SwapLimited, s.MemSwap, s.SwapLimit, s.MemLimit)
		}
		if s.Pressure.CPU != nil {
			t.Errorf("%s: pressure without pressure files", dir)
		}
	}
}

// A cgroup v2 cgroup that is gone reads as gone, not as zeros.
func TestReadV2Gone(t *testing.T) {
	r := Reader{Mode: host.CgroupV2, Driver: "cgroupfs", Root: t.TempDir()}
	if _, err := r.Read("/missing"); !errors.Is(err, ErrGone) {
		t.Errorf("a missing cgroup: %v, want ErrGone", err)
	}
}

func TestReadPSIMalformed(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":    "",
		"badvalue": "some avg10=x avg60=0 avg300=0 total=1\n",
		"nokv":     "some avg10\n",
	} {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if p := readPSI(file); p != nil {
			t.Errorf("%s: %+v, want nil", name, p)
		}
	}
	// The CPU file of older kernels has only a "some" line.
	file := filepath.Join(dir, "someonly")
	if err := os.WriteFile(file, []byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if p := readPSI(file); p == nil || p.Some.Total != 2000 || p.Full != nil {
		t.Errorf("some only: %+v", p)
	}
	if p := readPSI(filepath.Join(dir, "missing")); p != nil {
		t.Errorf("missing file: %+v", p)
	}
}

// v1 swap is what memory+swap counts beyond memory.
func TestSwapV1(t *testing.T) {
	const huge = 9223372036854771712 // what v1 shows for no limit
	// Usage and limit of memory and of memory+swap.
	type entry struct{ usage, limit uint64 }
	for name, c := range map[string]struct {
		mem, memsw   entry
		noMemsw      bool
		has, limited bool
		used, limit  uint64
	}{
		"no accounting": {mem: entry{100, huge}},
		"unlimited":     {mem: entry{100, huge}, memsw: entry{150, huge}, has: true, used: 50},
		"limited":       {mem: entry{100, 1000}, memsw: entry{130, 1500}, has: true, limited: true, used: 30, limit: 500},
		"memory only":   {mem: entry{100, 1000}, memsw: entry{100, 1000}, has: true, limited: true},
		"no swap entry": {mem: entry{100, huge}, noMemsw: true},
	} {
		mem := &stats1.MemoryStat{
			Usage: &stats1.MemoryEntry{Usage: c.mem.usage, Limit: c.mem.limit},
			Swap:  &stats1.MemoryEntry{Usage: c.memsw.usage, Limit: c.memsw.limit},
		}
		if c.noMemsw {
			mem.Swap = nil
		}
		var s Sample
		swapV1(&s, mem)
		if s.HasSwap != c.has || s.SwapLimited != c.limited || s.MemSwap != c.used || s.SwapLimit != c.limit {
			t.Errorf("%s: has %v limited %v used %d limit %d", name, s.HasSwap, s.SwapLimited, s.MemSwap, s.SwapLimit)
		}
	}
}

// TestReadV1FakeFiles: a v1 cgroup's sample from the files the kernel
// writes in each controller's hierarchy.
func TestReadV1FakeFiles(t *testing.T) {
	root := t.TempDir()
	fakeCgroup(t, root, "cpuacct/pod/ctr", map[string]string{"cpuacct.usage": "3000000\n", "cpuacct.stat": "user 2\nsystem 1\n"})
	fakeCgroup(t, root, "cpu/pod/ctr", map[string]string{"cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n"})
	fakeCgroup(t, root, "memory/pod/ctr", map[string]string{
		"memory.stat":                "cache 1\nrss 2\ntotal_cache 8192\ntotal_rss 4096\ntotal_mapped_file 1024\ntotal_inactive_file 2048\ntotal_pgfault 7\ntotal_pgmajfault 2\n",
		"memory.usage_in_bytes":      "16384\n",
		"memory.max_usage_in_bytes":  "32768\n",
		"memory.limit_in_bytes":      "9223372036854771712\n",
		"memory.failcnt":             "0\n",
		"memory.kmem.usage_in_bytes": "512\n",
		"memory.oom_control":         "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
	})
	fakeCgroup(t, root, "pids/pod/ctr", map[string]string{"pids.current": "5\n", "pids.max": "max\n"})
	fakeCgroup(t, root, "blkio/pod/ctr", map[string]string{
		"blkio.throttle.io_service_bytes_recursive": "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\nTotal 300\n",
		"blkio.throttle.io_serviced_recursive":      "8:0 Read 1\n8:0 Write 2\nTotal 3\n",
	})
	r := Reader{Mode: host.CgroupV1, Driver: "cgroupfs", Root: root}
	s, err := r.Read("/pod/ctr")
	if err != nil {
		t.Fatal(err)
	}
	if s.CPUNanos != 3000000 || s.UserNanos != 20_000_000 || s.SystemNanos != 10_000_000 || s.Periods != 10 || s.ThrottledPeriods != 4 || s.ThrottledNanos != 5000 {
		t.Errorf("cpu: %+v", s)
	}
	if s.MemUsage != 16384 || s.WorkingSet != 14336 || s.RSS != 4096 || s.MemCache != 8192 || s.MemMapped != 1024 || s.PageFaults != 7 || s.MajorPageFaults != 2 ||
		s.MemMaxUsage != 32768 || s.MemKernel != 512 || s.MemLimit != 0 || s.OOMKills != 3 || s.HasSwap {
		t.Errorf("memory: %+v", s)
	}
	if s.Processes != 5 || s.PidsLimit != 0 {
		t.Errorf("pids: %d of %d", s.Processes, s.PidsLimit)
	}
	if len(s.IO) != 1 || s.IO[0] != (DeviceIO{Major: 8, Minor: 0, ReadBytes: 100, WriteBytes: 200, Reads: 1, Writes: 2}) {
		t.Errorf("io: %+v", s.IO)
	}
	// With memory+swap accounting.
	fakeCgroup(t, root, "memory/pod/ctr", map[string]string{"memory.limit_in_bytes": "1048576\n", "memory.memsw.usage_in_bytes": "20480\n", "memory.memsw.limit_in_bytes": "2097152\n"})
	if s, err = r.Read("/pod/ctr"); err != nil || !s.HasSwap || s.MemSwap != 4096 || !s.SwapLimited || s.SwapLimit != 1048576 || s.MemLimit != 1048576 {
		t.Errorf("swap: %+v %v", s, err)
	}
	if _, err := r.Read("/pod/gone"); !errors.Is(err, ErrGone) {
		t.Errorf("missing cgroup: %v", err)
	}
}

// TestReadV1Blkio: which v1 blkio counters a sample takes.
func TestReadV1Blkio(t *testing.T) {
	r := func(root string) []DeviceIO {
		t.Helper()
		s, err := Reader{Mode: host.CgroupV1, Driver: "cgroupfs", Root: root}.Read("/pod")
		if err != nil {
			t.Fatal(err)
		}
		return s.IO
	}
	want := func(name string, got []DeviceIO, read uint64) {
		t.Helper()
		if len(got) != 1 || got[0].ReadBytes != read {
			t.Errorf("%s: %+v, want %d bytes read", name, got, read)
		}
	}
	throttle := map[string]string{
		"blkio.throttle.io_service_bytes_recursive": "8:0 Read 100\n",
		"blkio.throttle.io_serviced_recursive":      "8:0 Read 1\n",
		"blkio.throttle.io_service_bytes":           "8:0 Read 7\n",
		"blkio.throttle.io_serviced":                "8:0 Read 1\n",
	}
	// CFQ counters that count something win.
	root := t.TempDir()
	fakeCgroup(t, root, "blkio/pod", throttle)
	fakeCgroup(t, root, "blkio/pod", map[string]string{"blkio.io_service_bytes_recursive": "8:0 Read 300\n", "blkio.io_serviced_recursive": "8:0 Read 3\n"})
	want("CFQ", r(root), 300)
	// Empty CFQ counters (another scheduler): the throttling layer's.
	fakeCgroup(t, root, "blkio/pod", map[string]string{"blkio.io_service_bytes_recursive": "Total 0\n", "blkio.io_serviced_recursive": "Total 0\n"})
	want("empty CFQ", r(root), 100)
	// A directory (a child cgroup the container made) named as the CFQ
	// file is no CFQ counter.
	root = t.TempDir()
	fakeCgroup(t, root, "blkio/pod", throttle)
	if err := os.Mkdir(filepath.Join(root, "blkio/pod/blkio.io_serviced_recursive"), 0o755); err != nil {
		t.Fatal(err)
	}
	want("CFQ name taken by a directory", r(root), 100)
	// A kernel without the recursive throttling counters.
	root = t.TempDir()
	fakeCgroup(t, root, "blkio/pod", map[string]string{"blkio.throttle.io_service_bytes": "8:0 Read 7\n", "blkio.throttle.io_serviced": "8:0 Read 1\n"})
	want("no recursive counters", r(root), 7)
}
