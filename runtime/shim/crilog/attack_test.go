package crilog

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAttackLogPathSymlink: a symlink planted at the log path (by a
// container with a hostPath mount of the log directory) does not make the
// shim, as root, append to the file it points at.
func TestAttackLogPathSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, []byte("root:x:0:0::/root:/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "0.log")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path)
	if err == nil {
		l.write("stdout", false, []byte("evil::0:0::/:/bin/sh"), time.Now())
		l.Close()
		t.Error("opened the log through a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("the symlink's target was written: %q", b)
	}
}

// TestAttackLogPathFIFO: a FIFO at the log path neither blocks the shim
// nor becomes its log.
func TestAttackLogPathFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "0.log")
	if err := unix.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := Open(path)
		if err == nil {
			l.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a FIFO became the container's log")
		}
	case <-time.After(5 * time.Second):
		// Unblock the stuck open.
		if fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK, 0); err == nil {
			defer unix.Close(fd)
		}
		<-done
		t.Error("opening a FIFO as the log blocks")
	}
}
