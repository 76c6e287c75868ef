package service

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/reaper"
)

// execStdio are the ends an exec'd process gets: files (nil is /dev/null)
// or a terminal from the console socket.
type execStdio struct {
	in, out, err *os.File
	console      *consoleSocket
}

// setStdio gives cmd the files that are set; the others stay /dev/null.
// (A nil *os.File in the io.Reader field would be a non-nil interface, and
// the runtime would start with that descriptor closed.)
func setStdio(cmd *exec.Cmd, in, out, errf *os.File) {
	if in != nil {
		cmd.Stdin = in
	}
	if out != nil {
		cmd.Stdout = out
	}
	if errf != nil {
		cmd.Stderr = errf
	}
}

// execProc is a process started in a container, with `exec --detach`
// or directly (by a direct exec helper, which waits for it).
type execProc struct {
	s   *Service
	c   *container
	dir string
	pid int
	// proc signals the process (runtime exec) or its helper (direct
	// exec) through a pidfd: never a reused pid.
	proc   *os.Process
	direct bool
	exitc  chan int
	exited chan struct{}
	code   int
	once   sync.Once
}

// errExecRefused wraps a check that failed before anything ran in the
// container: the exec is refused, not tried another way.
func errExecRefused(err error) error {
	return errdefs.Errorf(errdefs.ErrFailedPrecondition, "exec refused: %v", err)
}

// verifyInit refuses an exec into c when its init left the namespaces it
// was created in: whatever joined them now (the runtime's exec as well as
// the helper) would read the container's fakes (its /proc/sys) as host
// root. gVisor's exec is inside its sandbox.
func (c *container) verifyInit() error {
	if c.init == nil {
		return nil
	}
	if err := c.init.Verify(); err != nil {
		return errExecRefused(err)
	}
	return nil
}

// track registers p with its container, so that the container's end ends
// it; false (and p killed) when the container is no longer running.
func (c *container) track(p *execProc) bool {
	c.mu.Lock()
	running := c.status == shimv1.Status_STATUS_RUNNING
	if running {
		if c.execs == nil {
			c.execs = map[*execProc]struct{}{}
		}
		c.execs[p] = struct{}{}
	}
	c.mu.Unlock()
	if !running {
		p.kill()
	}
	return running
}

// killExecs ends every exec'd process of c and its helpers.
func (c *container) killExecs() {
	c.mu.Lock()
	ps := make([]*execProc, 0, len(c.execs))
	for p := range c.execs {
		ps = append(ps, p)
	}
	c.mu.Unlock()
	for _, p := range ps {
		p.kill()
	}
}

// startExec runs process (OCI JSON) in container c through the runtime.
// The caller closes its copies of the stdio ends; cleanup removes the
// process's files.
func (s *Service) startExec(ctx context.Context, c *container, process []byte, stdio execStdio) (*execProc, error) {
	if err := c.requireRunning(); err != nil {
		return nil, err
	}
	if err := c.verifyInit(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.opts.StateDir, "exec-")
	if err != nil {
		return nil, err
	}
	p := &execProc{s: s, c: c, dir: dir, exitc: make(chan int, 1), exited: make(chan struct{})}
	procFile := filepath.Join(dir, "process.json")
	if err := os.WriteFile(procFile, process, 0o600); err != nil {
		p.cleanup()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, runtimeTimeout)
	defer cancel()
	started := time.Now()
	err = s.runRuntime(func(logFile string) *exec.Cmd {
		o := oci.ExecOpts{ProcessFile: procFile, PidFile: filepath.Join(dir, "pid"), LogFile: logFile, InternalPidFile: filepath.Join(dir, "inner-pid")}
		if stdio.console != nil {
			o.ConsoleSocket = stdio.console.path
		}
		cmd := s.opts.Runtime.Exec(ctx, c.id, o)
		setStdio(cmd, stdio.in, stdio.out, stdio.err)
		return cmd
	})
	if err != nil {
		if ctx.Err() != nil {
			// Cut short: a process it may have started goes too.
			p.abandon(started)
		}
		p.cleanup()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if p.pid, err = readPid(filepath.Join(dir, "pid")); err != nil {
		p.cleanup()
		return nil, err
	}
	s.mu.Lock()
	if e, ok := s.takeEarly(p.pid, started); ok {
		p.exitc <- e.Status
	} else {
		// Not reaped yet (its exit would be in early): the pidfd is its.
		p.proc, _ = os.FindProcess(p.pid)
		ch := make(chan reaper.Exit, 1)
		s.execs[p.pid] = ch
		go func() { p.exitc <- (<-ch).Status }()
	}
	s.mu.Unlock()
	go func() {
		p.code = <-p.exitc
		p.untrack()
		close(p.exited)
		if p.proc != nil {
			_ = p.proc.Release()
		}
	}()
	if !c.track(p) {
		<-p.exited
		p.cleanup()
		return nil, c.requireRunning()
	}
	// The runtime joined the namespaces the init was in at that moment. An
	// init that left its own can never return to them (that takes
	// CAP_SYS_ADMIN where they belong), so if it is in them now it was
	// then; otherwise end the process at once. (The process itself may
	// enter others: that is no sign.)
	if err := c.verifyInit(); err != nil {
		p.kill()
		<-p.exited
		p.cleanup()
		return nil, err
	}
	return p, nil
}

// abandon ends the process a runtime exec cut short may have started: the
// pid file says which, unless it exited already (since started).
func (p *execProc) abandon(started time.Time) {
	pid, err := readPid(filepath.Join(p.dir, "pid"))
	if err != nil {
		return
	}
	p.s.mu.Lock()
	if _, gone := p.s.takeEarly(pid, started); !gone {
		p.proc, _ = os.FindProcess(pid) // not reaped: the pidfd is its
	}
	p.s.mu.Unlock()
	p.pid = pid
	p.kill()
	if p.proc != nil {
		_ = p.proc.Release()
	}
}

// untrack forgets p once it ended.
func (p *execProc) untrack() {
	p.c.mu.Lock()
	delete(p.c.execs, p)
	p.c.mu.Unlock()
}

// kill ends the process. A direct exec's helper ends it (through the
// process's pidfd) or, before it started, itself. In gVisor the pid is a
// runsc process waiting on the sandbox: the process to end is the one
// inside.
func (p *execProc) kill() {
	if p.direct {
		_ = p.proc.Signal(unix.SIGTERM)
		return
	}
	if p.s.opts.Runtime.Traits().Sandboxed {
		if inner, err := readPid(filepath.Join(p.dir, "inner-pid")); err == nil {
			ctx, cancel := runtimeCtx()
			defer cancel()
			_ = p.s.runRuntime(func(logFile string) *exec.Cmd {
				return p.s.opts.Runtime.KillPid(ctx, p.c.id, inner, int(unix.SIGKILL), logFile)
			})
		}
	}
	select {
	case <-p.exited:
	default:
		if p.proc != nil {
			_ = p.proc.Signal(unix.SIGKILL)
		}
	}
}

func (p *execProc) cleanup() {
	p.once.Do(func() {
		if p.dir != "" {
			_ = os.RemoveAll(p.dir)
		}
	})
}

// drain waits for copies to finish, but not long: children of the process
// may hold its pipes open.
func drain(copies *sync.WaitGroup, readers ...*os.File) {
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		for _, r := range readers {
			_ = r.Close()
		}
		<-done
	}
}
