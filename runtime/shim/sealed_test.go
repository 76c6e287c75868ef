package shim

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A container that reaches the shim's binary (through /proc/<helper>/exe or
// a "#!/proc/self/exe" script) must not be able to change it: what shims
// run is a sealed copy, and no descriptor to it can write.
func TestAttackSealedShimBinary(t *testing.T) {
	src, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip("no /bin/true to copy")
	}
	bin := filepath.Join(t.TempDir(), "berth-shim")
	if err := os.WriteFile(bin, src, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := sealedBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := sealedBinary(bin); err != nil || again != f {
		t.Errorf("second sealedBinary of an unchanged file made another copy: %v", err)
	}
	// Writing through the descriptor, through a reopened /proc path (as a
	// process would through /proc/<pid>/exe), or resizing all fail.
	if _, err := f.WriteAt([]byte("x"), 0); err == nil {
		t.Error("write to the sealed copy succeeded")
	}
	if w, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_WRONLY, 0); err == nil {
		if _, err := w.WriteAt([]byte("x"), 0); err == nil {
			t.Error("write through a reopened descriptor succeeded")
		}
		w.Close()
	}
	if err := unix.Ftruncate(int(f.Fd()), 0); err == nil {
		t.Error("truncating the sealed copy succeeded")
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, 0); err == nil {
		// F_SEAL_SEAL: even adding no seal is refused.
		t.Error("seals can still be changed")
	}
	got := make([]byte, len(src))
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, src) {
		t.Errorf("sealed copy differs from the binary: %v", err)
	}
	// It runs, the way Spawn starts a shim.
	cmd := exec.Command(fmt.Sprintf("/proc/self/fd/%d", sealedFD))
	cmd.ExtraFiles = []*os.File{nil, f}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("run the sealed copy: %v %s", err, out)
	}
	// A binary replaced on disk (an upgrade) gets a new copy.
	if err := os.WriteFile(bin, append(src, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	if again, err := sealedBinary(bin); err != nil || again == f {
		t.Errorf("a changed binary kept the old copy: %v", err)
	}
}
