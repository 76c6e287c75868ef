package image

import (
	"context"
	"maps"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/berthrt/berth/test/registry"
)

// TestPullKeepsCheckpointAnnotations: the manifest annotations that mark
// a checkpoint image (checkpointctl's and CRI-O's) are recorded at pull (and survives a restart); other
// annotations are not.
func TestPullKeepsCheckpointAnnotations(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := registry.OCI(registry.Image(t, v1.Config{}, registry.Layer(t, registry.File{Name: "config.dump", Body: "{}"})))
	img = mutate.Annotations(img, map[string]string{
		"org.criu.checkpoint.container.name":              "counter",
		"io.kubernetes.cri-o.annotations.checkpoint.name": "counter",
		"org.opencontainers.image.title":                  "not kept",
	}).(v1.Image)
	reg.Push(t, "ckpt:1", img)
	e := newEnv(t, Options{})
	got, err := e.s.Pull(context.Background(), reg.Host+"/ckpt:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"org.criu.checkpoint.container.name": "counter", "io.kubernetes.cri-o.annotations.checkpoint.name": "counter"}
	if !maps.Equal(got.Annotations, want) {
		t.Errorf("annotations at pull: %v, want %v", got.Annotations, want)
	}
	e.reopen(t)
	if again, err := e.s.Get(got.ID); err != nil || !maps.Equal(again.Annotations, want) {
		t.Errorf("annotations after a restart: %v, %v", again, err)
	}
}
