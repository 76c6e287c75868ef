package pod

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
)

// TestCheckpointPodRefusals: what the CRI says a runtime must refuse is
// refused before anything is frozen or written.
func TestCheckpointPodRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pod, other := e.runPod("p"), e.runPod("q")
	a, b, created := e.createCtr(pod, "a"), e.createCtr(pod, "b"), e.createCtr(pod, "c")
	foreign := e.createCtr(other, "x")
	for _, id := range []string{a, b, foreign} {
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	for name, tc := range map[string]struct {
		pod, out string
		ids      []string
		options  map[string]string
		want     error
	}{
		"relative output":    {pod, "ckpt", []string{a}, nil, errdefs.ErrInvalidArgument},
		"options":            {pod, out, []string{a}, map[string]string{"k": "v"}, errdefs.ErrInvalidArgument},
		"no containers":      {pod, out, nil, nil, errdefs.ErrInvalidArgument},
		"a container twice":  {pod, out, []string{a, a}, nil, errdefs.ErrInvalidArgument},
		"another pod's":      {pod, out, []string{a, foreign}, nil, errdefs.ErrInvalidArgument},
		"unknown pod":        {"nope", out, []string{a}, nil, errdefs.ErrNotFound},
		"unknown container":  {pod, out, []string{"nope"}, nil, errdefs.ErrNotFound},
		"a created one":      {pod, out, []string{a, created}, nil, errdefs.ErrFailedPrecondition},
		"a file as output":   {pod, filepath.Join(out, "f"), []string{a, b}, nil, errdefs.ErrFailedPrecondition},
		"missing output dir": {pod, filepath.Join(out, "none"), []string{a, b}, nil, errdefs.ErrFailedPrecondition},
	} {
		t.Run(name, func(t *testing.T) {
			if name == "a file as output" {
				if err := os.WriteFile(tc.out, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(tc.out)
			}
			needsCRIU(t, tc.want)
			err := e.m.CheckpointPod(ctx, tc.pod, tc.out, tc.ids, tc.options)
			if !errors.Is(err, tc.want) {
				t.Errorf("CheckpointPod: %v, want %v", err, tc.want)
			}
		})
	}
	if n := e.shimOf(pod).called("CheckpointPod"); n != 0 {
		t.Errorf("the shim was asked to checkpoint %d times", n)
	}
	if left, _ := os.ReadDir(out); len(left) != 0 {
		t.Errorf("refusals left %d entries in the output directory", len(left))
	}

	t.Run("crun", func(t *testing.T) {
		id, err := e.m.RunPodSandbox(ctx, podConfig("k"), "crun")
		if err != nil {
			t.Fatal(err)
		}
		c := e.createCtr(id, "a")
		if err := e.m.StartContainer(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := e.m.CheckpointPod(ctx, id, out, []string{c}, nil); !errors.Is(err, errdefs.ErrUnimplemented) {
			t.Errorf("CheckpointPod of a crun pod: %v, want Unimplemented", err)
		}
	})
}

// needsCRIU skips a case that gets past the argument checks where CRIU,
// which berth looks for first, is not installed.
func needsCRIU(t *testing.T, want error) {
	t.Helper()
	if errors.Is(want, errdefs.ErrFailedPrecondition) {
		if _, err := exec.LookPath("criu"); err != nil {
			t.Skip("criu is not installed")
		}
	}
}

// TestCheckpointPodLayout: the checkpoint is published into the output
// directory in berth's layout (the shim's CRIU part faked), and
// RestorePod refuses what does not match it, leaving no pod behind.
func TestCheckpointPodLayout(t *testing.T) {
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("criu is not installed")
	}
	e := newEnv(t)
	ctx := context.Background()
	pod := e.runPod("p")
	a, b := e.createCtr(pod, "a"), e.createCtr(pod, "b")
	for _, id := range []string{a, b} {
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	if err := e.m.CheckpointPod(ctx, pod, out, []string{b, a}, nil); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	req := e.shimOf(pod)
	if n := req.called("CheckpointPod"); n != 1 {
		t.Fatalf("the shim was asked %d times for one cut", n)
	}
	for _, want := range []string{"pod.json", "containers/a/config.dump", "containers/a/spec.dump", "containers/a/cri-config.json", "containers/b/config.dump"} {
		if _, err := os.Stat(filepath.Join(out, want)); err != nil {
			t.Errorf("the checkpoint lacks %s: %v", want, err)
		}
	}
	d, err := checkpoint.ReadPodDump(out)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != pod || d.Handler != "runc" || d.RuntimeKind != "runc" || len(d.Containers) != 2 || !d.Shm {
		t.Errorf("pod.json: %+v", d)
	}
	stage, _ := filepath.Glob(filepath.Join(e.m.ctrRootDir(), pod, "checkpoint-*"))
	if len(stage) != 0 {
		t.Errorf("staging left behind: %v", stage)
	}

	pods := len(e.m.ListPodSandbox(ctx, nil))
	// A new pod of the checkpointed one's host name (CRIU sets it again).
	newCfg := func() *runtimeapi.PodSandboxConfig {
		c := podConfig("p")
		c.Metadata.Name, c.Metadata.Uid = "q", "uid-q"
		return c
	}
	both := func() []*runtimeapi.ContainerConfig {
		return []*runtimeapi.ContainerConfig{ctrConfig("a"), ctrConfig("b")}
	}
	for name, tc := range map[string]struct {
		req  RestorePodRequest
		want error
	}{
		"relative path":        {RestorePodRequest{Path: "ckpt", Config: newCfg(), Containers: both()}, errdefs.ErrInvalidArgument},
		"options":              {RestorePodRequest{Path: out, Config: newCfg(), Containers: both(), Options: map[string]string{"k": "v"}}, errdefs.ErrInvalidArgument},
		"not a checkpoint":     {RestorePodRequest{Path: t.TempDir(), Config: newCfg(), Containers: both()}, errdefs.ErrInvalidArgument},
		"on gVisor":            {RestorePodRequest{Path: out, Config: newCfg(), Containers: both(), Handler: "runsc"}, errdefs.ErrFailedPrecondition},
		"on crun":              {RestorePodRequest{Path: out, Config: newCfg(), Containers: both(), Handler: "crun"}, errdefs.ErrUnimplemented},
		"no pod config":        {RestorePodRequest{Path: out, Containers: both()}, errdefs.ErrInvalidArgument},
		"no container configs": {RestorePodRequest{Path: out, Config: newCfg()}, errdefs.ErrInvalidArgument},
		"a name missing":       {RestorePodRequest{Path: out, Config: newCfg(), Containers: []*runtimeapi.ContainerConfig{ctrConfig("a")}}, errdefs.ErrInvalidArgument},
		"a name too many":      {RestorePodRequest{Path: out, Config: newCfg(), Containers: append(both(), ctrConfig("c"))}, errdefs.ErrInvalidArgument},
		"another command":      {RestorePodRequest{Path: out, Config: newCfg(), Containers: []*runtimeapi.ContainerConfig{ctrConfig("a"), withCommand(ctrConfig("b"), "sleep")}}, errdefs.ErrFailedPrecondition},
		"refused by Check": {RestorePodRequest{Path: out, Config: newCfg(), Containers: both(), Check: func(*runtimeapi.PodSandboxConfig, []*runtimeapi.ContainerConfig) error {
			return errdefs.InvalidArgument("no")
		}}, errdefs.ErrInvalidArgument},
		"the pod's name is": {RestorePodRequest{Path: out, Config: podConfig("p"), Containers: both()}, errdefs.ErrAlreadyExists},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := e.m.RestorePod(ctx, tc.req); !errors.Is(err, tc.want) {
				t.Errorf("RestorePod: %v, want %v", err, tc.want)
			}
		})
	}
	// Past every check, the fake CRIU images are not there: the
	// container's restore fails, and the new pod goes with it.
	if _, _, err := e.m.RestorePod(ctx, RestorePodRequest{Path: out, Config: newCfg(), Containers: both()}); err == nil {
		t.Error("RestorePod without CRIU images succeeded")
	}
	if n := len(e.m.ListPodSandbox(ctx, nil)); n != pods {
		t.Errorf("%d pods after failed restores, want %d", n, pods)
	}
}

func withCommand(c *runtimeapi.ContainerConfig, cmd ...string) *runtimeapi.ContainerConfig {
	c.Command = cmd
	return c
}
