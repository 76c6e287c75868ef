package image

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthrt/berth/test/registry"
)

// BenchmarkPull pulls a three-layer image (24 MiB of incompressible data
// and 3000 small files) from a loopback registry and removes it again.
func BenchmarkPull(b *testing.B) {
	reg := registry.New(b, registry.Options{})
	rnd := rand.New(rand.NewPCG(1, 2))
	var layers []v1.Layer
	for l := range 3 {
		files := []registry.File{{Name: fmt.Sprintf("big%d", l), Body: randomBody(rnd, 8<<20)}}
		for i := range 1000 {
			files = append(files, registry.File{Name: fmt.Sprintf("d%d/f%d", l, i), Body: randomBody(rnd, 512)})
		}
		layers = append(layers, registry.Layer(b, files...))
	}
	reg.Push(b, "bench:1", registry.Image(b, v1.Config{}, layers...))
	e := newEnv(b, Options{})
	ref := reg.Host + "/bench:1"
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.s.Pull(context.Background(), ref, nil); err != nil {
			b.Fatal(err)
		}
		if err := e.s.Remove(ref); err != nil {
			b.Fatal(err)
		}
	}
}

func randomBody(rnd *rand.Rand, n int) string {
	buf := make([]byte, n)
	for i := range buf {
		buf[i] = byte(rnd.Uint32())
	}
	return string(buf)
}
