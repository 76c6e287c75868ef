package service

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"time"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/shim/reaper"
)

// Start starts a created container.
func (s *Service) Start(_ context.Context, req *shimv1.IDRequest) (*shimv1.ContainerState, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.status != shimv1.Status_STATUS_CREATED {
		st := c.status
		c.mu.Unlock()
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is %s, not created", req.Id, st)
	}
	if c.restore != nil {
		c.mu.Unlock()
		return s.startRestore(c)
	}
	// Set before `start`: the process may exit before `start` returns,
	// and finishedAt must not precede startedAt.
	c.startedAt = time.Now()
	c.mu.Unlock()
	ctx, cancel := runtimeCtx()
	defer cancel()
	err = s.startCreated(ctx, c)
	if errors.Is(err, errUseRuntime) {
		err = s.runRuntime(func(logFile string) *exec.Cmd {
			cmd := s.opts.Runtime.Start(ctx, req.Id, logFile)
			if io := c.childIO; len(io) > 0 {
				in, out, errf := stdioOf(io)
				setStdio(cmd, in, out, errf)
			}
			return cmd
		})
	}
	c.closeChildIO()
	if err != nil {
		c.mu.Lock()
		c.startedAt = time.Time{}
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Lock()
	if c.status == shimv1.Status_STATUS_CREATED {
		c.status = shimv1.Status_STATUS_RUNNING
	}
	c.mu.Unlock()
	if s.waitsThroughRuntime(c.id) {
		go s.runtimeWait(c) //nolint:gosec // waits for the container's exit, which outlives the Start call
	}
	return c.state(), nil
}

// runtimeWait learns a gVisor subcontainer's exit from `runsc wait`.
func (s *Service) runtimeWait(c *container) {
	out, w, err := os.Pipe()
	if err != nil {
		s.containerExited(c, reaper.Exit{Status: 255, At: time.Now()})
		return
	}
	cmd := exec.CommandContext(context.Background(), s.opts.Runtime.Path, append(s.opts.Runtime.GlobalArgs(), "wait", c.id)...)
	cmd.Stdout = w
	started, err := s.reaper.Start(cmd)
	_ = w.Close()
	if err != nil {
		_ = out.Close()
		s.containerExited(c, reaper.Exit{Status: 255, At: time.Now()})
		return
	}
	var res struct {
		ExitStatus int `json:"exitStatus"`
	}
	derr := json.NewDecoder(out).Decode(&res)
	_ = out.Close()
	e := started.Wait()
	status := res.ExitStatus
	if derr != nil {
		s.opts.Log.Warn("runsc wait", "id", c.id, "err", derr, "code", e.Status)
		status = 255
	}
	s.containerExited(c, reaper.Exit{Pid: c.pid, Status: status, At: time.Now()})
}

func stdioOf(io []*os.File) (in, out, errf *os.File) {
	// childIO holds [stdin] stdout stderr, stdin only when asked for.
	if len(io) == 3 {
		return io[0], io[1], io[2]
	}
	if len(io) == 2 {
		return nil, io[0], io[1]
	}
	return nil, nil, nil
}
