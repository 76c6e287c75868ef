// Package reaper is the shim's child reaper. The shim is a child subreaper:
// container processes that their OCI runtime leaves behind become its
// children. One loop waits for every child (wait4(-1)) and hands each exit
// to the command that waits for it or to the shim's exit handler.
package reaper

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Exit is a reaped child.
type Exit struct {
	Pid    int
	Status int // exit code, or 128+signal
	At     time.Time
}

// Reaper reaps every child of the process.
type Reaper struct {
	mu      sync.Mutex
	waiters map[int]chan Exit
	// early holds exits of commands that ended before Wait registered.
	early  map[int]Exit
	onExit func(Exit)
}

// Start makes the process a child subreaper and starts reaping. Exits that
// no Run/Start waits for go to onExit.
func Start(onExit func(Exit)) (*Reaper, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, err
	}
	r := &Reaper{waiters: map[int]chan Exit{}, early: map[int]Exit{}, onExit: onExit}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, unix.SIGCHLD)
	go func() {
		for range sigs {
			r.reap()
		}
	}()
	return r, nil
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		e := Exit{Pid: pid, Status: status(ws), At: time.Now()}
		r.mu.Lock()
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			r.mu.Unlock()
			ch <- e
			continue
		}
		r.mu.Unlock()
		r.onExit(e)
	}
}

func status(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Started is a command started through the reaper.
type Started struct {
	Pid  int
	cmd  *exec.Cmd
	exit chan Exit
}

// Wait blocks until the command exits.
func (s *Started) Wait() Exit {
	e := <-s.exit
	// The reaper reaped it: Cmd.Wait only finds it gone (through its
	// pidfd, never another process), but frees what Start set up, the
	// goroutine a CommandContext keeps until Wait included.
	_ = s.cmd.Wait()
	_ = s.cmd.Process.Release()
	return e
}

// Start starts cmd so that its exit reaches Wait instead of the exit
// handler. cmd's stdio must be *os.File or nil: nothing may need
// exec.Cmd.Wait, which the reaper makes impossible.
func (r *Reaper) Start(cmd *exec.Cmd) (*Started, error) {
	ch := make(chan Exit, 1)
	// Hold the lock across fork so that an instant exit finds its waiter.
	r.mu.Lock()
	if err := cmd.Start(); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	pid := cmd.Process.Pid
	r.waiters[pid] = ch
	r.mu.Unlock()
	return &Started{Pid: pid, cmd: cmd, exit: ch}, nil
}

// Run starts cmd and waits for it.
func (r *Reaper) Run(cmd *exec.Cmd) (Exit, error) {
	s, err := r.Start(cmd)
	if err != nil {
		return Exit{}, err
	}
	return s.Wait(), nil
}
