package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

var (
	runs        = flag.Int("runs", 20, "runs per latency figure and round")
	rounds      = flag.Int("rounds", 2, "rounds per runtime, taken in turns (berth, containerd, berth, …) so that drift on the machine hits both")
	concurrent  = flag.Int("concurrent", 20, "pods started at once")
	listCount   = flag.Int("list", 1000, "containers for the list latency (0 skips it)")
	pullMB      = flag.Int("pull-mb", 180, "size of the cold-pull image (4 layers)")
	endpoint    = flag.String("endpoint", "", "measure only this CRI socket (unix://...) instead of berth and containerd")
	results     = flag.String("results", "_output/bench", "directory for results.md")
	runtimePath = flag.String("runtime", "/usr/sbin/runc", "OCI runtime every runtime under test uses")
	ctrd2Bin    = flag.String("containerd2-bin", "/var/cache/berth-k8s/containerd-v2.4.2/bin", "directory of containerd 2.4.2 and its runc shim (test/nodeconformance/build.sh containerd builds them)")
	baselines   = flag.String("baselines", "2.4.2,1.6.20", "containerd versions to compare with, the first is the one ratios are taken to (2.4.2: -containerd2-bin; 1.6.20: Debian's)")
)

// runtimeUnderTest is a CRI endpoint and how to find its processes.
type runtimeUnderTest struct {
	name  string
	rt    runtimeapi.RuntimeServiceClient
	img   runtimeapi.ImageServiceClient
	procs func() []int
}

func dial(t *testing.T, socket string) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+strings.TrimPrefix(socket, "unix://"), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// figures are one runtime's results.
type figures struct {
	lat            map[string][]time.Duration
	burst          time.Duration
	idleRSS        int // KiB
	idlePSS        int
	perPodRSS      float64 // KiB per pod
	perPodPSS      float64
	pull           time.Duration
	pullBytes      int64
	list           []time.Duration
	listContainers int
	rounds         int // merged into these figures
	// usedPSS is the idle memory at the start of the last round, after
	// the earlier rounds' thousand containers (KiB; 0 with one round).
	usedPSS int
}

// merge adds another round: latencies are pooled, burst and pull times
// averaged. Memory stays the first round's, a fresh daemon's: later
// rounds find the daemon after a thousand containers (usedPSS says how
// it looks then).
func (f *figures) merge(g *figures) {
	n := float64(f.rounds)
	avg := func(a, b float64) float64 { return (a*n + b) / (n + 1) }
	for op, ds := range g.lat {
		f.lat[op] = append(f.lat[op], ds...)
	}
	f.list = append(f.list, g.list...)
	f.burst = time.Duration(avg(float64(f.burst), float64(g.burst)))
	f.pull = time.Duration(avg(float64(f.pull), float64(g.pull)))
	f.usedPSS = g.idlePSS
	f.rounds++
}

func TestBench(t *testing.T) {
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	// The cold-pull image: four layers of incompressible data.
	var layers []v1.Layer
	for i := range 4 {
		layers = append(layers, registry.Layer(t, registry.File{Name: fmt.Sprintf("blob%d", i), Body: randomString(t, *pullMB<<20/4)}))
	}
	big := registry.Image(t, v1.Config{Cmd: []string{"sh"}}, layers...)
	reg.Push(t, "library/big:1", big)
	var pullBytes int64
	for _, l := range layers {
		n, _ := l.Size()
		pullBytes += n
	}

	var under []runtimeUnderTest
	if *endpoint != "" {
		rt, img := dial(t, *endpoint)
		under = append(under, runtimeUnderTest{name: *endpoint, rt: rt, img: img, procs: func() []int { return nil }})
	} else {
		b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc",
			Extra: fmt.Sprintf("[runtimes.runc]\npath = %q\n", *runtimePath),
			// containerd runs at warn; debug logging is not what is measured.
			Args: []string{"--log-level", "info"}})
		rt, img := dial(t, b.Socket)
		under = append(under, runtimeUnderTest{name: "berth", rt: rt, img: img, procs: func() []int {
			// This berthd's shims (their state dir is in their arguments).
			return append([]int{b.Pid()}, procsMatching("berth-shim --pod-id", b.State)...)
		}})
		for _, v := range strings.Split(*baselines, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			c := startContainerd(t, ctrdOptions{Version: v, Bin: *ctrd2Bin, Mirror: reg.Host, Runtime: *runtimePath})
			rt, img = dial(t, c.socket)
			under = append(under, runtimeUnderTest{name: c.name, rt: rt, img: img, procs: c.procs})
		}
	}
	for _, u := range under {
		// Whatever a failed run left goes before its runtime stops
		// (cleanups run last-registered first).
		t.Cleanup(func() { removeEverything(u) })
	}
	all := make([]*figures, len(under))
	for r := range *rounds {
		for i, u := range under {
			f := measure(t, u, pullBytes)
			t.Logf("round %d, %s: RunPodSandbox %s, Create+Start %s, ExecSync %s, StopPodSandbox %s (p50), cold pull %s", r+1, u.name,
				ms(percentile(f.lat["RunPodSandbox"], 0.5)), ms(percentile(f.lat["Create+Start"], 0.5)), ms(percentile(f.lat["ExecSync"], 0.5)),
				ms(percentile(f.lat["StopPodSandbox"], 0.5)), ms(f.pull))
			if all[i] == nil {
				all[i] = f
			} else {
				all[i].merge(f)
			}
		}
	}
	report(t, under, all)
}

func podConfig(name string, dir string) *runtimeapi.PodSandboxConfig {
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: name + "-uid"},
		Hostname:     name,
		LogDirectory: filepath.Join(dir, name),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			// What the kubelet asks for a pod that does not share its PID
			// namespace (the default).
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

func ctrConfig(name string, cmd ...string) *runtimeapi.ContainerConfig {
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1.36"},
		Command:  cmd,
		LogPath:  name + ".log",
		Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
}

// sigtermCmd exits at once on SIGTERM (wait is interruptible, sleep is not).
var sigtermCmd = []string{"sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func measure(t *testing.T, u runtimeUnderTest, pullBytes int64) *figures {
	ctx := context.Background()
	f := &figures{lat: map[string][]time.Duration{}, pullBytes: pullBytes, rounds: 1}
	dir := t.TempDir()
	_, err := u.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1.36"}})
	must(t, u.name+" pull busybox", err)
	// Warm up: the first pod pulls the pause image.
	warm, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("warm", dir)})
	must(t, u.name+" warm-up pod", err)
	_, _ = u.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: warm.PodSandboxId})
	_, _ = u.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: warm.PodSandboxId})
	time.Sleep(time.Second)
	f.idleRSS, f.idlePSS = memory(u.procs())

	// Sequential lifecycles.
	type pod struct{ id, ctr string }
	var pods []pod
	for i := range *runs {
		name := fmt.Sprintf("seq-%d", i)
		cfg := podConfig(name, dir)
		var p pod
		d, err := timed(func() error {
			r, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				p.id = r.PodSandboxId
			}
			return err
		})
		must(t, u.name+" RunPodSandbox", err)
		f.lat["RunPodSandbox"] = append(f.lat["RunPodSandbox"], d)
		d, err = timed(func() error {
			r, err := u.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: ctrConfig(name, sigtermCmd...), SandboxConfig: cfg})
			if err != nil {
				return err
			}
			p.ctr = r.ContainerId
			_, err = u.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: p.ctr})
			return err
		})
		must(t, u.name+" create+start", err)
		f.lat["Create+Start"] = append(f.lat["Create+Start"], d)
		pods = append(pods, p)
	}
	time.Sleep(500 * time.Millisecond) // let the traps be set
	for i := range *runs {
		d, err := timed(func() error {
			r, err := u.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: pods[i%len(pods)].ctr, Cmd: []string{"true"}, Timeout: 10})
			if err == nil && r.ExitCode != 0 {
				err = fmt.Errorf("exit %d: %s", r.ExitCode, r.Stderr)
			}
			return err
		})
		must(t, u.name+" ExecSync", err)
		f.lat["ExecSync"] = append(f.lat["ExecSync"], d)
	}
	for _, p := range pods {
		d, err := timed(func() error {
			_, err := u.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: p.ctr, Timeout: 10})
			return err
		})
		must(t, u.name+" StopContainer", err)
		f.lat["StopContainer"] = append(f.lat["StopContainer"], d)
	}
	for _, p := range pods {
		d, err := timed(func() error {
			_, err := u.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
			return err
		})
		must(t, u.name+" StopPodSandbox", err)
		f.lat["StopPodSandbox"] = append(f.lat["StopPodSandbox"], d)
		d, err = timed(func() error {
			_, err := u.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
			return err
		})
		must(t, u.name+" RemovePodSandbox", err)
		f.lat["RemovePodSandbox"] = append(f.lat["RemovePodSandbox"], d)
	}

	// Many pods at once, then memory with a container running in each.
	ids := make([]string, *concurrent)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(fmt.Sprintf("burst-%d", i), dir)})
			if err != nil {
				t.Errorf("%s burst RunPodSandbox: %v", u.name, err)
				return
			}
			ids[i] = r.PodSandboxId
		}()
	}
	wg.Wait()
	f.burst = time.Since(start)
	for i, id := range ids {
		cfg := podConfig(fmt.Sprintf("burst-%d", i), dir)
		r, err := u.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: id, Config: ctrConfig("burst", "sleep", "3600"), SandboxConfig: cfg})
		must(t, u.name+" burst create", err)
		_, err = u.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: r.ContainerId})
		must(t, u.name+" burst start", err)
	}
	time.Sleep(2 * time.Second)
	rss, pss := memory(u.procs())
	f.perPodRSS = float64(rss-f.idleRSS) / float64(*concurrent)
	f.perPodPSS = float64(pss-f.idlePSS) / float64(*concurrent)
	removeAll(t, u, ids)

	// Cold pull.
	f.pull, err = timed(func() error {
		_, err := u.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/big:1"}})
		return err
	})
	must(t, u.name+" cold pull", err)
	_, _ = u.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/big:1"}})

	// List latency with many containers (created, not started).
	if *listCount > 0 {
		const podsForList = 10
		listPods := make([]string, podsForList)
		for i := range listPods {
			cfg := podConfig(fmt.Sprintf("list-%d", i), dir)
			r, err := u.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			must(t, u.name+" list pod", err)
			listPods[i] = r.PodSandboxId
		}
		sem := make(chan struct{}, 4)
		for i := range *listCount {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p := i % podsForList
				_, err := u.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: listPods[p],
					Config: ctrConfig(fmt.Sprintf("c%d", i), "true"), SandboxConfig: podConfig(fmt.Sprintf("list-%d", p), dir)})
				if err != nil {
					t.Errorf("%s list create: %v", u.name, err)
				}
			}()
		}
		wg.Wait()
		for range *runs {
			var n int
			d, err := timed(func() error {
				r, err := u.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				if err == nil {
					n = len(r.Containers)
				}
				return err
			})
			must(t, u.name+" ListContainers", err)
			f.list = append(f.list, d)
			f.listContainers = n
		}
		removeAll(t, u, listPods)
	}
	return f
}

func removeAll(t *testing.T, u runtimeUnderTest, ids []string) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, id := range ids {
		if id == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = u.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			if _, err := u.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Errorf("%s remove: %v", u.name, err)
			}
		}()
	}
	wg.Wait()
}

// removeEverything stops and removes every pod of u.
func removeEverything(u runtimeUnderTest) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := u.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return
	}
	for _, p := range r.Items {
		_, _ = u.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
		_, _ = u.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// targets are the ratios (berth / containerd) to meet.
var targets = map[string]float64{
	"RunPodSandbox p50": 0.5, "ExecSync p50": 0.5, "Create+Start p50": 0.6, "StopPodSandbox p50": 0.5,
	"pods at once": 0.5, "memory per pod (PSS)": 0.25, "daemon idle (PSS)": 0.5, "cold pull": 1.0,
}

func report(t *testing.T, under []runtimeUnderTest, all []*figures) {
	type row struct {
		name string
		vals []float64
		unit string
	}
	var rows []row
	add := func(name, unit string, get func(f *figures) float64) {
		r := row{name: name, unit: unit}
		for _, f := range all {
			r.vals = append(r.vals, get(f))
		}
		rows = append(rows, r)
	}
	for _, op := range []string{"RunPodSandbox", "Create+Start", "ExecSync", "StopContainer", "StopPodSandbox", "RemovePodSandbox"} {
		add(op+" p50", "ms", func(f *figures) float64 { return float64(percentile(f.lat[op], 0.5).Microseconds()) / 1000 })
		add(op+" p90", "ms", func(f *figures) float64 { return float64(percentile(f.lat[op], 0.9).Microseconds()) / 1000 })
	}
	add("pods at once", "ms", func(f *figures) float64 { return float64(f.burst.Microseconds()) / 1000 })
	add("memory per pod (RSS)", "MB", func(f *figures) float64 { return f.perPodRSS / 1024 })
	add("memory per pod (PSS)", "MB", func(f *figures) float64 { return f.perPodPSS / 1024 })
	add("daemon idle (RSS)", "MB", func(f *figures) float64 { return float64(f.idleRSS) / 1024 })
	add("daemon idle (PSS)", "MB", func(f *figures) float64 { return float64(f.idlePSS) / 1024 })
	if *rounds > 1 {
		add("daemon idle after a round (PSS)", "MB", func(f *figures) float64 { return float64(f.usedPSS) / 1024 })
	}
	add("cold pull", "ms", func(f *figures) float64 { return float64(f.pull.Microseconds()) / 1000 })
	add("ListContainers p50", "ms", func(f *figures) float64 { return float64(percentile(f.list, 0.5).Microseconds()) / 1000 })

	host, _ := os.Hostname()
	var b strings.Builder
	fmt.Fprintf(&b, "# berth benchmark (%s, %s, %d rounds in turns of %d runs, %d pods at once, cold pull %.0f MB, list of %d containers)\n\n",
		*runtimePath, host, *rounds, *runs, *concurrent, float64(all[0].pullBytes)/1e6, all[0].listContainers)
	fmt.Fprintf(&b, "| figure |")
	for _, u := range under {
		fmt.Fprintf(&b, " %s |", u.name)
	}
	if len(under) >= 2 {
		fmt.Fprintf(&b, " ratio to %s | target |", under[1].name)
	}
	fmt.Fprintf(&b, "\n|---|")
	for range under {
		fmt.Fprintf(&b, "---|")
	}
	if len(under) >= 2 {
		fmt.Fprintf(&b, "---|---|")
	}
	fmt.Fprintln(&b)
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s |", r.name)
		for _, v := range r.vals {
			fmt.Fprintf(&b, " %.1f %s |", v, r.unit)
		}
		if len(r.vals) >= 2 {
			ratio := 0.0
			if r.vals[1] > 0 {
				ratio = r.vals[0] / r.vals[1]
			}
			target := ""
			if tg, ok := targets[r.name]; ok {
				mark := "met"
				if ratio > tg {
					mark = "NOT met"
				}
				target = fmt.Sprintf("≤ %.2f %s", tg, mark)
			}
			fmt.Fprintf(&b, " %.2f | %s |", ratio, target)
		}
		fmt.Fprintln(&b)
	}
	out := b.String()
	t.Log("\n" + out)
	if err := os.MkdirAll(*results, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(*results, "results.md"), []byte(out), 0o644)
	}
}
