package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/harness"
)

// The two containers of the pod checkpoint test share a counter through
// the pod's /dev/shm: the writer counts in a shell variable (memory only a
// restore brings back) and publishes each count there; the reader counts
// its reads in memory too and notes them with what it read in its own
// layer. The writer leaves a marker in /dev/shm once, which only the pod
// checkpoint's copy of /dev/shm can bring back, and renames the pod's
// host (the UTS namespace is the pod's, not in any CRIU image).
const (
	shmWriter = `hostname renamed; echo once > /dev/shm/marker; i=0; while true; do i=$((i+1)); echo $i > /dev/shm/count.new; mv /dev/shm/count.new /dev/shm/count; sleep 0.1; done`
	shmReader = `n=0; while true; do n=$((n+1)); echo "$n $(cat /dev/shm/count 2>/dev/null)" > /tmp/seen; sleep 0.1; done`
)

// TestCheckpointRestorePod (runc): CheckpointPod writes the two containers
// and the pod's /dev/shm, as one cut, into an empty directory and leaves
// the pod running; RestorePod makes a new pod of it (with the kubelet's
// restore-time configs, and with none: the checkpointed ones) whose
// containers, once started, go on from where the checkpoint caught them:
// the shared counter continues, both containers run.
func TestCheckpointRestorePod(t *testing.T) {
	b := startBerthd(t, "runc")
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("criu is not installed (test/scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	rt := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b.Crictl(t, "pull", "busybox:1.36")
	podCfg := podSpec(dir, "shm")
	run, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	pod := run.PodSandboxId
	specs, writer, reader := startShmPair(ctx, t, b, rt, pod, podCfg, shmWriter)
	ids := []string{writer, reader}

	out := filepath.Join(dir, "ckpt")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Run("refused", func(t *testing.T) {
		for name, req := range map[string]*runtimeapi.CheckpointPodRequest{
			"options":  {PodSandboxId: pod, OutputPath: out, ContainerIds: ids, Options: map[string]string{"leave-running": "false"}},
			"relative": {PodSandboxId: pod, OutputPath: "ckpt", ContainerIds: ids},
			"no ids":   {PodSandboxId: pod, OutputPath: out},
			"twice":    {PodSandboxId: pod, OutputPath: out, ContainerIds: []string{writer, writer}},
		} {
			if _, err := rt.CheckpointPod(ctx, req); status.Code(err) != codes.InvalidArgument {
				t.Errorf("%s: %v, want InvalidArgument", name, err)
			}
		}
		if left, _ := os.ReadDir(out); len(left) != 0 {
			t.Errorf("a refused checkpoint left %d entries in output_path", len(left))
		}
	})
	before := shmCount(t, b, reader)
	if _, err := rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out, ContainerIds: ids}); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	after := shmCount(t, b, reader)
	t.Logf("count %d before the checkpoint, %d after", before, after)
	for _, c := range ids {
		if st := inspectCtr(t, b, c).Status.GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("container %s is %s after the checkpoint, want it running", c, st)
		}
	}
	waitShm(t, b, reader, after+5) // and counting
	for _, want := range []string{"pod.json", "shm.tar", "containers/writer/checkpoint/inventory.img", "containers/writer/spec.dump",
		"containers/reader/rootfs-diff.tar", "containers/reader/cri-config.json", "containers/reader/container.log"} {
		if _, err := os.Stat(filepath.Join(out, want)); err != nil {
			t.Errorf("the pod checkpoint lacks %s: %v", want, err)
		}
	}
	if _, err := rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out, ContainerIds: ids}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("CheckpointPod into a directory that is not empty: %v, want FailedPrecondition", err)
	}

	// The kubelet's restore: a new pod name and UID (the pod's host name
	// kept), each container's config (labels of its own), the old pod
	// still running.
	restoreCfg := podSpec(dir, "shm-restored")
	restoreCfg.Hostname = podCfg.Hostname
	t.Run("another host name", func(t *testing.T) {
		_, err := rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: podSpec(dir, "renamed")})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "hostname") {
			t.Errorf("RestorePod with another hostname: %v, want FailedPrecondition naming it", err)
		}
	})
	t.Run("another process", func(t *testing.T) {
		other := []*runtimeapi.ContainerConfig{ctrSpec("writer", "sh", "-c", "sleep 1000"), specs[1]}
		_, err := rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoreCfg, ContainerConfigs: other})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "command") {
			t.Errorf("RestorePod with another command: %v, want FailedPrecondition naming it", err)
		}
		if pods, _ := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); len(pods.GetItems()) != 1 {
			t.Errorf("a refused restore left a pod: %d pods", len(pods.GetItems()))
		}
	})
	configs := []*runtimeapi.ContainerConfig{specs[1], specs[0]}
	for _, c := range configs {
		c.Labels = map[string]string{"restored": "yes"}
	}
	pod2, restored := restorePod(ctx, t, rt, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoreCfg, ContainerConfigs: configs})
	checkRestoredPod(t, b, restored, before, after)
	if st := inspectCtr(t, b, restored["reader"]).Status; st.GetLabels()["restored"] != "yes" {
		t.Errorf("the restored container's labels are %v, not the restore-time config's", st.GetLabels())
	}

	// Without configs: refused, as the CRI asks (a checkpoint never
	// supplies a pod's privileges or host paths).
	if _, err := rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("RestorePod without configs: %v, want InvalidArgument", err)
	}
	// The same checkpoint again, once the pods are gone.
	b.Crictl(t, "rmp", "-f", pod, pod2)
	pod3, again := restorePod(ctx, t, rt, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoreCfg, ContainerConfigs: configs})
	checkRestoredPod(t, b, again, before, after)

	// CRIU dumps the pod's SysV objects with each container and would
	// recreate them with each: refused, for more than one container.
	t.Run("SysV IPC", func(t *testing.T) {
		if _, err := exec.LookPath("ipcmk"); err != nil {
			t.Skip("no ipcmk (util-linux)")
		}
		ns := filepath.Join(b.State, "pods", pod3, "ipcns")
		if msg, err := exec.Command("nsenter", "--ipc="+ns, "ipcmk", "-M", "4096").CombinedOutput(); err != nil {
			t.Fatalf("ipcmk in the pod: %v %s", err, msg)
		}
		out2 := filepath.Join(dir, "ckpt-sysv")
		if err := os.Mkdir(out2, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: pod3, OutputPath: out2, ContainerIds: []string{again["writer"], again["reader"]}})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "SysV") {
			t.Errorf("CheckpointPod of a pod holding a SysV segment: %v, want FailedPrecondition naming it", err)
		}
	})

	if left, err := os.ReadDir(filepath.Join(out, "containers")); err != nil || len(left) != 2 {
		t.Errorf("the restores changed the checkpoint: %v %v", left, err)
	}
}

// restorePod restores a pod and starts its containers, returned by name.
func restorePod(ctx context.Context, t *testing.T, rt runtimeapi.RuntimeServiceClient, req *runtimeapi.RestorePodRequest) (string, map[string]string) {
	t.Helper()
	resp, err := rt.RestorePod(ctx, req)
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	out := map[string]string{}
	for _, c := range resp.RestoredContainers {
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId})
		if err != nil || st.Status.GetState() != runtimeapi.ContainerState_CONTAINER_CREATED {
			t.Fatalf("restored container %s: %v %v, want it created", c.Name, st.GetStatus().GetState(), err)
		}
		out[c.Name] = c.ContainerId
	}
	if len(out) != 2 || out["writer"] == "" || out["reader"] == "" {
		t.Fatalf("RestorePod answered %v", resp.RestoredContainers)
	}
	for _, id := range out {
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StartContainer (restore): %v", err)
		}
	}
	return resp.PodSandboxId, out
}

// checkRestoredPod: both restored containers run; the counter in the
// pod's /dev/shm goes on from the cut (between before and after), the
// reader's own count of reads too, and the marker and the host name the
// writer set came back.
func checkRestoredPod(t *testing.T, b *harness.Berthd, ctrs map[string]string, before, after int) {
	t.Helper()
	for name, id := range ctrs {
		if st := inspectCtr(t, b, id).Status.GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("restored %s is %s", name, st)
		}
	}
	first := shmCount(t, b, ctrs["reader"])
	t.Logf("the restored pod counts on from %d", first)
	if first < before || first > after+50 {
		t.Errorf("the restored counter is at %d; the checkpoint was taken between %d and %d", first, before, after)
	}
	waitShm(t, b, ctrs["reader"], first+5)
	if reads := seen(t, b, ctrs["reader"])[0]; reads < before/2 {
		t.Errorf("the restored reader has read %d times: it started afresh", reads)
	}
	if out := b.Crictl(t, "exec", ctrs["reader"], "cat", "/dev/shm/marker"); strings.TrimSpace(out) != "once" {
		t.Errorf("/dev/shm/marker in the restored pod: %q", out)
	}
	// CRIU puts the pod's UTS names back with each container.
	if got := strings.TrimSpace(b.Crictl(t, "exec", ctrs["reader"], "hostname")); got != "renamed" {
		t.Errorf("hostname of the restored pod: %q, want the one the writer set", got)
	}
}

// seen is the reader's note: how often it read, and what.
func seen(t *testing.T, b *harness.Berthd, reader string) [2]int {
	t.Helper()
	out, err := b.TryCrictl(t, "exec", reader, "cat", "/tmp/seen")
	if err != nil {
		return [2]int{}
	}
	var v [2]int
	for i, f := range strings.Fields(out) {
		if i < 2 {
			v[i], _ = strconv.Atoi(f)
		}
	}
	return v
}

// shmCount is the count in /dev/shm, as the reader last saw it.
func shmCount(t *testing.T, b *harness.Berthd, reader string) int {
	t.Helper()
	return seen(t, b, reader)[1]
}

// startShmPair starts the writer (script) and the reader of a counter
// shared through /dev/shm in pod, and waits for the reader to count 20.
func startShmPair(ctx context.Context, t *testing.T, b *harness.Berthd, rt runtimeapi.RuntimeServiceClient, pod string, podCfg *runtimeapi.PodSandboxConfig, script string) (specs []*runtimeapi.ContainerConfig, writer, reader string) {
	t.Helper()
	specs = []*runtimeapi.ContainerConfig{ctrSpec("writer", "sh", "-c", script), ctrSpec("reader", "sh", "-c", shmReader)}
	specs[0].Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}} // for hostname
	var ids []string
	for _, cfg := range specs {
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ContainerId)
	}
	waitShm(t, b, ids[1], 20)
	return specs, ids[0], ids[1]
}

func waitShm(t *testing.T, b *harness.Berthd, reader string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); shmCount(t, b, reader) < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the reader %s did not see the count reach %d (it saw %v)", reader, n, seen(t, b, reader))
		}
	}
}

// TestCheckpointRestorePodSharedPID (runc): a pod whose containers share
// one PID namespace (its sandbox container, the pause process, is their
// init) is restored into the new pod's: the processes keep their pids
// there, and the counter goes on.
func TestCheckpointRestorePodSharedPID(t *testing.T) {
	b := startBerthd(t, "runc")
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("criu is not installed (test/scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	rt := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b.Crictl(t, "pull", "busybox:1.36")
	podCfg := podSpec(dir, "shm")
	podCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
	run, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	var configs []*runtimeapi.ContainerConfig
	for name, script := range map[string]string{"writer": shmWriter, "reader": shmReader} {
		cfg := ctrSpec(name, "sh", "-c", script)
		cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
		if name == "writer" {
			cfg.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		}
		configs = append(configs, cfg)
		c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
		ids[name] = c.ContainerId
	}
	waitShm(t, b, ids["reader"], 20)
	// The oldest: the writer's shell, not a child it forked meanwhile.
	pids := strings.TrimSpace(b.Crictl(t, "exec", ids["reader"], "pgrep", "-o", "-f", "count.new"))
	out := filepath.Join(dir, "ckpt")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	before := shmCount(t, b, ids["reader"])
	if _, err := rt.CheckpointPod(ctx, &runtimeapi.CheckpointPodRequest{PodSandboxId: run.PodSandboxId, OutputPath: out, ContainerIds: []string{ids["writer"], ids["reader"]}}); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	after := shmCount(t, b, ids["reader"])
	b.Crictl(t, "rmp", "-f", run.PodSandboxId)
	_, restored := restorePod(ctx, t, rt, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: podCfg, ContainerConfigs: configs})
	checkRestoredPod(t, b, restored, before, after)
	if got := strings.TrimSpace(b.Crictl(t, "exec", restored["reader"], "pgrep", "-o", "-f", "count.new")); got != pids {
		t.Errorf("the writer's pid in the restored pod's PID namespace is %q, was %q", got, pids)
	}
}
