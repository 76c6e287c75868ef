package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// BenchmarkApply unpacks a layer of 2000 small files and one of 16 MiB.
func BenchmarkApply(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	entries := []entry{{name: "big", typ: tar.TypeReg, body: strings.Repeat("x", 16<<20)}}
	for i := range 2000 {
		entries = append(entries, entry{name: fmt.Sprintf("d%d/f%d", i%50, i), typ: tar.TypeReg, body: "small file"})
	}
	data := mktar(b, entries...)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dir := b.TempDir()
		if _, err := Apply(context.Background(), bytes.NewReader(data), dir, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
