package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// gvisorWriter is shmWriter that also leaves a file in its own writable
// layer, which on gVisor lives in the sandbox (its overlay) and only the
// sandbox's image brings back.
const gvisorWriter = `echo kept > /tmp/layer; ` + shmWriter

// TestCheckpointRestorePodGVisor (runsc): the pod checkpoint scenario of
// TestCheckpointRestorePod on a gVisor pod. CheckpointPod saves the whole
// sandbox with runsc checkpoint (and the pod's /dev/shm, in one pause of
// the sandbox) and leaves the pod running; RestorePod makes a new pod
// (new id, new address from CNI) whose sandbox container is restored from
// the image and whose containers join it as they are started: the
// shared counter goes on, the writer's own file, the host name it set
// and the reader's memory are back. A gVisor checkpoint is refused on
// runc and a CRIU one on runsc, saying which is which.
func TestCheckpointRestorePodGVisor(t *testing.T) {
	if _, err := os.Stat("/usr/local/bin/runsc"); err != nil {
		t.Skip("no runsc at /usr/local/bin/runsc (a current gVisor; see ENVIRONMENT)")
	}
	b := startBerthd(t, "runc")
	dir := t.TempDir()
	rt := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	b.Crictl(t, "pull", "busybox:1.36")
	podCfg := podSpec(dir, "gshm")
	run, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: "runsc"})
	if err != nil {
		t.Fatal(err)
	}
	pod := run.PodSandboxId
	specs, writer, reader := startShmPair(ctx, t, b, rt, pod, podCfg, gvisorWriter)
	ids := []string{writer, reader}
	oldIP := b.PodSandboxStatus(t, pod, nil).GetNetwork().GetIp()

	out := filepath.Join(dir, "ckpt")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			req  *runtimeapi.CheckpointPodRequest
			want codes.Code
		}{
			"options":  {&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out, ContainerIds: ids, Options: map[string]string{"leave-running": "false"}}, codes.InvalidArgument},
			"relative": {&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: "ckpt", ContainerIds: ids}, codes.InvalidArgument},
			"no ids":   {&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out}, codes.InvalidArgument},
			"twice":    {&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out, ContainerIds: []string{writer, writer}}, codes.InvalidArgument},
			// gVisor saves the sandbox whole: all of its containers.
			"one of two": {&runtimeapi.CheckpointPodRequest{PodSandboxId: pod, OutputPath: out, ContainerIds: []string{writer}}, codes.FailedPrecondition},
		} {
			if _, err := rt.CheckpointPod(ctx, tc.req); status.Code(err) != tc.want {
				t.Errorf("%s: %v, want %s", name, err, tc.want)
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
	waitShm(t, b, reader, after+5) // the checkpointed pod runs on
	for _, want := range []string{"pod.json", "shm.tar", "gvisor/checkpoint.img", "containers/writer/spec.dump",
		"containers/reader/config.dump", "containers/reader/cri-config.json"} {
		if _, err := os.Stat(filepath.Join(out, want)); err != nil {
			t.Errorf("the pod checkpoint lacks %s: %v", want, err)
		}
	}
	var dump struct{ RuntimeKind, Images string }
	if data, err := os.ReadFile(filepath.Join(out, "pod.json")); err != nil || json.Unmarshal(data, &dump) != nil || dump.RuntimeKind != "runsc" || dump.Images != "gvisor" {
		t.Errorf("pod.json: %+v %v, want runsc and gvisor images", dump, err)
	}

	restoreCfg := podSpec(dir, "gshm-restored")
	restoreCfg.Hostname = podCfg.Hostname
	configs := []*runtimeapi.ContainerConfig{specs[1], specs[0]}
	t.Run("other runtime", func(t *testing.T) {
		_, err := rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoreCfg, ContainerConfigs: configs, RuntimeHandler: "runc"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "gvisor images") {
			t.Errorf("RestorePod of a gVisor checkpoint on runc: %v, want FailedPrecondition naming it", err)
		}
		// A CRIU (runc) pod checkpoint on runsc: the same, the other way.
		criu := filepath.Join(dir, "as-criu")
		if msg, err := exec.Command("cp", "-a", out, criu).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, msg)
		}
		data, err := os.ReadFile(filepath.Join(criu, "pod.json"))
		if err != nil {
			t.Fatal(err)
		}
		edit := strings.NewReplacer(`"runtimeKind": "runsc"`, `"runtimeKind": "runc"`, `"images": "gvisor"`, `"images": "criu"`, `"handler": "runsc"`, `"handler": "runc"`)
		if err := os.WriteFile(filepath.Join(criu, "pod.json"), []byte(edit.Replace(string(data))), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: criu, Config: restoreCfg, ContainerConfigs: configs, RuntimeHandler: "runsc"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "criu images") {
			t.Errorf("RestorePod of a CRIU checkpoint on runsc: %v, want FailedPrecondition naming it", err)
		}
		// A marker that disagrees with the runtime family: not a pod
		// checkpoint any runtime writes.
		if err := os.WriteFile(filepath.Join(criu, "pod.json"), []byte(strings.ReplaceAll(edit.Replace(string(data)), `"images": "criu"`, `"images": "gvisor"`)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: criu, Config: restoreCfg, ContainerConfigs: configs, RuntimeHandler: "runsc"})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("RestorePod of gVisor images marked as runc's: %v, want InvalidArgument", err)
		}
		if pods, _ := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); len(pods.GetItems()) != 1 {
			t.Errorf("refused restores left pods: %d pods", len(pods.GetItems()))
		}
	})
	t.Run("another process", func(t *testing.T) {
		other := []*runtimeapi.ContainerConfig{ctrSpec("writer", "sh", "-c", "sleep 1000"), specs[1]}
		_, err := rt.RestorePod(ctx, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoreCfg, ContainerConfigs: other, RuntimeHandler: "runsc"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "command") {
			t.Errorf("RestorePod with another command: %v, want FailedPrecondition naming it", err)
		}
	})

	pod2, restored := restorePod(ctx, t, rt, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoreCfg, ContainerConfigs: configs, RuntimeHandler: "runsc"})
	checkRestoredPod(t, b, restored, before, after)
	if got := strings.TrimSpace(b.Crictl(t, "exec", restored["writer"], "cat", "/tmp/layer")); got != "kept" {
		t.Errorf("the writer's own file in the restored pod: %q", got)
	}
	st := b.PodSandboxStatus(t, pod2, nil)
	if ip := st.GetNetwork().GetIp(); ip == "" || ip == oldIP || st.GetRuntimeHandler() != "runsc" {
		t.Errorf("restored pod: ip %q (the checkpointed one had %q), handler %q", ip, oldIP, st.GetRuntimeHandler())
	}
	// The restored sandbox's network is the new pod's: its interface
	// has the address CNI gave it.
	if out := b.Crictl(t, "exec", restored["reader"], "ip", "addr"); !strings.Contains(out, st.GetNetwork().GetIp()+"/") {
		t.Errorf("the restored sandbox's addresses do not hold %s:\n%s", st.GetNetwork().GetIp(), out)
	}
	// Its containers stop and go as any: the old pod, untouched, too.
	b.Crictl(t, "rmp", "-f", pod2)
	waitShm(t, b, reader, shmCount(t, b, reader)+3)

	// The same checkpoint again, once the pods are gone: it is never
	// changed by a restore.
	b.Crictl(t, "rmp", "-f", pod)
	pod3, again := restorePod(ctx, t, rt, &runtimeapi.RestorePodRequest{CheckpointPath: out, Config: restoreCfg, ContainerConfigs: configs, RuntimeHandler: "runsc"})
	checkRestoredPod(t, b, again, before, after)
	b.Crictl(t, "rmp", "-f", pod3)
	if _, err := os.Stat(filepath.Join(out, "gvisor", "checkpoint.img")); err != nil {
		t.Errorf("the restores changed the checkpoint: %v", err)
	}
}
