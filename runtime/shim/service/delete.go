package service

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/shim/reaper"
)

// Delete removes a container. A created container is killed first (it never
// ran); a running one only with force.
func (s *Service) Delete(_ context.Context, req *shimv1.DeleteRequest) (*shimv1.ContainerState, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	st := c.state()
	if st.Status == shimv1.Status_STATUS_RUNNING && !req.Force {
		return nil, errdefs.Errorf(errdefs.ErrFailedPrecondition, "container %s is running", req.Id)
	}
	ctx, cancel := runtimeCtx()
	defer cancel()
	if c.restorePending() {
		// Never restored: no process, nothing in the runtime.
		s.containerExited(c, reaper.Exit{Status: 137, At: time.Now()})
		st = c.state()
	}
	if st.Status != shimv1.Status_STATUS_STOPPED {
		// A created container never ran; a running one goes with force.
		// A failed kill is not the end: `delete --force` kills too.
		if _, err := s.Kill(ctx, &shimv1.KillRequest{Id: req.Id, Signal: uint32(unix.SIGKILL), All: s.opts.Runtime.Traits().Sandboxed}); err != nil {
			s.opts.Log.Warn("kill before delete", "id", req.Id, "err", err)
		}
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
		}
	}
	if err := s.runRuntime(func(logFile string) *exec.Cmd { return s.opts.Runtime.Delete(ctx, req.Id, true, logFile) }); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, err
	}
	if s.waitsThroughRuntime(c.id) && st.Status == shimv1.Status_STATUS_CREATED {
		// Never started: no `runsc wait` watches it, and it is gone now.
		s.containerExited(c, reaper.Exit{Status: 137, At: time.Now()})
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		return nil, errdefs.Errorf(errdefs.ErrDeadlineExceeded, "container %s did not exit after delete --force", req.Id)
	}
	c.closeChildIO()
	c.io.Wait()
	if c.log != nil {
		_ = c.log.Close()
	}
	if c.stdin != nil {
		_ = c.stdin.Close()
	}
	c.killExecs()
	if c.init != nil {
		c.init.Close()
	}
	s.mu.Lock()
	delete(s.containers, req.Id)
	s.mu.Unlock()
	_ = os.Remove(s.exitFile(req.Id))
	s.opts.Log.Info("container deleted", "id", req.Id)
	return c.state(), nil
}
