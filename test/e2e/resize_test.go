package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const mib = 1 << 20

// podLimits are a pod cgroup's memory limit and CFS quota as the kernel
// reports them ("" when the file is missing), on either cgroup version.
func podLimits(t *testing.T, dir string) (mem, quota string) {
	t.Helper()
	read := func(path string) string {
		raw, err := os.ReadFile(path)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(raw))
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		mem = read(filepath.Join("/sys/fs/cgroup", dir, "memory.max"))
		quota, _, _ = strings.Cut(read(filepath.Join("/sys/fs/cgroup", dir, "cpu.max")), " ")
		return mem, quota
	}
	return read(filepath.Join("/sys/fs/cgroup/memory", dir, "memory.limit_in_bytes")),
		read(filepath.Join("/sys/fs/cgroup/cpu", dir, "cpu.cfs_quota_us"))
}

// waitPodLimits waits for dir's limits to be mem bytes and quota µs.
func waitPodLimits(t *testing.T, what, dir string, mem, quota int64) {
	t.Helper()
	wantMem, wantQuota := strconv.FormatInt(mem, 10), strconv.FormatInt(quota, 10)
	var gotMem, gotQuota string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if gotMem, gotQuota = podLimits(t, dir); gotMem == wantMem && gotQuota == wantQuota {
			return
		}
	}
	t.Errorf("%s (%s): memory %q, quota %q; want %s, %s", what, dir, gotMem, gotQuota, wantMem, wantQuota)
}

// resizeInfo is the part of the verbose pod info that reports its
// pod-level resources.
type resizeInfo struct {
	Overhead, Resources *runtimeapi.ContainerResources
}

// TestPodResize: in-place pod resize (UpdatePodSandboxResources) sizes the
// cgroup berth makes for a pod without a cgroup parent, its resources plus
// its overhead, while the pod's container keeps running; RunPodSandbox
// sizes it from the start. On gVisor the sandbox container, which holds
// the whole pod, is sized too.
func TestPodResize(t *testing.T) {
	for _, handler := range handlers {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			dir := t.TempDir()
			client := b.Client(t)
			ctx := context.Background()
			b.Crictl(t, "pull", "busybox:1.36")

			// inner is the cgroup of a gVisor pod's sandbox container,
			// in which the whole pod runs ("" on the other handlers).
			inner := func(pod string) string {
				if handler == "runsc" {
					return "/berth/" + pod + "/" + pod
				}
				return ""
			}
			run := func(name string, overhead, resources *runtimeapi.LinuxContainerResources) (pod, ctr string) {
				t.Helper()
				cfg := podSpec(dir, name)
				cfg.Linux.Overhead, cfg.Linux.Resources = overhead, resources
				resp, err := client.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
				if err != nil {
					t.Fatal(err)
				}
				pod = resp.PodSandboxId
				c, err := client.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: ctrSpec(name, "sh", "-c", "while true; do sleep 0.1; done"), SandboxConfig: cfg})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := client.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
					t.Fatal(err)
				}
				return pod, c.ContainerId
			}
			stillRuns := func(ctr string) {
				t.Helper()
				waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING)
				resp, err := execSync(client, ctr, 10, "echo", "alive")
				if err != nil || resp.ExitCode != 0 || string(resp.Stdout) != "alive\n" {
					t.Errorf("exec in the resized pod: %v, %v", resp, err)
				}
			}

			t.Run("resize", func(t *testing.T) {
				pod, ctr := run("resize", nil, nil)
				resources := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 256 * mib}
				overhead := &runtimeapi.LinuxContainerResources{CpuQuota: 10000, CpuPeriod: 100000, MemoryLimitInBytes: 16 * mib}
				if _, err := client.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: pod, Overhead: overhead, Resources: resources}); err != nil {
					t.Fatal(err)
				}
				waitPodLimits(t, "resized pod", "/berth/"+pod, 272*mib, 60000)
				if in := inner(pod); in != "" {
					waitPodLimits(t, "resized sandbox container", in, 272*mib, 60000)
				}
				stillRuns(ctr)
				// The limits bound the container: its cgroup is inside the pod's.
				if handler != "runsc" {
					pid := inspectCtr(t, b, ctr).Info.Pid
					raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
					if err != nil || !strings.Contains(string(raw), "/berth/"+pod+"/") {
						t.Errorf("container %d is outside the pod cgroup: %s %v", pid, raw, err)
					}
				}
				var info resizeInfo
				b.PodSandboxStatus(t, pod, &info)
				if info.Resources.GetLinux().GetMemoryLimitInBytes() != 256*mib || info.Overhead.GetLinux().GetCpuQuota() != 10000 {
					t.Errorf("verbose status: %+v", info)
				}

				// Smaller: the container's usage is far below.
				smaller := &runtimeapi.LinuxContainerResources{CpuShares: 256, CpuQuota: 20000, CpuPeriod: 100000, MemoryLimitInBytes: 64 * mib}
				if _, err := client.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: pod, Overhead: overhead, Resources: smaller}); err != nil {
					t.Fatal(err)
				}
				waitPodLimits(t, "shrunk pod", "/berth/"+pod, 80*mib, 30000)
				if in := inner(pod); in != "" {
					waitPodLimits(t, "shrunk sandbox container", in, 80*mib, 30000)
				}
				stillRuns(ctr)
				teardown(t, client, pod, ctr)
				// Checked by name: other tests' pods come and go.
				if left := podCgroups(pod); len(left) > 0 {
					t.Errorf("the pod's cgroups outlive it: %v", left)
				}
			})

			t.Run("sized from the start", func(t *testing.T) {
				resources := &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 40000, CpuPeriod: 100000, MemoryLimitInBytes: 128 * mib}
				overhead := &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 * mib}
				pod, ctr := run("sized", overhead, resources)
				waitPodLimits(t, "new pod", "/berth/"+pod, 136*mib, 40000)
				if in := inner(pod); in != "" {
					waitPodLimits(t, "new sandbox container", in, 136*mib, 40000)
				}
				stillRuns(ctr)
				teardown(t, client, pod, ctr)
				if left := podCgroups(pod); len(left) > 0 {
					t.Errorf("the pod's cgroups outlive it: %v", left)
				}
			})
		})
	}
}
