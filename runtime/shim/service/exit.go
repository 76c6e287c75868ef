package service

import (
	"time"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/shim/exitfile"
	"github.com/berthrt/berth/runtime/shim/reaper"
)

// onExit receives every reaped child no runtime command waits for.
func (s *Service) onExit(e reaper.Exit) {
	s.mu.Lock()
	if c, ok := s.byPid[e.Pid]; ok {
		delete(s.byPid, e.Pid)
		s.mu.Unlock()
		go s.containerExited(c, e)
		return
	}
	if ch, ok := s.execs[e.Pid]; ok {
		delete(s.execs, e.Pid)
		s.mu.Unlock()
		ch <- e
		return
	}
	for pid, old := range s.early {
		if time.Since(old.At) > time.Minute {
			delete(s.early, pid)
		}
	}
	s.early[e.Pid] = e
	s.mu.Unlock()
}

// takeEarly returns an exit of pid that arrived after since.
func (s *Service) takeEarly(pid int, since time.Time) (reaper.Exit, bool) {
	e, ok := s.early[pid]
	if !ok || e.At.Before(since) {
		return reaper.Exit{}, false
	}
	delete(s.early, pid)
	return e, true
}

// ioGrace bounds the wait for a container's output after its init exited:
// a process it left behind may hold the pipes open.
const ioGrace = 2 * time.Second

func (s *Service) containerExited(c *container, e reaper.Exit) {
	// First, while the cgroup is there: systemd removes a scope's (the
	// systemd driver's containers) soon after its last process exits.
	oom := s.exitOOM(c, e.Status)
	done := make(chan struct{})
	go func() { c.io.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ioGrace):
	}
	c.mu.Lock()
	if c.status == shimv1.Status_STATUS_STOPPED {
		// Already recorded (a forced delete raced the runtime's wait).
		c.mu.Unlock()
		return
	}
	c.status = shimv1.Status_STATUS_STOPPED
	c.exitCode = int32(e.Status)
	c.finishedAt = e.At
	c.oom = oom
	if c.init != nil {
		// They would keep the container's mounts alive.
		c.init.ReleaseNamespaces()
	}
	c.mu.Unlock()
	c.killExecs()
	close(c.exited)
	st := c.state()
	if err := exitfile.Write(s.exitFile(c.id), st); err != nil {
		s.opts.Log.Warn("record exit", "id", c.id, "err", err)
	}
	s.opts.Log.Info("container exited", "id", c.id, "pid", e.Pid, "code", e.Status, "oom", oom)
	s.publish(&shimv1.Event{Container: st})
}

func (s *Service) exitFile(id string) string { return exitfile.Path(s.opts.StateDir, id) }

// watchInit hands c's init (pid, made at started) to the reaper's exits:
// one reaped already since then ends c now, a later one will.
func (s *Service) watchInit(c *container, pid int, started time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.takeEarly(pid, started); ok {
		go s.containerExited(c, e)
		return
	}
	s.byPid[pid] = c
}
