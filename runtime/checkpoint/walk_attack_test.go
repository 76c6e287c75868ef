package checkpoint

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAttackWalkFollowsSwappedSymlink: a process still writing the tree
// (a sibling container on the pod's /dev/shm) toggles shm/d between a
// directory and a symlink to a directory outside the tree while WriteTree
// runs; the walk, host root in the shim, must never put what is outside
// the tree (SECRET) into the tar.
func TestAttackWalkFollowsSwappedSymlink(t *testing.T) {
	base := t.TempDir()
	shm, secret, out := filepath.Join(base, "shm"), filepath.Join(base, "secret"), filepath.Join(base, "out")
	write(t, filepath.Join(secret, "SECRET"), "host only")
	write(t, filepath.Join(shm, "keep"), "x")
	if err := os.Mkdir(out, 0o700); err != nil {
		t.Fatal(err)
	}
	// d and e are swapped in one step (RENAME_EXCHANGE), so that both
	// are always there, each a directory or a symlink to secret in turn.
	d, e := filepath.Join(shm, "d"), filepath.Join(shm, "e")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(d, "own"), "mine")
	if err := os.Symlink(secret, e); err != nil {
		t.Fatal(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, e, unix.RENAME_EXCHANGE); err != nil {
		t.Skipf("no RENAME_EXCHANGE here: %v", err)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			_ = unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, e, unix.RENAME_EXCHANGE)
		}
	}()
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	deadline := time.Now().Add(3 * time.Second)
	ok := 0
	for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
		dst := filepath.Join(out, "shm.tar")
		_ = os.Remove(dst)
		// The tree changes under the walk: an error is fine, a leak is not.
		if err := WriteTree(shm, dst); err == nil {
			ok++
		}
		if name, found := tarHolds(t, dst, "SECRET"); found {
			t.Fatalf("iteration %d: the tar holds %s, from outside the tree", i, name)
		}
	}
	t.Logf("%d complete walks", ok)
}

// tarHolds reports the first entry of the tar at p (maybe partial) whose
// name or content holds s.
func tarHolds(t *testing.T, p, s string) (string, bool) {
	t.Helper()
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return "", false // the end, or where a failed walk stopped
		}
		if strings.Contains(hdr.Name, s) {
			return hdr.Name, true
		}
		body, _ := io.ReadAll(tr)
		if strings.Contains(string(body), "host only") {
			return hdr.Name, true
		}
	}
}
