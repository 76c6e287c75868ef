package direct

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitingInit stands in for runc's init in a created container: script
// runs with $1 the exec FIFO and $2 a file to create once released.
func waitingInit(t *testing.T, script string) (dir string, cmd *exec.Cmd, alive func() error) {
	t.Helper()
	dir = t.TempDir()
	if err := unix.Mkfifo(filepath.Join(dir, "exec.fifo"), 0o622); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("sh", "-c", script, "sh", filepath.Join(dir, "exec.fifo"), filepath.Join(dir, "released"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	// Pinned as the shim pins a container's init.
	in, err := PinInit(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)
	return dir, cmd, in.Alive
}

func TestReleaseStartsTheWaitingInit(t *testing.T) {
	// Like runc's init: open the FIFO (blocks until a reader comes),
	// write one byte, then exec the container's process.
	dir, _, alive := waitingInit(t, `printf 0 > "$1" && : > "$2" && exec sleep 30`)
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "released")); err == nil {
		t.Fatal("the init went on before it was released")
	}
	if err := StartCreated(context.Background(), dir, alive); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(dir, "released")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the init was not released")
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "exec.fifo")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the exec fifo is left (runc would still call the container created): %v", err)
	}
}

func TestReleaseOfADeadInit(t *testing.T) {
	dir, _, alive := waitingInit(t, `sleep 0.3`)
	begun := time.Now()
	err := StartCreated(context.Background(), dir, alive)
	if err == nil || errors.Is(err, ErrNoFifo) || errors.Is(err, ErrStarted) || !strings.Contains(err.Error(), "already dead") {
		t.Fatalf("release of an init that died = %v, want a dead-process error", err)
	}
	if d := time.Since(begun); d > 3*time.Second {
		t.Errorf("noticed the dead init after %v", d)
	}
	if _, err := os.Lstat(filepath.Join(dir, "exec.fifo")); err != nil {
		t.Errorf("the exec fifo of a container that did not start is gone: %v", err)
	}
}

func TestReleaseGivesUpWithItsContext(t *testing.T) {
	dir, _, alive := waitingInit(t, `exec sleep 30`)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := StartCreated(ctx, dir, alive); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("release past its deadline = %v", err)
	}
}

func TestReleaseWithoutAFifo(t *testing.T) {
	dir := t.TempDir()
	if err := StartCreated(context.Background(), dir, func() error { return nil }); !errors.Is(err, ErrNoFifo) {
		t.Errorf("no fifo: %v, want ErrNoFifo", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "exec.fifo"), []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := StartCreated(context.Background(), dir, func() error { return nil }); !errors.Is(err, ErrNoFifo) {
		t.Errorf("a regular file: %v, want ErrNoFifo", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "exec.fifo")); err != nil {
		t.Errorf("release removed a file that is not a fifo: %v", err)
	}
}
