package pod

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
)

// TestCheckpointPodGVisor: on runsc, CheckpointPod asks the shim for one
// image of the sandbox (through the sandbox container), marks the
// checkpoint as gVisor's, and refuses to leave a container of the pod
// out; RestorePod restores the sandbox container from a private copy of
// that image and creates every container to join it. The runtime's
// part is the shim's (the e2e TestCheckpointRestorePodGVisor runs it).
func TestCheckpointPodGVisor(t *testing.T) {
	e := newEnv(t)
	e.hs.byName["runsc"].Kind = oci.KindRunsc
	ctx := context.Background()
	cfg := podConfig("g")
	pod, err := e.m.RunPodSandbox(ctx, cfg, "runsc")
	if err != nil {
		t.Fatal(err)
	}
	a, b := e.createCtr(pod, "a"), e.createCtr(pod, "b")
	for _, id := range []string{a, b} {
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	err = e.m.CheckpointPod(ctx, pod, out, []string{a}, nil)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), b) {
		t.Fatalf("CheckpointPod of part of a gVisor pod: %v, want FailedPrecondition naming %s", err, b)
	}
	if err := e.m.CheckpointPod(ctx, pod, out, []string{b, a}, nil); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	sh := e.shimOf(pod)
	if len(sh.ckptPods) != 1 {
		t.Fatalf("the shim was asked %d times", len(sh.ckptPods))
	}
	req := sh.ckptPods[0]
	if len(req.Containers) != 3 || req.Containers[0].Id != pod || filepath.Base(req.Containers[0].ImagePath) != checkpoint.GVisorDir || req.ShmTar == "" {
		t.Errorf("shim request: %v, want the sandbox container %s first, into gvisor/, and /dev/shm", req, pod)
	} else {
		others := []string{req.Containers[1].Id, req.Containers[2].Id}
		if !slices.Contains(others, a) || !slices.Contains(others, b) || req.Containers[1].ImagePath != "" || req.Containers[2].ImagePath != "" {
			t.Errorf("shim request: %v, want %s and %s named without paths", req.Containers[1:], a, b)
		}
	}
	d, err := checkpoint.ReadPodDump(out)
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind() != checkpoint.ImagesGVisor || d.RuntimeKind != "runsc" || len(d.Containers) != 2 {
		t.Errorf("pod.json: %+v", d)
	}
	for _, want := range []string{"containers/a/config.dump", "containers/b/spec.dump", "containers/a/cri-config.json", "gvisor"} {
		if _, err := os.Stat(filepath.Join(out, want)); err != nil {
			t.Errorf("the checkpoint lacks %s: %v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "containers/a", checkpoint.ImagesDir)); err == nil {
		t.Error("a gVisor checkpoint has a CRIU image directory")
	}

	newCfg := func() *runtimeapi.PodSandboxConfig {
		c := podConfig("g")
		c.Metadata.Name, c.Metadata.Uid = "h", "uid-h"
		return c
	}
	both := func() []*runtimeapi.ContainerConfig {
		return []*runtimeapi.ContainerConfig{ctrConfig("a"), ctrConfig("b")}
	}
	pods := len(e.m.ListPodSandbox(ctx, nil))
	restore := func(handler string) (string, []RestoredContainer, error) {
		return e.m.RestorePod(ctx, RestorePodRequest{Path: out, Config: newCfg(), Containers: both(), Handler: handler})
	}
	// The fake shim wrote no image: refused, no pod left.
	if _, _, err := restore("runsc"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "gVisor image") {
		t.Errorf("RestorePod without a gVisor image: %v, want InvalidArgument", err)
	}
	// A gVisor checkpoint on runc: refused, saying what it is.
	if _, _, err := restore("runc"); !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "gvisor images") {
		t.Errorf("RestorePod of a gVisor checkpoint on runc: %v, want FailedPrecondition naming the kind", err)
	}
	if n := len(e.m.ListPodSandbox(ctx, nil)); n != pods {
		t.Fatalf("%d pods after refused restores, want %d", n, pods)
	}

	if err := os.WriteFile(filepath.Join(out, checkpoint.GVisorDir, checkpoint.GVisorStateFile), []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, checkpoint.GVisorDir, "pages.img"), []byte("pages"), 0o600); err != nil {
		t.Fatal(err)
	}
	// (The fake shim wrote no /dev/shm either: an empty tar.)
	if err := os.WriteFile(filepath.Join(out, checkpoint.ShmTar), make([]byte, 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	pod2, ctrs, err := restore("runsc")
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	sh2 := e.shimOf(pod2)
	img := e.m.sandboxImageDir(pod2)
	if ro := sh2.restores[pod2]; ro == nil || ro.ImagePath != img {
		t.Errorf("the sandbox container was created with %v, want a restore from %s", ro, img)
	}
	if data, err := os.ReadFile(filepath.Join(img, "pages.img")); err != nil || string(data) != "pages" {
		t.Errorf("the pod's copy of the image: %q %v", data, err)
	}
	if len(ctrs) != 2 {
		t.Fatalf("restored %v", ctrs)
	}
	for _, c := range ctrs {
		if ro := sh2.restores[c.ID]; ro == nil || ro.ImagePath != img || ro.WorkPath != "" {
			t.Errorf("container %s was created with %v, want it to join the sandbox's restore", c.Name, ro)
		}
	}
}

// TestRestorePodGVisorImageAttacks: the gVisor image of a pod checkpoint
// is input. A symlink (to a host file) or a FIFO in its place is not
// read, a subdirectory is refused, and nothing of them reaches the pod.
func TestRestorePodGVisorImageAttacks(t *testing.T) {
	e := newEnv(t)
	e.hs.byName["runsc"].Kind = oci.KindRunsc
	ctx := context.Background()
	pod, err := e.m.RunPodSandbox(ctx, podConfig("g"), "runsc")
	if err != nil {
		t.Fatal(err)
	}
	a := e.createCtr(pod, "a")
	if err := e.m.StartContainer(ctx, a); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := e.m.CheckpointPod(ctx, pod, out, []string{a}, nil); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(out, checkpoint.GVisorDir, checkpoint.GVisorStateFile)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	pods := len(e.m.ListPodSandbox(ctx, nil))
	gv := filepath.Join(out, checkpoint.GVisorDir)
	for name, plant := range map[string]func() error{
		"symlink to a host file": func() error { return os.Symlink(secret, state) },
		"fifo":                   func() error { return unix.Mkfifo(state, 0o600) },
		"subdirectory": func() error {
			if err := os.WriteFile(state, []byte("state"), 0o600); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(gv, "sub"), 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(gv, "sub", "pages.img"), []byte("x"), 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.RemoveAll(gv); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(gv, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := plant(); err != nil {
				t.Fatal(err)
			}
			c := podConfig("g")
			c.Metadata.Name, c.Metadata.Uid = "h", "uid-h"
			_, _, err := e.m.RestorePod(ctx, RestorePodRequest{Path: out, Config: c, Containers: []*runtimeapi.ContainerConfig{ctrConfig("a")}, Handler: "runsc"})
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("RestorePod: %v, want InvalidArgument", err)
			}
			if n := len(e.m.ListPodSandbox(ctx, nil)); n != pods {
				t.Errorf("%d pods after a refused restore, want %d", n, pods)
			}
		})
	}
}

// TestCheckpointPodGVisorRefusals: gVisor pods whose state the sandbox's
// image would not hold are refused before anything is paused: one on the
// host's network, one on a handler without gVisor's overlay.
func TestCheckpointPodGVisorRefusals(t *testing.T) {
	e := newEnv(t)
	e.hs.byName["runsc"].Kind = oci.KindRunsc
	ctx := context.Background()
	check := func(name, pod string) {
		t.Helper()
		id := e.createCtr(pod, "a")
		if err := e.m.StartContainer(ctx, id); err != nil {
			t.Fatal(err)
		}
		err := e.m.CheckpointPod(ctx, pod, t.TempDir(), []string{id}, nil)
		if !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("%s: %v, want FailedPrecondition", name, err)
		}
		if n := len(e.shimOf(pod).ckptPods); n != 0 {
			t.Errorf("%s: the shim was asked %d times", name, n)
		}
	}
	cfg := podConfig("hostnet")
	cfg.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}
	pod, err := e.m.RunPodSandbox(ctx, cfg, "runsc")
	if err != nil {
		t.Fatal(err)
	}
	check("host network", pod)
	e.hs.byName["runsc"].Args = []string{"--overlay2", "none"}
	if pod, err = e.m.RunPodSandbox(ctx, podConfig("nooverlay"), "runsc"); err != nil {
		t.Fatal(err)
	}
	check("--overlay2 none", pod)
}
