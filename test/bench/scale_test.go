package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

var (
	scalePods     = flag.String("scale-pods", "110,250", "TestScale: pod counts, one scenario each")
	scaleNets     = flag.String("scale-net", "default,shared", "TestScale: networks: default (berth's own default network; containerd gets the same configuration on a bridge of its own) and shared (one standard CNI configuration, bridge with ipMasq, host-local and portmap, given to every runtime)")
	scaleRuntimes = flag.String("scale-runtimes", "berth,2.4.2", "TestScale: runtimes in the order they take turns: berth and containerd versions (2.4.2, 1.6.20); ratios are taken to 2.4.2")
	scaleRounds   = flag.Int("scale-rounds", 1, "TestScale: rounds per pod count, runtimes taking turns")
	scaleParallel = flag.Int("scale-parallel", 10, "TestScale: pods started (and torn down) at a time, as a kubelet does")
	scaleBurst    = flag.Int("scale-burst", 20, "TestScale: RunPodSandbox calls at once on an empty node, beside sequential ones (0 skips)")
	probeFor      = flag.Duration("probe-for", time.Minute, "TestScale: length of the probe storm")
	probePeriod   = flag.Duration("probe-period", 10*time.Second, "TestScale: every container gets an ExecSync this often, spread evenly")
	hotPods       = flag.Int("hot-pods", 3, "TestScale: pods probed more often")
	hotRate       = flag.Float64("hot-rate", 2, "TestScale: ExecSyncs per second on each hot pod")
	relistFor     = flag.Duration("relist-for", 30*time.Second, "TestScale: length of the relist and stats load (one cycle a second)")
	idleFor       = flag.Duration("idle-for", 10*time.Second, "TestScale: idle CPU sample before the probe storm")
	perfDir       = flag.String("perf-dir", "", "TestScale: record each phase (start, probes, relist) with perf record -a -g into this directory (profiling runs only: it costs CPU)")
	pprofPhases   = flag.Bool("pprof", false, "TestScale: with BERTH_BIN built with -tags berthpprof, save berthd's CPU and blocking profiles of each phase into -perf-dir")
)

// phase records a phase of the scenario with perf (and berthd's pprof)
// when -perf-dir is set; the returned func ends the recording.
func phase(t *testing.T, u *scaleRuntime, what string, n int, expect time.Duration) func() {
	if *perfDir == "" {
		return func() {}
	}
	_ = os.MkdirAll(*perfDir, 0o755)
	base := filepath.Join(*perfDir, fmt.Sprintf("%s-%s-%d-%s", strings.ReplaceAll(u.name, " ", "-"), u.network, n, what))
	cmd := exec.Command("perf", "record", "-a", "-g", "-q", "-o", base+".perf")
	if err := cmd.Start(); err != nil {
		t.Logf("perf: %v", err)
		return func() {}
	}
	var wg sync.WaitGroup
	if *pprofPhases && u.pprof != "" {
		secs := int(expect.Seconds())
		for _, p := range []string{"profile", "block"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := exec.Command("curl", "-s", "--unix-socket", u.pprof, "-o", base+"-"+p+".pprof",
					fmt.Sprintf("http://berthd/debug/pprof/%s?seconds=%d", p, max(secs, 1))).CombinedOutput()
				if err != nil {
					t.Logf("pprof %s: %v %s", p, err, out)
				}
			}()
		}
	}
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		wg.Wait()
	}
}

// scaleRuntime is a runtime under the node-scale scenario: its socket,
// its processes, and how to kill and restart its daemon.
type scaleRuntime struct {
	name   string
	socket string
	procs  func() []int
	// pause lists the sandbox (pause) processes of its pods: not the
	// runtime's own, but a per-pod cost (berth's runc pods have none).
	pause func() []int
	kill  func()
	start func(t *testing.T)
	// network names the network configuration; pprof is berthd's pprof
	// socket (a -tags berthpprof build), if any.
	network, pprof string

	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient
}

func (r *scaleRuntime) connect(t *testing.T) {
	t.Helper()
	if r.conn != nil {
		r.conn.Close()
	}
	conn, err := dialConn(r.socket)
	if err != nil {
		t.Fatal(err)
	}
	r.conn, r.rt, r.img = conn, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

func dialConn(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+strings.TrimPrefix(socket, "unix://"), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
}

// scaleFigures are one runtime's results for one pod count: latencies
// (pooled over rounds) and values (averaged over rounds).
type scaleFigures struct {
	lat map[string][]time.Duration
	val map[string][]float64
	// failures counts failed calls per figure.
	failures map[string]int
}

func newScaleFigures() *scaleFigures {
	return &scaleFigures{lat: map[string][]time.Duration{}, val: map[string][]float64{}, failures: map[string]int{}}
}

func (f *scaleFigures) add(name string, d time.Duration) { f.lat[name] = append(f.lat[name], d) }
func (f *scaleFigures) set(name string, v float64)       { f.val[name] = append(f.val[name], v) }

func (f *scaleFigures) value(name string) (float64, bool) {
	vs := f.val[name]
	if len(vs) == 0 {
		return 0, false
	}
	var sum float64
	for _, v := range vs {
		sum += v
	}
	return sum / float64(len(vs)), true
}

// TestScale is the node-scale scenario: N pods (one busybox each) started
// 10 at a time, a kubelet's probe storm and its relist and stats load,
// memory, a kill -9 of the daemon and the teardown, on berth and
// containerd side by side, on each network. make bench-scale runs it.
func TestScale(t *testing.T) {
	if !flagSet("scale-pods") && os.Getenv("BERTH_BENCH_SCALE") == "" {
		t.Skip("make bench-scale runs it (BERTH_BENCH_SCALE=1 or -scale-pods)")
	}
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	var counts []int
	for _, s := range strings.Split(*scalePods, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			t.Fatalf("-scale-pods %q: %v", *scalePods, err)
		}
		counts = append(counts, n)
	}
	var md strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&md, "# berth at node scale (%s, %s, %d rounds, %d pods at a time, probes every %s for %s plus %g/s on %d pods, relist and stats once a second for %s)\n\n",
		*runtimePath, host, *scaleRounds, *scaleParallel, *probePeriod, *probeFor, *hotRate, *hotPods, *relistFor)
	for _, netName := range strings.Split(*scaleNets, ",") {
		netName = strings.TrimSpace(netName)
		t.Run(netName, func(t *testing.T) {
			under := startScaleRuntimes(t, reg, netName)
			for _, n := range counts {
				all := make([]*scaleFigures, len(under))
				for i := range all {
					all[i] = newScaleFigures()
				}
				for r := range *scaleRounds {
					for i, u := range under {
						t.Logf("%s network, %d pods, round %d: %s", netName, n, r+1, u.name)
						runScale(t, u, n, all[i])
					}
				}
				table := scaleReport(under, all)
				t.Logf("%s network, %d pods:\n%s", netName, n, table)
				fmt.Fprintf(&md, "## %s network, %d pods\n\n%s\n", netName, n, table)
				writeScale(md.String())
			}
		})
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func writeScale(s string) {
	if err := os.MkdirAll(*results, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(*results, "scale.md"), []byte(s), 0o644)
	}
}

// Subnets of the shared configuration, one per runtime (they run side by
// side, each on a bridge of its own).
var sharedSubnets = map[string]string{"berth": "10.201.0.0/16", "2.4.2": "10.202.0.0/16", "1.6.20": "10.203.0.0/16"}

func startScaleRuntimes(t *testing.T, reg *registry.Server, netName string) []*scaleRuntime {
	t.Helper()
	mirror := reg.Host
	if netName != "default" && netName != "shared" {
		t.Fatalf("-scale-net: %q is neither default nor shared", netName)
	}
	ipam := t.TempDir()
	t.Cleanup(removeCgroupParents)
	var under []*scaleRuntime
	for _, name := range strings.Split(*scaleRuntimes, ",") {
		name = strings.TrimSpace(name)
		bridge := "benchs" + strings.ReplaceAll(name, ".", "")
		if netName == "shared" {
			t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
		}
		conf := sharedConf(bridge, "bench-"+name, sharedSubnets[name], filepath.Join(ipam, name))
		switch name {
		case "berth":
			opts := harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc",
				Extra: fmt.Sprintf("[runtimes.runc]\npath = %q\n", *runtimePath),
				Args:  []string{"--log-level", "info"}}
			if netName == "shared" {
				opts.CNIConfList = string(conf)
			}
			pprof := ""
			if *pprofPhases {
				pprof = filepath.Join(ipam, "pprof.sock")
				t.Setenv("BERTH_PPROF_SOCKET", pprof)
			}
			b := harness.Start(t, opts)
			u := &scaleRuntime{name: "berth", socket: b.Socket, pprof: pprof,
				procs: func() []int { return append([]int{b.Pid()}, procsMatching("berth-shim --pod-id", b.State)...) },
				kill:  func() { b.Kill(t) },
				start: func(t *testing.T) { b.Restart(t) },
			}
			u.pause = func() []int { return children(u.procs()[1:], "pause") }
			under = append(under, u)
		case "2.4.2", "1.6.20":
			o := ctrdOptions{Version: name, Bin: *ctrd2Bin, Mirror: mirror, Runtime: *runtimePath}
			if netName == "shared" {
				o.CNI = func(dir string) error { return os.WriteFile(filepath.Join(dir, "10-bench.conflist"), conf, 0o644) }
			}
			c := startContainerd(t, o)
			u := &scaleRuntime{name: c.name, socket: c.socket, procs: c.procs, kill: c.kill, start: c.start}
			u.pause = func() []int { return children(c.procs()[1:], "pause") }
			under = append(under, u)
		default:
			t.Fatalf("-scale-runtimes: unknown runtime %q (berth, 2.4.2, 1.6.20)", name)
		}
	}
	for _, u := range under {
		u.network = netName
		u.connect(t)
		t.Cleanup(func() {
			removeEverything(runtimeUnderTest{name: u.name, rt: u.rt})
			u.conn.Close()
		})
	}
	return under
}

// children are the processes named comm whose parent is one of pids.
func children(pids []int, comm string) []int {
	parents := map[int]bool{}
	for _, p := range pids {
		parents[p] = true
	}
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 || s[open+1:end] != comm {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); parents[ppid] {
			out = append(out, pid)
		}
	}
	return out
}

// cpuTicks is the CPU time (user and system, with that of the children
// each process reaped: the runtime binaries a shim or daemon runs) of
// each of pids, in clock ticks.
func cpuTicks(pids []int) map[int]int64 {
	out := map[int]int64{}
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		// Fields 14-17 of stat: utime stime cutime cstime (f[0] is field 3).
		if len(f) < 15 {
			continue
		}
		var sum int64
		for _, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			sum += n
		}
		out[pid] = sum
	}
	return out
}

// clockTick is USER_HZ, 100 on Linux for every architecture Go runs on.
const clockTick = 100

// cpuMeter measures the CPU seconds a runtime's processes spend between
// two points.
type cpuMeter struct {
	u      *scaleRuntime
	before map[int]int64
}

func startCPU(u *scaleRuntime) *cpuMeter { return &cpuMeter{u: u, before: cpuTicks(u.procs())} }

// seconds is the CPU time since startCPU of the processes alive now
// (a process started since counts whole).
func (m *cpuMeter) seconds() float64 {
	var d int64
	for pid, n := range cpuTicks(m.u.procs()) {
		d += n - m.before[pid]
	}
	return float64(d) / clockTick
}

// scaleCgroupParent is the parent of the scenario's pod cgroups (cgroupfs
// driver), as the kubelet always sends one (/kubepods/besteffort/pod<uid>):
// containerd's pod stats read the pod's cgroup. Removed after the run.
const scaleCgroupParent = "/bench-kubepods"

// scalePodConfig is podConfig with the pod's cgroup parent.
func scalePodConfig(name, dir string) *runtimeapi.PodSandboxConfig {
	cfg := podConfig(name, dir)
	cfg.Linux.CgroupParent = scaleCgroupParent + "/pod" + cfg.Metadata.Uid
	return cfg
}

// removeCgroupParents removes the scenario's cgroups left empty in every
// hierarchy, deepest first.
func removeCgroupParents() {
	_ = exec.Command("sh", "-c", "find /sys/fs/cgroup/*"+scaleCgroupParent+" /sys/fs/cgroup"+scaleCgroupParent+" -depth -type d -exec rmdir {} + 2>/dev/null").Run()
}

// scaleCtr is one pod of the scenario.
type scaleCtr struct{ pod, ctr string }

func runScale(t *testing.T, u *scaleRuntime, n int, f *scaleFigures) {
	ctx := context.Background()
	dir := t.TempDir()
	_, err := u.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1.36"}})
	must(t, u.name+" pull busybox", err)
	warm, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("warm", dir)})
	must(t, u.name+" warm-up pod", err)
	_, _ = u.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: warm.PodSandboxId})
	_, _ = u.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: warm.PodSandboxId})
	time.Sleep(time.Second)
	_, idlePSS := memory(u.procs())

	if *scaleBurst > 0 {
		// Sequential RunPodSandbox on an empty node, then as many at once.
		var ids []string
		for i := range 10 {
			var id string
			d, err := timed(func() error {
				r, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: scalePodConfig(fmt.Sprintf("seq-%d", i), dir)})
				if err == nil {
					id = r.PodSandboxId
				}
				return err
			})
			must(t, u.name+" RunPodSandbox", err)
			f.add("RunPodSandbox alone", d)
			ids = append(ids, id)
		}
		removeAll(t, runtimeUnderTest{name: u.name, rt: u.rt}, ids)
		ids = make([]string, *scaleBurst)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: scalePodConfig(fmt.Sprintf("burst-%d", i), dir)})
				if err != nil {
					t.Errorf("%s burst RunPodSandbox: %v", u.name, err)
					return
				}
				ids[i] = r.PodSandboxId
			}()
		}
		wg.Wait()
		f.set(fmt.Sprintf("%d RunPodSandbox at once", *scaleBurst), ms64(time.Since(start)))
		removeAll(t, runtimeUnderTest{name: u.name, rt: u.rt}, ids)
		time.Sleep(time.Second)
	}

	// Start all N, *scaleParallel at a time, as the kubelet's pod workers
	// would on a node that just came up.
	ctrs := make([]scaleCtr, n)
	sem := make(chan struct{}, *scaleParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	endPhase := phase(t, u, "start", n, time.Duration(n)*40*time.Millisecond)
	cpu := startCPU(u)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("scale-%d", i)
			cfg := scalePodConfig(name, dir)
			s := time.Now()
			r, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err != nil {
				t.Errorf("%s RunPodSandbox %s: %v", u.name, name, err)
				return
			}
			d1 := time.Since(s)
			s = time.Now()
			c, err := u.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: r.PodSandboxId, Config: ctrConfig(name, sigtermCmd...), SandboxConfig: cfg})
			if err == nil {
				_, err = u.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId})
			}
			d2 := time.Since(s)
			mu.Lock()
			defer mu.Unlock()
			ctrs[i].pod = r.PodSandboxId
			if err != nil {
				t.Errorf("%s create+start %s: %v", u.name, name, err)
				return
			}
			ctrs[i].ctr = c.ContainerId
			f.add("RunPodSandbox", d1)
			f.add("Create+Start", d2)
		}()
	}
	wg.Wait()
	f.set("start of all pods", ms64(time.Since(start)))
	endPhase()
	f.set("CPU to start a pod", cpu.seconds()*1000/float64(n))
	if t.Failed() {
		teardown(t, u, ctrs, f)
		t.FailNow()
	}
	time.Sleep(2 * time.Second) // let the traps be set, the daemons settle
	_, pss := memory(u.procs())
	_, pausePSS := memory(u.pause())
	f.set("memory (PSS) with the pods", float64(pss)/1024)
	f.set("memory (PSS) per pod", float64(pss-idlePSS)/1024/float64(n))
	f.set("pause processes (PSS)", float64(pausePSS)/1024)
	if ps := u.procs(); len(ps) > 1 {
		t.Logf("%s daemon: %s; a shim: %s", u.name, rollup(ps[0]), rollup(ps[1]))
	}

	// Idle CPU with N pods, to read the figures below against.
	cpu = startCPU(u)
	time.Sleep(*idleFor)
	f.set("idle CPU with the pods", cpu.seconds()*1000/idleFor.Seconds())

	probeStorm(t, u, ctrs, f)
	relistLoad(t, u, n, f)
	restart(t, u, n, f)
	teardown(t, u, ctrs, f)
}

// rollup is the memory summary of pid (KiB) from smaps_rollup.
func rollup(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "Rss:" || strings.HasPrefix(f[0], "Pss") || f[0] == "Private_Dirty:" || f[0] == "Shared_Clean:") {
			out = append(out, f[0]+f[1])
		}
	}
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "Threads:") {
				out = append(out, strings.Join(strings.Fields(line), ""))
			}
		}
	}
	// The largest mappings by RSS.
	if smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid)); err == nil {
		type m struct {
			name string
			rss  int
		}
		var maps []m
		for _, line := range strings.Split(string(smaps), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
				name := "anon"
				if len(f) >= 6 {
					name = f[5]
				}
				maps = append(maps, m{name: f[0] + " " + name})
			case len(f) >= 2 && f[0] == "Rss:" && len(maps) > 0:
				maps[len(maps)-1].rss, _ = strconv.Atoi(f[1])
			}
		}
		sort.Slice(maps, func(i, j int) bool { return maps[i].rss > maps[j].rss })
		for _, x := range maps[:min(5, len(maps))] {
			out = append(out, fmt.Sprintf("[%s %dk]", x.name, x.rss))
		}
	}
	return strings.Join(out, " ")
}

func ms64(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// probeStorm gives every container an ExecSync every *probePeriod, spread
// evenly over the period, for *probeFor, and *hotRate a second to the
// first *hotPods containers; each probe runs when it is due, whether the
// earlier ones returned or not, as the kubelet's probe workers do.
func probeStorm(t *testing.T, u *scaleRuntime, ctrs []scaleCtr, f *scaleFigures) {
	type due struct {
		at  time.Duration
		ctr string
	}
	var plan []due
	n := len(ctrs)
	for i, c := range ctrs {
		for at := *probePeriod * time.Duration(i) / time.Duration(n); at < *probeFor; at += *probePeriod {
			plan = append(plan, due{at, c.ctr})
		}
	}
	if *hotRate > 0 {
		every := time.Duration(float64(time.Second) / *hotRate)
		for h := range min(*hotPods, n) {
			for at := every * time.Duration(h) / time.Duration(max(*hotPods, 1)); at < *probeFor; at += every {
				plan = append(plan, due{at, ctrs[h].ctr})
			}
		}
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].at < plan[j].at })
	var (
		mu    sync.Mutex
		lat   []time.Duration
		fails atomic.Int64
		wg    sync.WaitGroup
	)
	ctx := context.Background()
	endPhase := phase(t, u, "probes", n, *probeFor)
	defer endPhase()
	cpu := startCPU(u)
	start := time.Now()
	for _, p := range plan {
		time.Sleep(time.Until(start.Add(p.at)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := timed(func() error {
				r, err := u.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: p.ctr, Cmd: []string{"true"}, Timeout: 10})
				if err == nil && r.ExitCode != 0 {
					err = fmt.Errorf("exit %d: %s", r.ExitCode, r.Stderr)
				}
				return err
			})
			if err != nil {
				if fails.Add(1) <= 3 {
					t.Logf("%s ExecSync: %v", u.name, err)
				}
				return
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := cpu.seconds()
	f.lat["ExecSync"] = append(f.lat["ExecSync"], lat...)
	f.failures["ExecSync"] += int(fails.Load())
	f.set("probes per second", float64(len(plan))/probeFor.Seconds())
	f.set("CPU per probe", secs*1000/float64(len(plan)))
}

// relistLoad calls what the kubelet's relist and stats collection call,
// once a second for *relistFor.
func relistLoad(t *testing.T, u *scaleRuntime, n int, f *scaleFigures) {
	ctx := context.Background()
	cycles := int(relistFor.Seconds())
	calls := []struct {
		name string
		call func() (int, error)
	}{
		// The smallest call: what the transport alone costs, the floor of
		// the others.
		{"Version", func() (int, error) {
			_, err := u.rt.Version(ctx, &runtimeapi.VersionRequest{})
			return n, err
		}},
		{"ListPodSandbox", func() (int, error) {
			r, err := u.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
			return len(r.GetItems()), err
		}},
		{"ListContainers", func() (int, error) {
			r, err := u.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
			return len(r.GetContainers()), err
		}},
		{"ListContainerStats", func() (int, error) {
			r, err := u.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			return len(r.GetStats()), err
		}},
		{"ListPodSandboxStats", func() (int, error) {
			r, err := u.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			return len(r.GetStats()), err
		}},
	}
	endPhase := phase(t, u, "relist", n, *relistFor)
	defer endPhase()
	cpu := startCPU(u)
	start := time.Now()
	for c := range cycles {
		time.Sleep(time.Until(start.Add(time.Duration(c) * time.Second)))
		for _, call := range calls {
			var got int
			d, err := timed(func() (err error) { got, err = call.call(); return err })
			if err != nil || got < n {
				f.failures[call.name]++
				if f.failures[call.name] <= 2 {
					t.Logf("%s %s: %d of %d, %v", u.name, call.name, got, n, err)
				}
				continue
			}
			f.add(call.name, d)
		}
	}
	f.set("CPU per relist+stats cycle", cpu.seconds()*1000/float64(cycles))
}

// restart kills the daemon (SIGKILL) with the pods running, starts it
// again and times until it answers with every pod and container listed.
func restart(t *testing.T, u *scaleRuntime, n int, f *scaleFigures) {
	u.conn.Close()
	u.conn = nil
	start := time.Now()
	u.kill()
	started := make(chan struct{})
	go func() {
		defer close(started)
		u.start(t)
	}()
	deadline := start.Add(2 * time.Minute)
	for !listedAll(u.socket, n) {
		if time.Now().After(deadline) {
			<-started
			t.Fatalf("%s lists fewer than %d pods two minutes after a restart", u.name, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.set("restart to a full list", ms64(time.Since(start)))
	<-started
	u.connect(t)
}

// listedAll says whether the runtime at socket answers, on a connection of
// its own, with n ready pods and n running containers.
func listedAll(socket string, n int) bool {
	conn, err := dialConn(socket)
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
	if err != nil || len(pods.Items) < n {
		return false
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	return err == nil && len(ctrs.Containers) >= n
}

// teardown stops and removes every pod, *scaleParallel at a time, as the
// kubelet does when they are deleted: the container (it exits on
// SIGTERM), then the sandbox.
func teardown(t *testing.T, u *scaleRuntime, ctrs []scaleCtr, f *scaleFigures) {
	ctx := context.Background()
	sem := make(chan struct{}, *scaleParallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for _, c := range ctrs {
		if c.pod == "" {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d, err := timed(func() error {
				if c.ctr != "" {
					if _, err := u.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.ctr, Timeout: 10}); err != nil {
						return err
					}
				}
				if _, err := u.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: c.pod}); err != nil {
					return err
				}
				_, err := u.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: c.pod})
				return err
			})
			if err != nil {
				t.Errorf("%s teardown of %s: %v", u.name, c.pod, err)
				return
			}
			mu.Lock()
			f.add("pod teardown", d)
			mu.Unlock()
		}()
	}
	wg.Wait()
	f.set("teardown of all pods", ms64(time.Since(start)))
	time.Sleep(time.Second)
}

// scaleTargets are the ratios (berth / containerd 2.4.2) to meet;
// absolute ones (restart) are in scaleAbsolute.
var scaleTargets = map[string]float64{
	"start of all pods": 0.35, "RunPodSandbox p99": 0.35, "ExecSync p99": 0.35, "CPU per probe": 0.3, "CPU per probe, net of idle": 0.3,
	"ListPodSandbox p50": 0.3, "ListContainers p50": 0.3, "ListContainerStats p50": 0.3, "ListPodSandboxStats p50": 0.3,
	"CPU per relist+stats cycle": 0.3, "memory (PSS) with the pods": 0.3,
}

var scaleAbsolute = map[string]float64{"restart to a full list": 500}

func scaleReport(under []*scaleRuntime, all []*scaleFigures) string {
	type row struct {
		name, unit string
		get        func(f *scaleFigures) (float64, bool)
	}
	lat := func(op string, p float64, label string) row {
		return row{name: op + " " + label, unit: "ms", get: func(f *scaleFigures) (float64, bool) {
			if len(f.lat[op]) == 0 {
				return 0, false
			}
			return ms64(percentile(f.lat[op], p)), true
		}}
	}
	val := func(name, unit string) row {
		return row{name: name, unit: unit, get: func(f *scaleFigures) (float64, bool) { return f.value(name) }}
	}
	derived := func(name, unit string, get func(f *scaleFigures) (float64, bool)) row {
		return row{name: name, unit: unit, get: get}
	}
	rows := []row{
		lat("RunPodSandbox alone", 0.5, "p50"),
		val(fmt.Sprintf("%d RunPodSandbox at once", *scaleBurst), "ms"),
		val("start of all pods", "ms"),
		lat("RunPodSandbox", 0.5, "p50"), lat("RunPodSandbox", 0.99, "p99"),
		lat("Create+Start", 0.5, "p50"), lat("Create+Start", 0.99, "p99"),
		val("CPU to start a pod", "ms"),
		val("memory (PSS) with the pods", "MB"), val("memory (PSS) per pod", "MB"), val("pause processes (PSS)", "MB"),
		val("idle CPU with the pods", "ms/s"),
		val("probes per second", ""),
		lat("ExecSync", 0.5, "p50"), lat("ExecSync", 0.99, "p99"),
		val("CPU per probe", "ms"),
		// What the probes cost beyond what the runtime spends idle.
		derived("CPU per probe, net of idle", "ms", func(f *scaleFigures) (float64, bool) {
			cpu, ok1 := f.value("CPU per probe")
			idle, ok2 := f.value("idle CPU with the pods")
			rate, ok3 := f.value("probes per second")
			if !ok1 || !ok2 || !ok3 || rate == 0 {
				return 0, false
			}
			return max(cpu-idle/rate, 0), true
		}),
	}
	for _, op := range []string{"Version", "ListPodSandbox", "ListContainers", "ListContainerStats", "ListPodSandboxStats"} {
		rows = append(rows, lat(op, 0.5, "p50"), lat(op, 0.99, "p99"))
	}
	rows = append(rows, val("CPU per relist+stats cycle", "ms"),
		derived("CPU per relist+stats cycle, net of idle", "ms", func(f *scaleFigures) (float64, bool) {
			cpu, ok1 := f.value("CPU per relist+stats cycle")
			idle, ok2 := f.value("idle CPU with the pods")
			return max(cpu-idle, 0), ok1 && ok2 // a cycle a second
		}),
		val("restart to a full list", "ms"),
		lat("pod teardown", 0.5, "p50"), lat("pod teardown", 0.99, "p99"), val("teardown of all pods", "ms"))

	// Ratios to containerd 2.4.2 when it ran, else to the second column.
	base := -1
	for i, u := range under {
		if u.name == "containerd 2.4.2" {
			base = i
		}
	}
	if base < 0 && len(under) > 1 {
		base = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| figure |")
	for _, u := range under {
		fmt.Fprintf(&b, " %s |", u.name)
	}
	if base >= 0 {
		fmt.Fprintf(&b, " berth / %s | target |", under[base].name)
	}
	fmt.Fprintf(&b, "\n|---|")
	for range under {
		fmt.Fprintf(&b, "---|")
	}
	if base >= 0 {
		fmt.Fprintf(&b, "---|---|")
	}
	fmt.Fprintln(&b)
	for _, r := range rows {
		vals := make([]float64, len(all))
		have := make([]bool, len(all))
		some := false
		for i, f := range all {
			vals[i], have[i] = r.get(f)
			some = some || have[i]
		}
		if !some {
			continue
		}
		fmt.Fprintf(&b, "| %s |", r.name)
		for i, v := range vals {
			if !have[i] {
				fmt.Fprintf(&b, " – |")
				continue
			}
			fmt.Fprintf(&b, " %s %s |", num(v), r.unit)
		}
		if base >= 0 {
			if !have[0] || !have[base] {
				fmt.Fprintf(&b, " – | |\n")
				continue
			}
			ratio := 0.0
			if vals[base] > 0 {
				ratio = vals[0] / vals[base]
			}
			target := ""
			if tg, ok := scaleTargets[r.name]; ok && under[0].name == "berth" {
				target = fmt.Sprintf("≤ %.2f %s", tg, verdict(ratio <= tg))
			}
			if tg, ok := scaleAbsolute[r.name]; ok && under[0].name == "berth" {
				target = fmt.Sprintf("≤ %.0f %s %s", tg, r.unit, verdict(vals[0] <= tg))
			}
			fmt.Fprintf(&b, " %.2f | %s |", ratio, target)
		}
		fmt.Fprintln(&b)
	}
	var fails []string
	for i, f := range all {
		for name, c := range f.failures {
			if c > 0 {
				fails = append(fails, fmt.Sprintf("%s: %d failed %s", under[i].name, c, name))
			}
		}
	}
	sort.Strings(fails)
	if len(fails) > 0 {
		fmt.Fprintf(&b, "\nFailures: %s.\n", strings.Join(fails, "; "))
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
