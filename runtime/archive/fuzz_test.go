package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzApply feeds arbitrary tar streams to Apply and checks the one promise
// that matters: nothing is created outside the layer directory.
func FuzzApply(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("needs root: extraction sets owners, device nodes and xattrs")
	}
	seeds := [][]entry{
		{{name: "a/b", typ: tar.TypeReg, body: "x"}},
		{{name: "../../escape", typ: tar.TypeReg, body: "x"}},
		{{name: "l", typ: tar.TypeSymlink, link: "/"}, {name: "l/escape", typ: tar.TypeReg}},
		{{name: "l", typ: tar.TypeSymlink, link: "../.."}, {name: "l/escape", typ: tar.TypeReg}},
		{{name: "h", typ: tar.TypeLink, link: "../outside"}},
		{{name: "d/", typ: tar.TypeDir}, {name: "d/.wh..wh..opq", typ: tar.TypeReg}, {name: "d/.wh.x", typ: tar.TypeReg}},
		{{name: "dev", typ: tar.TypeChar, major: 1}, {name: "fifo", typ: tar.TypeFifo}},
	}
	for _, s := range seeds {
		f.Add(mktar(f, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		layer := filepath.Join(base, "a", "b", "layer")
		if err := os.MkdirAll(layer, 0o755); err != nil {
			t.Fatal(err)
		}
		_, _ = Apply(context.Background(), bytes.NewReader(data), layer, Options{})
		_ = filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if p != base && p != filepath.Join(base, "a") && p != filepath.Join(base, "a", "b") && !strings.HasPrefix(p, layer) {
				t.Fatalf("extraction created %s outside the layer", p)
			}
			return nil
		})
	})
}
