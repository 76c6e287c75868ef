package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/host"
	"github.com/berthrt/berth/test/harness"
)

// cgroupDriver is the driver the suite runs berthd with (the harness
// reads the same variable).
func cgroupDriver() string {
	if d := os.Getenv("BERTH_CGROUP_DRIVER"); d != "" {
		return d
	}
	return "cgroupfs"
}

// initCgroup is the cgroup v2 path of a process, read on the host.
func initCgroup(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	t.Fatalf("process %d has no cgroup v2 path:\n%s", pid, data)
	return ""
}

// cgroupValue reads file in the cgroup of pid and its ancestors and
// returns the first value that is not "max" (the limit in force), and
// where it was found.
func cgroupValue(t *testing.T, pid int, file string) (string, string) {
	t.Helper()
	for dir := initCgroup(t, pid); ; dir = filepath.Dir(dir) {
		data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", dir, file))
		if err == nil && !strings.HasPrefix(string(data), "max") {
			return strings.TrimSpace(string(data)), dir
		}
		if dir == "/" {
			return "max", "/"
		}
	}
}

// TestCgroupV2 runs what depends on cgroup v2 and the cgroup driver
// (BERTH_CGROUP_DRIVER) on each handler: where containers and pods land
// (berth's pod cgroup or slice, or the kubelet's parent), limits and
// their update (unified too), exec joining the container's cgroup,
// container and pod stats, OOM kills, and that removal leaves nothing,
// in systemd either. test/vm runs it with both drivers.
func TestCgroupV2(t *testing.T) {
	harness.RequireRoot(t)
	if host.Cgroups() != host.CgroupV2 {
		t.Skip("needs a cgroup v2 host (make test-vm)")
	}
	driver := cgroupDriver()
	for _, handler := range handlers {
		if handler == "runsc" {
			continue // gVisor's containers are inside its sandbox: no cgroup of their own
		}
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			dir := t.TempDir()
			b.Crictl(t, "pull", "busybox:1.36")
			before := b.CountLeaks(t)
			rt := b.Client(t)
			ctx := context.Background()

			// A pod of its own (no parent), a pod under a parent as the
			// kubelet gives one.
			own := podSpec(dir, "own-"+handler)
			kube := podSpec(dir, "kube-"+handler)
			kubeParent := fmt.Sprintf("/kubepods/besteffort/pod%s%d", handler, os.Getpid())
			if driver == "systemd" {
				kubeParent = fmt.Sprintf("kubepods-besteffort-pod%s%d.slice", handler, os.Getpid())
			}
			kube.Linux.CgroupParent = kubeParent
			t.Cleanup(func() { removeKubeParent(t, driver, kubeParent) })
			ownPod := runPod(t, rt, own)
			kubePod := runPod(t, rt, kube)

			limited := ctrSpec("limited", "sh", "-c", "while true; do sleep 0.1; done")
			limited.Linux.Resources = &runtimeapi.LinuxContainerResources{
				MemoryLimitInBytes: 64 << 20, CpuQuota: 50000, CpuPeriod: 100000, CpuShares: 512,
				Unified: map[string]string{"memory.high": strconv.Itoa(48 << 20)},
			}
			ctr := createStart(t, rt, ownPod, own, limited)
			pid := waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING).Info.Pid
			kubeCtr := createStart(t, rt, kubePod, kube, ctrSpec("k", "sh", "-c", "while true; do sleep 0.1; done"))
			kubePid := waitState(t, b, kubeCtr, runtimeapi.ContainerState_CONTAINER_RUNNING).Info.Pid

			t.Run("placement", func(t *testing.T) {
				wantOwn, wantKube := "/berth/"+ownPod+"/"+ctr, kubeParent+"/"+kubeCtr
				if driver == "systemd" {
					wantOwn = "/berth.slice/berth-" + ownPod + ".slice/berth-" + ctr + ".scope"
					wantKube = "/kubepods.slice/kubepods-besteffort.slice/" + kubeParent + "/berth-" + kubeCtr + ".scope"
				}
				// crun too: berth tells it to make no "container" cgroup
				// below the scope.
				if got := initCgroup(t, pid); got != wantOwn {
					t.Errorf("container of a pod without a parent is in %s, want %s", got, wantOwn)
				}
				if got := initCgroup(t, kubePid); got != wantKube {
					t.Errorf("container of a pod under %s is in %s, want %s", kubeParent, got, wantKube)
				}
				if driver == "systemd" {
					scope := "berth-" + ctr + ".scope"
					if st, slice := harness.UnitProperty(t, scope, "ActiveState"), harness.UnitProperty(t, scope, "Slice"); st != "active" || slice != "berth-"+ownPod+".slice" {
						t.Errorf("unit %s: %s in %q", scope, st, slice)
					}
				}
			})

			t.Run("limits", func(t *testing.T) {
				checkLimits(t, pid, map[string][]string{"memory.max": {strconv.Itoa(64 << 20)}, "memory.high": {strconv.Itoa(48 << 20)}, "cpu.max": {"50000 100000"}, "cpu.weight": cpuWeights(512)})
			})

			t.Run("exec joins the container's cgroup", func(t *testing.T) {
				// The exec'd process is looked for on the host, among the
				// processes of the container's cgroup.
				done := make(chan error, 1)
				go func() {
					_, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sleep", "7"}, Timeout: 30})
					done <- err
				}()
				cg := filepath.Join("/sys/fs/cgroup", initCgroup(t, pid))
				deadline := time.Now().Add(5 * time.Second)
				for !hasProcess(cg, "sleep\x007\x00") {
					if time.Now().After(deadline) {
						t.Fatalf("no exec'd sleep among the processes of %s", cg)
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err := <-done; err != nil {
					t.Error(err)
				}
			})

			t.Run("update", func(t *testing.T) {
				_, err := rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: ctr, Linux: &runtimeapi.LinuxContainerResources{
					MemoryLimitInBytes: 96 << 20, CpuQuota: 20000, CpuPeriod: 100000, CpuShares: 2048,
					Unified: map[string]string{"memory.high": strconv.Itoa(80 << 20)},
				}})
				if err != nil {
					t.Fatal(err)
				}
				want := map[string][]string{"memory.max": {strconv.Itoa(96 << 20)}, "memory.high": {strconv.Itoa(80 << 20)}, "cpu.max": {"20000 100000"}, "cpu.weight": cpuWeights(2048)}
				checkLimits(t, pid, want)
				if st := b.ContainerStatus(t, ctr, nil); st.GetResources().GetLinux().GetMemoryLimitInBytes() != 96<<20 {
					t.Errorf("status after update: %v", st.GetResources())
				}
				if driver == "systemd" {
					// systemd writes its units' settings again at a reload: an
					// update it was not told of would be undone.
					harness.Systemctl(t, "daemon-reload", "")
					t.Run("after a systemd reload", func(t *testing.T) { checkLimits(t, pid, want) })
				}
			})

			t.Run("container stats", func(t *testing.T) {
				resp, err := rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctr})
				if err != nil {
					t.Fatal(err)
				}
				s := resp.GetStats()
				if s.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || s.GetMemory().GetWorkingSetBytes().GetValue() == 0 ||
					s.GetMemory().GetAvailableBytes() == nil || s.GetMemory().GetAvailableBytes().GetValue() > 96<<20 {
					t.Errorf("cpu and memory: %v", s)
				}
				if s.GetCpu().GetPsi() == nil || s.GetMemory().GetPsi() == nil || s.GetIo().GetPsi() == nil {
					t.Errorf("no PSI (the kernel keeps it): %v", s)
				}
				if s.GetSwap() == nil {
					t.Errorf("no swap (the kernel accounts it): %v", s)
				}
			})

			t.Run("pod stats", func(t *testing.T) {
				for _, pod := range []string{ownPod, kubePod} {
					resp, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
					if err != nil {
						t.Fatal(err)
					}
					l := resp.GetStats().GetLinux()
					if l.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0 || l.GetMemory().GetWorkingSetBytes().GetValue() == 0 ||
						l.GetProcess().GetProcessCount().GetValue() == 0 || len(l.GetContainers()) != 1 {
						t.Errorf("pod %s: %v", pod, l)
					}
				}
			})

			t.Run("OOM kill", func(t *testing.T) {
				// One killed at once (critest's: the init is dd, its buffer
				// over the limit), one after it grew for a while.
				for i, script := range []string{"dd if=/dev/zero of=/dev/null bs=20M", "x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived"} {
					hog := ctrSpec(fmt.Sprintf("hog%d", i), "sh", "-c", script)
					hog.Linux.Resources = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 15 << 20, MemorySwapLimitInBytes: 15 << 20}
					id := createStart(t, rt, ownPod, own, hog)
					deadline := time.Now().Add(60 * time.Second)
					for {
						in := inspectCtr(t, b, id)
						if in.Status.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
							if in.Status.GetReason() != "OOMKilled" || in.Status.GetExitCode() != 137 {
								t.Errorf("%q exited: %s, %d", script, in.Status.GetReason(), in.Status.GetExitCode())
							}
							break
						}
						if time.Now().After(deadline) {
							t.Fatalf("%q still %s after 60s", script, in.Status.GetState())
						}
						time.Sleep(200 * time.Millisecond)
					}
				}
			})

			t.Run("removal leaves nothing", func(t *testing.T) {
				for _, pod := range []string{ownPod, kubePod} {
					if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
						t.Fatal(err)
					}
					if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
						t.Fatal(err)
					}
				}
				waitNoLeaks(t, b, before)
				if driver == "systemd" {
					// The kubelet's slice is the kubelet's: still there.
					if st := harness.UnitProperty(t, kubeParent, "ActiveState"); st != "active" {
						t.Errorf("the kubelet's %s is %s after the pod went", kubeParent, st)
					}
				} else if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", kubeParent)); err != nil {
					t.Errorf("the kubelet's %s: %v", kubeParent, err)
				}
			})
		})
	}
}

func runPod(t *testing.T, rt runtimeapi.RuntimeServiceClient, cfg *runtimeapi.PodSandboxConfig) string {
	t.Helper()
	resp, err := rt.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetPodSandboxId()
}

func createStart(t *testing.T, rt runtimeapi.RuntimeServiceClient, pod string, podCfg *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	ctx := context.Background()
	resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.GetContainerId()}); err != nil {
		t.Fatal(err)
	}
	return resp.GetContainerId()
}

// checkLimits compares the limits in force on the container's process
// with the values allowed for each file.
func checkLimits(t *testing.T, pid int, want map[string][]string) {
	t.Helper()
	for file, vs := range want {
		if got, at := cgroupValue(t, pid, file); !slices.Contains(vs, got) {
			t.Errorf("%s = %q (at %s), want one of %q", file, got, at, vs)
		}
	}
}

// cpuWeights are the cgroup v2 weights CPU shares become: runtimes
// convert with the linear formula of old (crun 1.8) or, since runc 1.3,
// with the one of Kubernetes' KEP 5474, which keeps 1024 shares at the
// default weight 100.
func cpuWeights(shares uint64) []string {
	linear := 1 + ((shares-2)*9999)/262142
	l := math.Log2(float64(shares))
	curved := uint64(math.Ceil(math.Pow(10, (l*l+125*l)/612-7.0/34)))
	return []string{strconv.FormatUint(linear, 10), strconv.FormatUint(curved, 10)}
}

// hasProcess reports whether a process with this command line is in the
// cgroup at dir or below.
func hasProcess(dir, cmdline string) bool {
	found := false
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" || found {
			return nil
		}
		data, _ := os.ReadFile(p)
		for _, pid := range strings.Fields(string(data)) {
			if c, _ := os.ReadFile("/proc/" + pid + "/cmdline"); string(c) == cmdline {
				found = true
			}
		}
		return nil
	})
	return found
}

// removeKubeParent removes the pod cgroup a kubelet would have made and
// removed (runc made it here, with the pod's first container).
func removeKubeParent(t *testing.T, driver, parent string) {
	if driver == "systemd" {
		harness.Systemctl(t, "stop", parent)
		return
	}
	for d := parent; d != "/"; d = filepath.Dir(d) {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", d))
	}
}
