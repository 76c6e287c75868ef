package service

import (
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// oomWatch follows a container's memory cgroup for OOM kills while the
// container lives. Reading memory.events once the init has exited is too
// late where the cgroup goes with its last process: with the systemd
// cgroup driver the container is a scope, which systemd stops, removing
// its cgroup, as soon as it is empty. cgroup v2 reports every change of
// memory.events as a modification of the file (inotify); the count is
// read at each, while the cgroup is still there.
type oomWatch struct {
	f      *os.File
	killed atomic.Bool
	done   chan struct{}
}

// watchOOM starts watching the memory cgroup dir; nil where there is
// nothing to watch (cgroup v1's memory.oom_control raises no inotify
// event; it stays until the runtime deletes the container, and is read
// at the exit).
func watchOOM(dir string) *oomWatch {
	events := filepath.Join(dir, "memory.events")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		_ = unix.Close(fd)
		return nil
	}
	// Non-blocking: the runtime's poller reads it, and Close ends a read.
	w := &oomWatch{f: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{})}
	go w.run(dir)
	return w
}

func (w *oomWatch) run(dir string) {
	defer close(w.done)
	buf := make([]byte, 4096)
	for {
		// First before any event: a kill may have come before the watch.
		if oomKilled(dir) {
			w.killed.Store(true)
			return
		}
		if _, err := w.f.Read(buf); err != nil {
			return // closed by stop
		}
		if _, err := os.Stat(filepath.Join(dir, "memory.events")); err != nil {
			return // the cgroup is gone
		}
	}
}

// stop ends the watch and reports whether it saw an OOM kill.
func (w *oomWatch) stop() bool {
	if w == nil {
		return false
	}
	_ = w.f.Close() // ends a pending read
	<-w.done
	return w.killed.Load()
}
