package service

import (
	"context"
	"os"
	"os/exec"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
)

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
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err := f.Write(req.Resources); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err // the runtime would read a short file
	}
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
