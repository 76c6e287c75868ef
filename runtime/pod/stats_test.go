package pod

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDiskUsageCounts(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "f"), make([]byte, 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(deep, "f"), filepath.Join(dir, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(dir, "a", "root")); err != nil {
		t.Fatal(err)
	}
	bytes, inodes := diskUsage(dir)
	// dir, a, b, c, f (and its hard link), the symlink.
	if inodes != 6 || bytes < 10000 {
		t.Errorf("diskUsage = %d bytes, %d inodes; want 6 inodes and the file's blocks", bytes, inodes)
	}
	if b, i := diskUsage(filepath.Join(dir, "a", "root")); b != 0 || i != 0 {
		t.Errorf("a symlink as the layer: %d bytes %d inodes", b, i)
	}
}
