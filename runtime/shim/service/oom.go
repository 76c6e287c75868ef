package service

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// OOM kills. A container's memory cgroup counts them (cgroup v2
// memory.events, v1 memory.oom_control), but reading it once the init has
// exited can be too late: with the systemd cgroup driver the container is
// a scope, which systemd stops, removing its cgroup, as soon as it is
// empty. So the count is followed while the container runs (oomWatch);
// and since the kernel delays the notification of a change (at most one
// per 10 ms per file) while systemd hears of the scope's emptiness at
// once, a kill can still be missed. The pod's cgroup, the parent, counts
// its containers' kills too and outlives them: a container killed by
// SIGKILL whose cgroup is gone is OOM-killed when the parent counts a
// kill that none of the pod's containers, still there to be read,
// accounts for (oomLedger).

// oomWatch follows a container's memory cgroup for OOM kills while the
// container lives. cgroup v2 reports every change of memory.events as a
// modification of the file (inotify); the count is read at each.
type oomWatch struct {
	f      *os.File
	killed atomic.Bool
	done   chan struct{}
}

// watchOOM starts watching the memory cgroup dir; nil where there is
// nothing to watch (cgroup v1's memory.oom_control raises no inotify
// event; it stays until the runtime deletes the container, and is read
// at the exit).
func watchOOM(dir string, ledger *oomLedger) *oomWatch {
	events := filepath.Join(dir, "memory.events")
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		_ = unix.Close(fd)
		return nil
	}
	ledger.start(filepath.Dir(dir))
	// Non-blocking: the runtime's poller reads it, and Close ends a read.
	w := &oomWatch{f: os.NewFile(uintptr(fd), "inotify"), done: make(chan struct{})}
	go w.run(dir, ledger)
	return w
}

func (w *oomWatch) run(dir string, ledger *oomLedger) {
	defer close(w.done)
	parent := filepath.Dir(dir)
	buf := make([]byte, 4096)
	for {
		// First before any event: a kill may have come before the watch.
		// The pod's count first: the kernel counts a kill in the
		// container's cgroup before its parents', so a kill the pod's
		// count holds is in the container's, read after it.
		p, pok := oomKills(parent)
		n, ok := oomKills(dir)
		if !ok {
			return // the cgroup is gone
		}
		if pok {
			ledger.settle(parent, p)
		}
		if n > 0 {
			// Watching on: the pod's later kills (a child process of
			// this container's, killed again) are explained by it too,
			// not taken for a sibling's whose cgroup went unread.
			w.killed.Store(true)
		}
		if _, err := w.f.Read(buf); err != nil {
			return // closed by stop
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

// oomLedger holds, per parent cgroup (a pod's), the OOM kills it counted
// that its containers' own counts explain.
type oomLedger struct {
	mu        sync.Mutex
	explained map[string]uint64
}

// start takes parent's count as explained when it is new: kills before
// the shim watched are not its containers'.
func (l *oomLedger) start(parent string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.explained[parent]; !ok {
		if n, ok := oomKills(parent); ok {
			if l.explained == nil {
				l.explained = map[string]uint64{}
			}
			l.explained[parent] = n
		}
	}
}

// settle takes the count n, read from parent before one of its
// containers' own counts was, as explained: the container's count holds
// its kills among them.
func (l *oomLedger) settle(parent string, n uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.explained[parent]; ok && n > prev {
		l.explained[parent] = n
	}
}

// unexplained reports whether parent counted a kill no container
// explained, and takes it as explained now.
func (l *oomLedger) unexplained(parent string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, ok := l.explained[parent]
	n, readable := oomKills(parent)
	if !ok || !readable {
		return false
	}
	l.explained[parent] = n
	return n > prev
}

// exitOOM reports whether container c, which exited with status, was
// OOM-killed: by its cgroup, read at once (it may go soon), or by what its
// watch saw, or, with its cgroup gone after a SIGKILL, by its pod's.
func (s *Service) exitOOM(c *container, status int) bool {
	if c.memCgroup == "" {
		return false
	}
	parent := filepath.Dir(c.memCgroup)
	p, pok := oomKills(parent) // before the container's (see run)
	n, readable := oomKills(c.memCgroup)
	oom := n > 0
	c.mu.Lock()
	w := c.oomWatch
	c.oomWatch = nil
	c.mu.Unlock()
	oom = w.stop() || oom
	if w != nil && !oom && !readable && status == 128+int(unix.SIGKILL) {
		return s.ooms.unexplained(parent)
	}
	// Read in the container's cgroup, or not a kill: what the pod
	// counted before is not to be taken for a later container's.
	if pok {
		s.ooms.settle(parent, p)
	}
	return oom
}

// oomKills reads the OOM kill count of the memory cgroup dir (cgroup
// v2's memory.events, v1's memory.oom_control); ok is false when there
// is none to read.
func oomKills(dir string) (n uint64, ok bool) {
	for _, f := range []string{"memory.events", "memory.oom_control"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, found := strings.CutPrefix(line, "oom_kill "); found {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}
