package direct

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoFifo means the container has no exec FIFO where runc keeps it:
// nothing happened, and `runc start` is to be used.
var ErrNoFifo = errors.New("no runc exec fifo")

// ErrStarted wraps what went wrong after the container started.
var ErrStarted = errors.New("container started")

// StartCreated starts a container that `runc create` made, exactly as `runc
// start` does, without starting runc: runc's init waits inside the
// container to write one byte to the exec FIFO in runc's state directory
// (stateDir, <root>/<id>) and execs the container's process once someone
// reads it; `runc start` reads it and removes the FIFO, which is how runc
// then tells "created" from "running". That saves a Go program start
// (about 8 ms of every StartContainer with runc).
//
// ErrNoFifo (wrapped) means nothing was touched; ErrStarted (wrapped)
// that the container runs but its FIFO could not be removed. Any other
// error means the container did not start: its init is gone (alive, the
// pinned init's check, failed) or ctx ended first.
func StartCreated(ctx context.Context, stateDir string, alive func() error) error {
	path := filepath.Join(stateDir, "exec.fifo")
	// Look before opening (never open a device or such), and again after
	// (in case it was swapped in between).
	if fi, err := os.Lstat(path); err != nil {
		return fmt.Errorf("%w: %w", ErrNoFifo, err)
	} else if fi.Mode()&os.ModeNamedPipe == 0 {
		return fmt.Errorf("%w: %s is not a fifo", ErrNoFifo, path)
	}
	// Read and write, so the open never blocks and a read before init has
	// opened its end waits instead of seeing end-of-file (fifo(7)).
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoFifo, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer func() { _ = f.Close() }()
	if fi, err := f.Stat(); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return fmt.Errorf("%w: %s is not a fifo", ErrNoFifo, path)
	}
	buf := make([]byte, 1)
	for {
		if err := alive(); err != nil {
			return fmt.Errorf("container process is already dead: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// Wake up now and then to notice an init that died waiting.
		if err := f.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			return err
		}
		n, err := f.Read(buf)
		if n == 1 {
			break
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	// Started. runc reports "running" once the FIFO is gone.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w, but %w", ErrStarted, err)
	}
	return nil
}
