package service

import (
	"context"
	"errors"
	"fmt"
	"os/exec"

	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
)

// Kill signals the container's init, or all its processes.
func (s *Service) Kill(ctx context.Context, req *shimv1.KillRequest) (*shimv1.Empty, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	st, init := c.status, c.init
	c.mu.Unlock()
	if st == shimv1.Status_STATUS_STOPPED || c.restorePending() {
		return &shimv1.Empty{}, nil // nothing runs
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
