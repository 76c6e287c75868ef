// Package service is berth-shim's side of the shim API: one per pod, it
// creates the pod's containers through the handler's OCI runtime, holds
// their stdio and writes their CRI logs, reaps them (as child subreaper),
// records exit code, time and OOM kills, runs ExecSync processes and
// streams exits to berthd.
package service

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
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
	// ooms explains the OOM kills the pod's cgroup counts (oom.go).
	ooms oomLedger
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
	// oomWatch follows memCgroup from create to exit (oom.go).
	oomWatch *oomWatch

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
	// restore, set until Start, makes Start restore the container from
	// these CRIU images instead of starting it (restore.go).
	restore *shimv1.RestoreOptions
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
		_ = f.Close()
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
		return nil, errdefs.Errorf(errdefs.ErrNotFound, "container %q not found in shim", id)
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
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is not running", c.id)
	}
	return nil
}

// Info identifies the shim.
func (s *Service) Info(ctx context.Context, _ *shimv1.Empty) (*shimv1.InfoResponse, error) {
	return &shimv1.InfoResponse{PodId: s.opts.PodID, Pid: uint32(os.Getpid()), Version: s.opts.Version}, nil
}

// Shutdown exits the shim when it owns no container.
func (s *Service) Shutdown(ctx context.Context, _ *shimv1.Empty) (*shimv1.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "shim still owns %d containers", n)
	}
	if s.opts.Exit != nil {
		// After this reply is on its way.
		time.AfterFunc(50*time.Millisecond, s.opts.Exit)
	}
	return &shimv1.Empty{}, nil
}
