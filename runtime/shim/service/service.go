// Package service is berth-shim's side of the shim API: one per pod, it
// creates the pod's containers through the handler's OCI runtime, holds
// their stdio and writes their CRI logs, reaps them (as child subreaper),
// records exit code, time and OOM kills, runs ExecSync processes and
// streams exits to berthd.
package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/crilog"
	"github.com/berthrt/berth/runtime/shim/direct"
	"github.com/berthrt/berth/runtime/shim/reaper"
)

// Options configures the service.
type Options struct {
	PodID   string
	Runtime *oci.Runtime
	// StateDir is the shim's own directory: exit records live there.
	StateDir string
	Log      *slog.Logger
	Version  string
	// Exit is called when Shutdown found the shim owning nothing.
	Exit func()
}

// Service implements shimv1.ShimServiceService.
type Service struct {
	opts   Options
	reaper *reaper.Reaper

	mu         sync.Mutex
	containers map[string]*container
	byPid      map[int]*container
	execs      map[int]chan reaper.Exit
	// early holds exits of pids not (yet) known: a process that exits
	// before its runtime command returned and told its pid.
	early map[int]reaper.Exit
	subs  map[chan *shimv1.Event]struct{}
}

// New starts the reaper and returns the service.
func New(opts Options) (*Service, error) {
	s := &Service{
		opts:       opts,
		containers: map[string]*container{},
		byPid:      map[int]*container{},
		execs:      map[int]chan reaper.Exit{},
		early:      map[int]reaper.Exit{},
		subs:       map[chan *shimv1.Event]struct{}{},
	}
	r, err := reaper.Start(s.onExit)
	if err != nil {
		return nil, fmt.Errorf("become subreaper: %w", err)
	}
	s.reaper = r
	return s, nil
}

// container is one container the shim owns.
type container struct {
	id, bundle string
	memCgroup  string
	terminal   bool

	mu         sync.Mutex
	pid        int
	status     shimv1.Status
	exitCode   int32
	oom        bool
	message    string
	createdAt  time.Time
	startedAt  time.Time
	finishedAt time.Time
	exited     chan struct{} // closed once the exit is recorded

	log   *crilog.Log
	stdin *os.File // write end, kept for attach; nil without stdin
	// stdinOnce closes stdin when the first attach closes it.
	stdinOnce bool
	// console is the terminal's master, for resizes; nil without one.
	console *os.File
	// attached receive the container's output as frames.
	attached map[chan frameMsg]struct{}
	io       sync.WaitGroup
	// childIO are the container's ends of its stdio, kept until `start`
	// for runtimes that take them then.
	childIO []*os.File
	// direct is what direct execs reuse (guarded by mu).
	direct directState
	// init pins the container's init at create (nil for gVisor, whose
	// pid is the sandbox's): signals go through its pidfd, and every exec
	// checks that the init is still in the namespaces it was created in.
	init *direct.Init
	// execs are the exec'd processes (and direct exec helpers) running
	// in the container, ended when it stops or goes (guarded by mu).
	execs map[*execProc]struct{}
}

// frameMsg is output on its way to an attached client.
type frameMsg struct {
	typ  byte
	data []byte
}

// tee returns a writer that copies a stream's output to attached clients.
func (c *container) tee(typ byte) io.Writer { return teeWriter{c, typ} }

type teeWriter struct {
	c   *container
	typ byte
}

func (t teeWriter) Write(p []byte) (int, error) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for ch := range t.c.attached {
		select {
		case ch <- frameMsg{t.typ, bytes.Clone(p)}:
		default:
			// A client that does not keep up loses output; the container
			// never waits for it.
		}
	}
	return len(p), nil
}

func (c *container) subscribe() chan frameMsg {
	ch := make(chan frameMsg, 256)
	c.mu.Lock()
	if c.attached == nil {
		c.attached = map[chan frameMsg]struct{}{}
	}
	c.attached[ch] = struct{}{}
	c.mu.Unlock()
	return ch
}

func (c *container) unsubscribe(ch chan frameMsg) {
	c.mu.Lock()
	delete(c.attached, ch)
	c.mu.Unlock()
}

func (c *container) closeChildIO() {
	c.mu.Lock()
	io := c.childIO
	c.childIO = nil
	c.mu.Unlock()
	for _, f := range io {
		f.Close()
	}
}

func (c *container) state() *shimv1.ContainerState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &shimv1.ContainerState{
		Id: c.id, Status: c.status, Pid: uint32(c.pid), ExitCode: c.exitCode,
		CreatedAt: nanos(c.createdAt), StartedAt: nanos(c.startedAt), FinishedAt: nanos(c.finishedAt),
		OomKilled: c.oom, Message: c.message,
	}
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (s *Service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found in shim", id)
	}
	return c, nil
}

// running is get for calls that need the container's process up.
func (s *Service) running(id string) (*container, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, err
	}
	return c, c.requireRunning()
}

// requireRunning is FailedPrecondition unless c's process runs.
func (c *container) requireRunning() error {
	if c.state().Status != shimv1.Status_STATUS_RUNNING {
		return status.Errorf(codes.FailedPrecondition, "container %s is not running", c.id)
	}
	return nil
}

// Info identifies the shim.
func (s *Service) Info(ctx context.Context, _ *shimv1.Empty) (*shimv1.InfoResponse, error) {
	return &shimv1.InfoResponse{PodId: s.opts.PodID, Pid: uint32(os.Getpid()), Version: s.opts.Version}, nil
}

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
	done := make(chan struct{})
	go func() { c.io.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(ioGrace):
	}
	oom := c.memCgroup != "" && oomKilled(c.memCgroup)
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
	if err := writeExit(s.exitFile(c.id), st); err != nil {
		s.opts.Log.Warn("record exit", "id", c.id, "err", err)
	}
	s.opts.Log.Info("container exited", "id", c.id, "pid", e.Pid, "code", e.Status, "oom", oom)
	s.publish(&shimv1.Event{Container: st})
}

func (s *Service) exitFile(id string) string { return filepath.Join(s.opts.StateDir, id+".exit") }

// writeExit records an exit durably, so that berthd learns it even if this
// shim is gone by the time berthd asks.
func writeExit(path string, st *shimv1.ContainerState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ReadExit reads an exit recorded by a shim.
func ReadExit(stateDir, id string) (*shimv1.ContainerState, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, id+".exit"))
	if err != nil {
		return nil, err
	}
	var st shimv1.ContainerState
	return &st, json.Unmarshal(data, &st)
}

// oomKilled reports whether the kernel OOM-killed a process of the memory
// cgroup dir (v1 memory.oom_control or v2 memory.events).
func oomKilled(dir string) bool {
	for _, f := range []string{"memory.events", "memory.oom_control"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n > 0
			}
		}
	}
	return false
}

func (s *Service) publish(ev *shimv1.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
			// A subscriber that does not read loses events; it resyncs
			// with List when it reconnects.
		}
	}
}

// Events streams exits until the client goes away.
func (s *Service) Events(ctx context.Context, _ *shimv1.Empty, stream shimv1.ShimService_EventsServer) error {
	ch := make(chan *shimv1.Event, 128)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// State returns a container's state.
func (s *Service) State(ctx context.Context, req *shimv1.IDRequest) (*shimv1.ContainerState, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	return c.state(), nil
}

// List returns every container's state.
func (s *Service) List(ctx context.Context, _ *shimv1.Empty) (*shimv1.ListResponse, error) {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	resp := &shimv1.ListResponse{}
	for _, c := range cs {
		resp.Containers = append(resp.Containers, c.state())
	}
	return resp, nil
}

// Kill signals the container's init, or all its processes.
func (s *Service) Kill(ctx context.Context, req *shimv1.KillRequest) (*shimv1.Empty, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	st, init := c.status, c.init
	c.mu.Unlock()
	if st == shimv1.Status_STATUS_STOPPED {
		return &shimv1.Empty{}, nil
	}
	// runc and crun containers' init is pinned by a pidfd: signalling it
	// directly never reaches a reused pid, and saves a runtime process.
	// gVisor's pid is the sandbox, not the app.
	if !req.All && init != nil {
		if err := init.Signal(unix.Signal(req.Signal)); err != nil && !errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("signal %d to %s: %w", req.Signal, req.Id, err)
		}
		return &shimv1.Empty{}, nil
	}
	rctx, cancel := runtimeCtx()
	defer cancel()
	if err := s.runRuntime(func(logFile string) *exec.Cmd {
		return s.opts.Runtime.Kill(rctx, req.Id, int(req.Signal), req.All, logFile)
	}); err != nil {
		// A container that stopped meanwhile has nothing left to signal.
		if c.state().Status == shimv1.Status_STATUS_STOPPED {
			return &shimv1.Empty{}, nil
		}
		return nil, err
	}
	return &shimv1.Empty{}, nil
}

// Update changes a container's resources.
func (s *Service) Update(ctx context.Context, req *shimv1.UpdateRequest) (*shimv1.Empty, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(c.bundle, "resources-*.json")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(req.Resources); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	rctx, cancel := runtimeCtx()
	defer cancel()
	err = s.runRuntime(func(logFile string) *exec.Cmd {
		return s.opts.Runtime.Update(rctx, req.Id, f.Name(), logFile)
	})
	if err != nil {
		return nil, err
	}
	return &shimv1.Empty{}, nil
}

// ReopenLog reopens the container's log file.
func (s *Service) ReopenLog(ctx context.Context, req *shimv1.IDRequest) (*shimv1.Empty, error) {
	c, err := s.running(req.Id)
	if err != nil {
		return nil, err
	}
	if err := c.log.Reopen(); err != nil {
		return nil, err
	}
	return &shimv1.Empty{}, nil
}

// Shutdown exits the shim when it owns no container.
func (s *Service) Shutdown(ctx context.Context, _ *shimv1.Empty) (*shimv1.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "shim still owns %d containers", n)
	}
	if s.opts.Exit != nil {
		// After this reply is on its way.
		time.AfterFunc(50*time.Millisecond, s.opts.Exit)
	}
	return &shimv1.Empty{}, nil
}
