package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/crilog"
	"github.com/berthrt/berth/runtime/shim/direct"
	"github.com/berthrt/berth/runtime/shim/frame"
)

// Create creates a container: stdio pipes (or a terminal), `create`, and
// the copiers that write its output to the CRI log.
func (s *Service) Create(_ context.Context, req *shimv1.CreateRequest) (*shimv1.ContainerState, error) {
	if req.Id == "" || req.Bundle == "" {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "id and bundle are required")
	}
	if err := s.checkRestore(req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if _, ok := s.containers[req.Id]; ok {
		s.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrAlreadyExists, "container %q exists", req.Id)
	}
	// Reserve the id while the runtime works.
	c := &container{id: req.Id, bundle: req.Bundle, memCgroup: req.MemoryCgroup, terminal: req.Terminal, stdinOnce: req.StdinOnce, exited: make(chan struct{}), restore: req.Restore}
	s.containers[req.Id] = c
	s.mu.Unlock()
	st, err := s.create(c, req)
	if err != nil {
		s.mu.Lock()
		delete(s.containers, req.Id)
		s.mu.Unlock()
		return nil, err
	}
	if c.memCgroup != "" {
		// The runtime made the cgroup; OOM kills are seen as they happen.
		w := watchOOM(c.memCgroup, &s.ooms)
		c.mu.Lock()
		stopped := c.status == shimv1.Status_STATUS_STOPPED
		if !stopped {
			c.oomWatch = w
		}
		c.mu.Unlock()
		if stopped {
			w.stop() // its exit is recorded already
		}
	}
	return st, nil
}

func (s *Service) create(c *container, req *shimv1.CreateRequest) (_ *shimv1.ContainerState, err error) {
	log, err := crilog.Open(req.LogPath)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	var closers []*os.File // our copies of the child's ends
	var readers []*os.File // what the copiers read
	defer func() {
		if err != nil || (!s.donatesAtStart() && c.restore == nil) {
			for _, f := range closers {
				_ = f.Close()
			}
		} else {
			// gVisor takes a subcontainer's stdio at `start`, a restored
			// container at `restore`.
			c.childIO = closers
		}
		if err != nil {
			for _, f := range readers {
				_ = f.Close()
			}
			if c.stdin != nil {
				_ = c.stdin.Close()
			}
			_ = log.Close()
		}
	}()

	var stdin, stdout, stderr *os.File
	if req.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		stdin, c.stdin = r, w
		closers = append(closers, r)
	}
	var console *consoleSocket
	if req.Terminal {
		if console, err = newConsoleSocket(); err != nil {
			return nil, err
		}
		defer console.Close()
	} else {
		for _, p := range []**os.File{&stdout, &stderr} {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			*p = w
			closers = append(closers, w)
			readers = append(readers, r)
		}
	}

	if c.restore != nil {
		// The process comes from the CRIU images at Start.
		c.log = log
		s.copyOutput(c, log, readers)
		return s.pendingRestore(c), nil
	}

	pidFile := filepath.Join(req.Bundle, "init.pid")
	_ = os.Remove(pidFile)
	ctx, cancel := runtimeCtx()
	defer cancel()
	started := time.Now()
	err = s.runRuntime(func(logFile string) *exec.Cmd {
		o := oci.CreateOpts{Bundle: req.Bundle, PidFile: pidFile, LogFile: logFile}
		if console != nil {
			o.ConsoleSocket = console.path
		}
		cmd := s.opts.Runtime.Create(ctx, req.Id, o)
		// With a terminal the runtime's stderr stays its own.
		setStdio(cmd, stdin, stdout, stderr)
		return cmd
	})
	if err != nil {
		return nil, err
	}
	pid, err := readPid(pidFile)
	if err != nil {
		s.forceDelete(req.Id)
		return nil, err
	}
	if console != nil {
		master, err := console.receive(10 * time.Second)
		if err != nil {
			s.forceDelete(req.Id)
			return nil, fmt.Errorf("terminal: %w", err)
		}
		readers = append(readers, master)
		c.console = master
		if req.Stdin {
			// The terminal is both ends: input goes to the master.
			_ = c.stdin.Close()
			c.stdin = master
		}
	}
	c.log = log
	s.copyOutput(c, log, readers)

	var init *direct.Init
	if !s.donatesAtStart() {
		// Before any of the container's code ran: what is pinned now is
		// what the runtime made.
		if init, err = direct.PinInit(pid); err != nil {
			s.forceDelete(req.Id)
			return nil, fmt.Errorf("pin the container's init: %w", err)
		}
	}
	c.mu.Lock()
	c.pid = pid
	c.init = init
	c.status = shimv1.Status_STATUS_CREATED
	c.createdAt = time.Now()
	c.mu.Unlock()
	if s.waitsThroughRuntime(c.id) {
		// The pid is the gVisor sandbox's: `runsc wait` tells this one's exit.
		s.opts.Log.Info("container created", "id", c.id, "sandbox pid", pid)
		return c.state(), nil
	}
	s.watchInit(c, pid, started)
	s.opts.Log.Info("container created", "id", c.id, "pid", pid)
	return c.state(), nil
}

// copyOutput starts the copiers of the container's output (stdout and
// stderr pipes, or the terminal) to its CRI log and attached clients.
func (s *Service) copyOutput(c *container, log *crilog.Log, readers []*os.File) {
	streams := []struct {
		name string
		typ  byte
	}{{"stdout", frame.Stdout}, {"stderr", frame.Stderr}}
	for i, r := range readers {
		c.io.Add(1)
		go func(name string, typ byte, r *os.File) {
			defer c.io.Done()
			defer func() { _ = r.Close() }()
			// The log gets every line; attached clients get what comes
			// while they are there.
			if err := log.Copy(name, io.TeeReader(r, c.tee(typ))); err != nil && !errors.Is(err, unix.EIO) {
				s.opts.Log.Debug("copy output", "id", c.id, "stream", name, "err", err)
			}
		}(streams[i].name, streams[i].typ, r)
	}
}

// forceDelete removes a half-created container from the runtime.
func (s *Service) forceDelete(id string) {
	ctx, cancel := runtimeCtx()
	defer cancel()
	_ = s.runRuntime(func(logFile string) *exec.Cmd { return s.opts.Runtime.Delete(ctx, id, true, logFile) })
}
