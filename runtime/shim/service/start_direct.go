package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/shim/direct"
)

// startCreated starts a created runc container the way `runc start` does,
// without runc (direct.StartCreated). errUseRuntime means nothing happened and
// `runc start` is to be used: another runtime, direct start off, or a
// spec with hooks that `runc start` runs.
func (s *Service) startCreated(ctx context.Context, c *container) error {
	rt := s.opts.Runtime
	if !rt.DirectStart || !rt.Traits().DirectStart || rt.Root == "" || len(c.childIO) > 0 {
		return errUseRuntime
	}
	var spec struct {
		Hooks *specs.Hooks `json:"hooks"`
	}
	data, err := os.ReadFile(filepath.Join(c.bundle, "config.json"))
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil || spec.Hooks != nil {
		return errUseRuntime
	}
	if c.init == nil {
		return errUseRuntime // the init was never pinned: let runc judge
	}
	err = direct.StartCreated(ctx, filepath.Join(rt.Root, c.id), c.init.Alive)
	switch {
	case errors.Is(err, direct.ErrNoFifo):
		s.opts.Log.Warn("no exec fifo where runc keeps it; using runc start", "id", c.id, "err", err)
		return errUseRuntime
	case errors.Is(err, direct.ErrStarted):
		s.opts.Log.Warn("container started; its exec fifo is left", "id", c.id, "err", err)
	case err != nil:
		return fmt.Errorf("runc start: %w", err)
	}
	s.opts.Log.Debug("container started directly", "id", c.id)
	return nil
}
