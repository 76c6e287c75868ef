package pod

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
)

// StopContainer stops a running container: its stop signal, up to timeout
// seconds, then SIGKILL (at once for timeout 0).
func (m *Manager) StopContainer(ctx context.Context, id string, timeout int64) error {
	if timeout < 0 {
		return errdefs.InvalidArgument("timeout must not be negative")
	}
	unblock := m.nri.BlockSync()
	defer unblock()
	c, err := m.getContainer(id)
	if errdefs.IsNotFound(err) {
		return nil // idempotent, as the kubelet expects
	}
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if c.isRemoved() {
		return nil
	}
	if err := m.stopContainer(ctx, c, time.Duration(timeout)*time.Second); err != nil {
		return err
	}
	m.nriStopped(ctx, c)
	return nil
}

func (m *Manager) stopContainer(ctx context.Context, c *container, timeout time.Duration) error {
	rec := c.snapshot()
	if rec.State != stateRunning {
		return nil
	}
	sb, err := m.getSandbox(rec.SandboxID)
	if err != nil {
		return err
	}
	client, err := sb.client()
	if err != nil {
		return err
	}
	// gVisor's init is not the pod's PID 1 on the host: SIGKILL goes to
	// every process of the container.
	all := sb.handler.Traits().Sandboxed
	if timeout > 0 {
		if _, err := client.Kill(ctx, &shimv1.KillRequest{Id: rec.ID, Signal: uint32(rec.StopSignal)}); err != nil && !isNotFound(err) {
			return fmt.Errorf("signal container %s: %w", rec.ID, err)
		}
		if m.waitExit(ctx, c, client, timeout) {
			return nil
		}
		logctx.From(ctx, m.log).Info("container ignored its stop signal; killing", "id", rec.ID, "signal", rec.StopSignal, "timeout", timeout)
	}
	if _, err := client.Kill(ctx, &shimv1.KillRequest{Id: rec.ID, Signal: uint32(unix.SIGKILL), All: all}); err != nil && !isNotFound(err) {
		return fmt.Errorf("kill container %s: %w", rec.ID, err)
	}
	if !m.waitExit(ctx, c, client, time.Minute) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errdefs.Unavailable("container %s did not exit after SIGKILL", rec.ID)
	}
	return nil
}

// waitExit waits for the container's exit event, asking the shim now and
// then in case an event was lost.
func (m *Manager) waitExit(ctx context.Context, c *container, client shimv1.ShimServiceClient, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		select {
		case <-c.exited:
			return true
		case <-deadline.C:
			return false
		case <-ctx.Done():
			return false
		case <-poll.C:
			if st, err := client.State(ctx, &shimv1.IDRequest{Id: c.rec.ID}); err == nil && st.Status == shimv1.Status_STATUS_STOPPED {
				m.recordExit(c, st)
			}
		}
	}
}

// recordExit stores a container's exit as the shim reported it.
func (m *Manager) recordExit(c *container, st *shimv1.ContainerState) {
	c.mu.Lock()
	if c.rec.State == stateExited {
		// A start that failed because the init had died already: the
		// init's exit (a kill's 137, say) is the truth, not the 128 the
		// failed start recorded first.
		update := c.rec.Reason == "StartError" && st.FinishedAt != 0 && c.rec.ExitCode != st.ExitCode
		if update {
			c.rec.ExitCode, c.rec.FinishedAt = st.ExitCode, st.FinishedAt
		}
		c.mu.Unlock()
		c.markExited()
		if update {
			if err := m.saveContainer(c); err != nil {
				m.log.Error("record container exit", "id", c.rec.ID, "err", err)
			}
		}
		return
	}
	c.rec.State = stateExited
	c.rec.ExitCode = st.ExitCode
	c.rec.OOMKilled = st.OomKilled
	c.rec.FinishedAt = st.FinishedAt
	if c.rec.StartedAt == 0 {
		c.rec.StartedAt = st.StartedAt
	}
	if c.rec.FinishedAt == 0 {
		c.rec.FinishedAt = nowNano()
	}
	switch {
	case st.OomKilled:
		c.rec.Reason = "OOMKilled"
	case st.ExitCode == 0:
		c.rec.Reason = "Completed"
	default:
		c.rec.Reason = "Error"
	}
	if st.Message != "" {
		c.rec.Message = st.Message
	}
	c.mu.Unlock()
	c.markExited()
	if err := m.saveContainer(c); err != nil {
		m.log.Error("record container exit", "id", c.rec.ID, "err", err)
	}
	m.nriExited(c)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, c.rec.ID, c.rec.SandboxID)
	m.log.Info("container exited", "id", st.Id, "code", st.ExitCode, "oom", st.OomKilled)
}
