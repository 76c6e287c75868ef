package pod

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPrivateDirTightensExisting: MkdirAll leaves an existing directory's
// mode alone; berth's directories are 0700 whatever an earlier version
// made them.
func TestPrivateDirTightensExisting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "containers")
	if err := os.Mkdir(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "new", "one")} {
		if err := PrivateDir(d); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700", d, fi.Mode().Perm(), err)
		}
	}
}
