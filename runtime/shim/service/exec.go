package service

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
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

// execProc is a process started in a container with `exec --detach`.
type execProc struct {
	s      *Service
	id     string
	dir    string
	pid    int
	exitc  chan int
	exited chan struct{}
	code   int
	once   sync.Once
}

// startExec runs process (OCI JSON) in container c. The caller closes its
// copies of the stdio ends; cleanup removes the process's files.
func (s *Service) startExec(c *container, process []byte, stdio execStdio) (*execProc, error) {
	if err := c.requireRunning(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(s.opts.StateDir, "exec-")
	if err != nil {
		return nil, err
	}
	p := &execProc{s: s, id: c.id, dir: dir, exitc: make(chan int, 1), exited: make(chan struct{})}
	procFile := filepath.Join(dir, "process.json")
	if err := os.WriteFile(procFile, process, 0o600); err != nil {
		p.cleanup()
		return nil, err
	}
	ctx, cancel := runtimeCtx()
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
		p.cleanup()
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
		ch := make(chan reaper.Exit, 1)
		s.execs[p.pid] = ch
		go func() { p.exitc <- (<-ch).Status }()
	}
	s.mu.Unlock()
	go func() {
		p.code = <-p.exitc
		close(p.exited)
	}()
	return p, nil
}

// kill ends the process. In gVisor the pid is a runsc process waiting on
// the sandbox: the process to end is the one inside.
func (p *execProc) kill() {
	if p.s.opts.Runtime.Kind() == "runsc" {
		if inner, err := readPid(filepath.Join(p.dir, "inner-pid")); err == nil {
			ctx, cancel := runtimeCtx()
			defer cancel()
			_ = p.s.runRuntime(func(logFile string) *exec.Cmd {
				return p.s.opts.Runtime.KillPid(ctx, p.id, inner, int(unix.SIGKILL), logFile)
			})
		}
	}
	select {
	case <-p.exited:
	default:
		_ = unix.Kill(p.pid, unix.SIGKILL)
	}
}

func (p *execProc) cleanup() { p.once.Do(func() { os.RemoveAll(p.dir) }) }

// drain waits for copies to finish, but not long: children of the process
// may hold its pipes open.
func drain(copies *sync.WaitGroup, readers ...*os.File) {
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		for _, r := range readers {
			r.Close()
		}
		<-done
	}
}

// ExecSync runs a process in a running container and returns its output.
func (s *Service) ExecSync(ctx context.Context, req *shimv1.ExecSyncRequest) (*shimv1.ExecSyncResponse, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer outR.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		outW.Close()
		return nil, err
	}
	defer errR.Close()
	limit := req.MaxOutput
	if limit <= 0 {
		limit = 16 << 20
	}
	stdout, stderr := &cappedBuffer{limit: limit}, &cappedBuffer{limit: limit}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); _, _ = io.Copy(stdout, outR) }()
	go func() { defer copies.Done(); _, _ = io.Copy(stderr, errR) }()

	stdio := execStdio{out: outW, err: errW}
	p, err := s.startDirect(c, req.Process, stdio)
	if errors.Is(err, errUseRuntime) {
		p, err = s.startExec(c, req.Process, stdio)
	}
	outW.Close()
	errW.Close()
	if err != nil {
		return nil, err
	}
	defer p.cleanup()
	resp := &shimv1.ExecSyncResponse{}
	var timeout <-chan time.Time
	if req.TimeoutNs > 0 {
		t := time.NewTimer(time.Duration(req.TimeoutNs))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-p.exited:
	case <-timeout:
		p.kill()
		<-p.exited
		resp.TimedOut = true
	case <-ctx.Done():
		p.kill()
		<-p.exited
		return nil, ctx.Err()
	}
	resp.ExitCode = int32(p.code)
	drain(&copies, outR, errR)
	resp.Stdout, resp.Stderr = stdout.Bytes(), stderr.Bytes()
	return resp, nil
}
