package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

// cycles is how many pod lifecycles the leak test runs; make soak raises it.
func cycles(def int) int {
	if n, err := strconv.Atoi(os.Getenv("BERTH_CYCLES")); err == nil && n > 0 {
		return n
	}
	return def
}

// shimPid finds the shim process of pod.
func shimPid(t *testing.T, pod string) int {
	t.Helper()
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmd), "berth-shim") && strings.Contains(string(cmd), pod) {
			pid, _ := strconv.Atoi(p.Name())
			return pid
		}
	}
	return 0
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func TestShimKilledIsNoticed(t *testing.T) {
	for _, handler := range []string{"runc", "crun"} {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			dir := t.TempDir()
			before := b.CountLeaks(t)
			pod, ctr := podWithContainer(t, b, dir, "orphaned", "sleep 600")
			pid := waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING).Info.Pid

			shim := shimPid(t, pod)
			if shim == 0 {
				t.Fatal("no shim process for the pod")
			}
			if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			in := waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_EXITED)
			if !strings.Contains(in.Status.GetMessage(), "berth-shim") || in.Status.GetFinishedAt() == 0 {
				t.Errorf("after the shim died: %v, message %q", in.Status, in.Status.GetMessage())
			}
			// The orphaned container process is killed, not left running.
			deadline := time.Now().Add(10 * time.Second)
			for alive(pid) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if alive(pid) {
				t.Errorf("container process %d outlived its shim", pid)
			}
			if st := b.PodSandboxStatus(t, pod, nil); st.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
				t.Errorf("pod after its shim died: %s", st.GetState())
			}
			b.Crictl(t, "rmp", "-f", pod)
			waitNoLeaks(t, b, before)
		})
	}
}

// inventory is what crictl lists after a restart.
func listed(t *testing.T, b *harness.Berthd) (pods map[string]runtimeapi.PodSandboxState, ctrs map[string]runtimeapi.ContainerState) {
	t.Helper()
	var pl runtimeapi.ListPodSandboxResponse
	b.CrictlProto(t, &pl, "pods")
	pods = map[string]runtimeapi.PodSandboxState{}
	for _, p := range pl.GetItems() {
		pods[p.GetId()] = p.GetState()
	}
	var cl runtimeapi.ListContainersResponse
	b.CrictlProto(t, &cl, "ps", "-a")
	ctrs = map[string]runtimeapi.ContainerState{}
	for _, c := range cl.GetContainers() {
		ctrs[c.GetId()] = c.GetState()
	}
	return pods, ctrs
}

// checkNoOrphans asserts that every netns, shim and mount on the host
// belongs to a pod or container berthd lists.
func checkNoOrphans(t *testing.T, b *harness.Berthd, pods map[string]runtimeapi.PodSandboxState, ctrs map[string]runtimeapi.ContainerState) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(b.State, "netns"))
	for _, e := range ents {
		if _, ok := pods[e.Name()]; !ok {
			t.Errorf("orphaned network namespace %s", e.Name())
		}
	}
	procs, _ := os.ReadDir("/proc")
	podFlag := regexp.MustCompile(`--pod-id\x00([0-9a-f]{64})`)
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmd), "berth-shim") || !strings.Contains(string(cmd), b.State) {
			continue
		}
		if m := podFlag.FindSubmatch(cmd); m != nil {
			if _, ok := pods[string(m[1])]; !ok {
				t.Errorf("orphaned shim of pod %s", m[1])
			}
		}
	}
	data, _ := os.ReadFile("/proc/self/mountinfo")
	idRe := regexp.MustCompile(`[0-9a-f]{64}`)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || (!strings.HasPrefix(f[4], b.Root+"/") && !strings.HasPrefix(f[4], b.State+"/")) {
			continue
		}
		id := idRe.FindString(f[4])
		if _, ok := pods[id]; !ok {
			if _, ok := ctrs[id]; !ok {
				t.Errorf("orphaned mount %s", f[4])
			}
		}
	}
}

// TestCrashUnderLoad kills berthd (SIGKILL) while pods are being created,
// started, stopped and removed and images pulled, restarts it, and checks
// that what it lists is consistent, nothing it does not list is left on
// the host, and everything can then be removed without leaks.
func TestCrashUnderLoad(t *testing.T) {
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	big := fixtures.Busybox(t, v1.Config{}, registry.File{Name: "data", Body: randomString(t, 8<<20)})
	reg.Push(t, "library/big:1", big)
	b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc"})
	before := b.CountLeaks(t)
	b.Crictl(t, "pull", "busybox:1.36")
	dir := t.TempDir()

	for round := range 3 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				handler := []string{"runc", "crun"}[w%2]
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("chaos-%d-%d-%d", round, w, i)
					podCfg := podConfig(t, dir, name, 0)
					out, err := b.TryCrictl(t, "runp", "--runtime", handler, podCfg)
					if err != nil {
						return // berthd is gone
					}
					pod := strings.TrimSpace(out)
					out, err = b.TryCrictl(t, "create", pod, ctrConfig(t, dir, name, "sleep 600"), podCfg)
					if err != nil {
						return
					}
					ctr := strings.TrimSpace(out)
					if _, err := b.TryCrictl(t, "start", ctr); err != nil {
						return
					}
					if i%2 == 0 {
						if _, err := b.TryCrictl(t, "stop", "--timeout", "1", ctr); err != nil {
							return
						}
						if _, err := b.TryCrictl(t, "rmp", "-f", pod); err != nil {
							return
						}
					}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = b.TryCrictl(t, "pull", "big:1")
		}()
		time.Sleep(time.Duration(1500+round*700) * time.Millisecond)
		b.Kill(t)
		close(stop)
		wg.Wait()
		b.Restart(t)

		pods, ctrs := listed(t, b)
		checkNoOrphans(t, b, pods, ctrs)
		for id, state := range ctrs {
			if state == runtimeapi.ContainerState_CONTAINER_RUNNING {
				in := inspectCtr(t, b, id)
				if !alive(in.Info.Pid) {
					t.Errorf("round %d: container %s listed running, its process %d is gone", round, id[:12], in.Info.Pid)
				}
			}
		}
		for id, state := range pods {
			if state == runtimeapi.PodSandboxState_SANDBOX_READY && shimPid(t, id) == 0 {
				t.Errorf("round %d: pod %s listed ready without a shim", round, id[:12])
			}
		}
		// An image is listed whole or not at all.
		var imgs runtimeapi.ListImagesResponse
		b.CrictlProto(t, &imgs, "images")
		for _, img := range imgs.GetImages() {
			for _, tag := range img.GetRepoTags() {
				if tag == "docker.io/library/big:1" {
					out := b.Crictl(t, "create", strings.TrimSpace(b.Crictl(t, "runp", podConfig(t, dir, fmt.Sprintf("probe-%d", round), 0))),
						writeJSON(t, filepath.Join(dir, "probe.json"), &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "probe"}, Image: &runtimeapi.ImageSpec{Image: "big:1"}, Command: []string{"true"}, Linux: &runtimeapi.LinuxContainerConfig{}}),
						podConfig(t, dir, fmt.Sprintf("probe-%d", round), 0))
					if strings.TrimSpace(out) == "" {
						t.Errorf("listed image big:1 cannot be used")
					}
				}
			}
		}
		t.Logf("round %d: after the crash %d pods, %d containers listed", round, len(pods), len(ctrs))
	}
	b.Crictl(t, "rmp", "-a", "-f")
	waitNoLeaks(t, b, before)
}

func randomString(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestManyPodsSurviveCrash runs pods on every handler, kills berthd and
// checks that every one comes back as it was.
func TestManyPodsSurviveCrash(t *testing.T) {
	b := startBerthd(t, "runc")
	dir := t.TempDir()
	b.Crictl(t, "pull", "busybox:1.36")
	n := cycles(30)
	want := map[string]int{}
	for i := range n {
		handler := []string{"runc", "crun", "runc", "crun", "runsc"}[i%5]
		podCfg := podConfig(t, dir, fmt.Sprintf("many-%d", i), 0)
		pod := strings.TrimSpace(b.Crictl(t, "runp", "--runtime", handler, podCfg))
		ctr := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, fmt.Sprintf("many-%d", i), "sleep 600"), podCfg))
		b.Crictl(t, "start", ctr)
		want[ctr] = waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING).Info.Pid
	}
	b.Kill(t)
	start := time.Now()
	b.Restart(t)
	t.Logf("%d pods: berthd answered %v after restart", n, time.Since(start).Round(time.Millisecond))
	if m := regexp.MustCompile(`msg="recovered pods".*duration=(\S+)`).FindStringSubmatch(b.Log()); m != nil {
		t.Logf("recovery took %s", m[1])
	}
	pods, ctrs := listed(t, b)
	if len(pods) != n || len(ctrs) != n {
		t.Errorf("after the crash %d pods and %d containers listed, want %d", len(pods), len(ctrs), n)
	}
	for ctr, pid := range want {
		if in := inspectCtr(t, b, ctr); in.Status.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING || in.Info.Pid != pid {
			t.Errorf("container %s after the crash: %s pid %d (was %d)", ctr[:12], in.Status.State, in.Info.Pid, pid)
		}
	}
	checkNoOrphans(t, b, pods, ctrs)
	b.Crictl(t, "rmp", "-a", "-f")
}

// TestGracefulShutdownUnderLoad: SIGTERM while calls run lets them finish,
// refuses new ones, keeps pods running and exits 0.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	b := startBerthd(t, "runc")
	dir := t.TempDir()
	_, ctr := podWithContainer(t, b, dir, "busy", "sleep 600")
	pid := waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING).Info.Pid

	client := b.Client(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []error
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				var err error
				switch w % 3 {
				case 0:
					_, err = client.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sh", "-c", "sleep 0.2"}})
				case 1:
					_, err = client.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
						Metadata: &runtimeapi.PodSandboxMetadata{Name: fmt.Sprintf("load-%d-%d", w, i), Namespace: "e2e", Uid: fmt.Sprint(w, i)}}})
				default:
					_, err = client.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{})
				}
				if err != nil {
					if status.Code(err) != codes.Unavailable {
						mu.Lock()
						bad = append(bad, err)
						mu.Unlock()
					}
					return // refused: berthd is stopping
				}
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	start := time.Now()
	if err := b.Stop(t); err != nil {
		t.Errorf("berthd exit: %v", err)
	}
	wg.Wait()
	t.Logf("SIGTERM to exit: %v", time.Since(start).Round(time.Millisecond))
	for _, err := range bad {
		t.Errorf("a call in flight failed other than Unavailable: %v", err)
	}
	if !alive(pid) {
		t.Fatal("the container stopped with berthd")
	}
	b.Restart(t)
	pods, ctrs := listed(t, b)
	checkNoOrphans(t, b, pods, ctrs)
	if in := inspectCtr(t, b, ctr); in.Status.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after restart: %s", in.Status.State)
	}
	b.Crictl(t, "rmp", "-a", "-f")
}

// TestLifecyclesLeakNothing runs pod lifecycles on every handler and
// compares what the host holds, and berthd's descriptors and goroutines,
// before and after.
func TestLifecyclesLeakNothing(t *testing.T) {
	b, port := startWithMetrics(t)
	dir := t.TempDir()
	b.Crictl(t, "pull", "busybox:1.36")
	cycle := func(i int) {
		handler := handlers[i%len(handlers)]
		podCfg := podConfig(t, dir, fmt.Sprintf("leak-%d", i%3), 0)
		pod := strings.TrimSpace(b.Crictl(t, "runp", "--runtime", handler, podCfg))
		ctr := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, fmt.Sprintf("leak-%d", i%3), "echo hi; sleep 600"), podCfg))
		b.Crictl(t, "start", ctr)
		b.Crictl(t, "exec", "-s", ctr, "true")
		b.Crictl(t, "stop", "--timeout", "1", ctr)
		b.Crictl(t, "stopp", pod)
		b.Crictl(t, "rmp", pod)
	}
	// One round first: caches, connections and lazily started goroutines
	// settle.
	for i := range len(handlers) {
		cycle(i)
	}
	time.Sleep(time.Second)
	leaks, fds, goroutines := b.CountLeaks(t), fdCount(b.Pid()), goroutineCount(t, port)
	n := cycles(15)
	for i := range n {
		cycle(i)
	}
	time.Sleep(2 * time.Second)
	waitNoLeaks(t, b, leaks)
	if after := fdCount(b.Pid()); after > fds+2 {
		t.Errorf("berthd holds %d descriptors after %d cycles, %d before", after, n, fds)
	}
	if after := goroutineCount(t, port); after > goroutines+5 {
		t.Errorf("berthd runs %d goroutines after %d cycles, %d before", after, n, goroutines)
	}
	t.Logf("%d cycles: %+v, %d fds, %d goroutines", n, leaks, fds, goroutines)
}

func fdCount(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

func goroutineCount(t *testing.T, port int) int {
	m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindStringSubmatch(httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port)))
	if m == nil {
		t.Fatal("no go_goroutines in /metrics")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestPullOutOfDisk fills a small root on purpose: the pull fails clearly,
// lists nothing, leaves no layer behind, and succeeds once there is room.
func TestPullOutOfDisk(t *testing.T) {
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	reg.Push(t, "library/big:1", fixtures.Busybox(t, v1.Config{}, registry.File{Name: "data", Body: randomString(t, 24<<20)}))
	b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), RootSize: "20m"})
	out, err := b.TryCrictl(t, "pull", "big:1")
	if err == nil || !strings.Contains(out, "ResourceExhausted") {
		t.Fatalf("pull onto a full disk: %v\n%s", err, out)
	}
	if imgs := b.Crictl(t, "images", "-q"); strings.TrimSpace(imgs) != "" {
		t.Errorf("a failed pull left images: %q", imgs)
	}
	layers, _ := os.ReadDir(filepath.Join(b.Root, "images", "layers"))
	tmp, _ := os.ReadDir(filepath.Join(b.Root, "images", "tmp"))
	if len(layers)+len(tmp) != 0 {
		t.Errorf("a failed pull left %d layers and %d temporary files", len(layers), len(tmp))
	}
	if out, err := osexec.Command("mount", "-o", "remount,size=128m", b.Root).CombinedOutput(); err != nil {
		t.Fatalf("grow tmpfs: %v %s", err, out)
	}
	b.Crictl(t, "pull", "big:1")
}

// TestConcurrentRemoval races stops and removals of the same pods, image
// removals and execs during stops, on a berthd built with the race
// detector.
func TestConcurrentRemoval(t *testing.T) {
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc", Race: true})
	before := b.CountLeaks(t)
	dir := t.TempDir()
	b.Crictl(t, "pull", "busybox:1.36")
	client := b.Client(t)
	var pods, ctrs []string
	for i := range 4 {
		podCfg := podConfig(t, dir, fmt.Sprintf("race-%d", i), 0)
		pod := strings.TrimSpace(b.Crictl(t, "runp", podCfg))
		ctr := strings.TrimSpace(b.Crictl(t, "create", pod, ctrConfig(t, dir, fmt.Sprintf("race-%d", i), "trap 'sleep 1; exit 0' TERM; sleep 600 & wait"), podCfg))
		b.Crictl(t, "start", ctr)
		pods, ctrs = append(pods, pod), append(ctrs, ctr)
	}
	var wg sync.WaitGroup
	for i := range pods {
		for range 3 {
			wg.Add(4)
			go func() {
				defer wg.Done()
				_, _ = client.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: ctrs[i], Cmd: []string{"sleep", "0.5"}, Timeout: 5})
			}()
			go func() {
				defer wg.Done()
				_, _ = client.StopContainer(context.Background(), &runtimeapi.StopContainerRequest{ContainerId: ctrs[i], Timeout: 5})
			}()
			go func() {
				defer wg.Done()
				if _, err := client.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pods[i]}); err != nil {
					t.Errorf("concurrent StopPodSandbox: %v", err)
				}
			}()
			go func() {
				defer wg.Done()
				if _, err := client.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pods[i]}); err != nil {
					t.Errorf("concurrent RemovePodSandbox: %v", err)
				}
			}()
		}
	}
	ic := b.ImageClient(t)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ic.RemoveImage(context.Background(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}); err != nil {
				t.Errorf("concurrent RemoveImage: %v", err)
			}
		}()
	}
	wg.Wait()
	if p := strings.TrimSpace(b.Crictl(t, "pods", "-q")); p != "" {
		t.Errorf("pods left: %q", p)
	}
	waitNoLeaks(t, b, before)
	if err := b.Stop(t); err != nil {
		t.Errorf("race-built berthd exit: %v", err)
	}
	if strings.Contains(b.Log(), "DATA RACE") {
		t.Errorf("the race detector found a data race:\n%s", b.Log())
	}
}
