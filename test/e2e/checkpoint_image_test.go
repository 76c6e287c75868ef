package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

// TestCheckpointRestoreImage (runc): the OCI-image form of a checkpoint,
// as CRI-O and checkpointctl build it (one layer holding the archive's
// files, the manifest annotated org.criu.checkpoint.container.name), is
// pulled by name as the kubelet pulls it and restored by CreateContainer
// with the pulled image: the counter goes on from where it was.
func TestCheckpointRestoreImage(t *testing.T) {
	harness.RequireRoot(t)
	if _, err := exec.LookPath("criu"); err != nil {
		t.Skip("criu is not installed (test/scripts/deps.sh installs it)")
	}
	reg := fixtures.Registry(t)
	b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc",
		Extra: "[security]\nrestore_checkpoint_images = true\n"})
	dir := t.TempDir()
	pod, ctr := podWithContainer(t, b, dir, "counter", counterScript)
	waitCount(t, b, ctr, 20)
	rt, images := b.Client(t), b.ImageClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	archive := filepath.Join(dir, "counter.tar")
	before := readCount(t, b, ctr)
	if _, err := rt.CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{ContainerId: ctr, Location: archive, Timeout: 60}); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	after := readCount(t, b, ctr)
	b.Crictl(t, "rmp", "-f", pod)

	layer, err := tarball.LayerFromFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	img, ok := mutate.Annotations(registry.OCI(registry.Image(t, v1.Config{}, layer)),
		map[string]string{"org.criu.checkpoint.container.name": "counter"}).(v1.Image)
	if !ok {
		t.Fatal("mutate.Annotations made no image")
	}
	reg.Push(t, "library/counter-checkpoint:1", img)
	pulled, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "counter-checkpoint:1"}})
	if err != nil {
		t.Fatalf("pull the checkpoint image: %v", err)
	}

	podCfg := podSpec(dir, "from-image")
	run, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	// As the kubelet creates it: the pulled image's ID, the user's name.
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "counter"},
		Image:    &runtimeapi.ImageSpec{Image: pulled.ImageRef, UserSpecifiedImage: "counter-checkpoint:1"},
		LogPath:  "counter.log",
	}
	created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: run.PodSandboxId, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatalf("CreateContainer from the checkpoint image: %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		t.Fatalf("StartContainer (restore): %v", err)
	}
	restored := created.ContainerId
	if st := inspectCtr(t, b, restored).Status.GetState(); st != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("the restored container is %s", st)
	}
	first := readCount(t, b, restored)
	t.Logf("count %d..%d at the checkpoint; the container restored from the image counts on from %d", before, after, first)
	// The checkpoint caught a count between before and after; the layer
	// holds it until the restored process writes the next.
	if first < before || first > after+50 {
		t.Errorf("the restored container counts from %d; the checkpoint was taken between %d and %d", first, before, after)
	}
	waitCount(t, b, restored, first+5)
	if out := b.Crictl(t, "exec", restored, "cat", "/marker"); strings.TrimSpace(out) != "kept" {
		t.Errorf("/marker after restore: %q, want the checkpointed layer's file", out)
	}
}
