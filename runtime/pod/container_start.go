package pod

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
)

// StartContainer starts a created container.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
	unblock := m.nri.BlockSync()
	defer unblock()
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	rec := c.snapshot()
	if rec.State != stateCreated {
		return errdefs.FailedPrecondition("container %s is %s, not created", rec.ID, rec.State)
	}
	client, err := m.podShim(rec.SandboxID)
	if err != nil {
		return err
	}
	if err := m.nriStart(ctx, c); err != nil {
		return err
	}
	st, err := client.Start(ctx, &shimv1.IDRequest{Id: rec.ID})
	if err != nil {
		// The kubelet sees a container that could not start as exited;
		// an exit the shim reported meanwhile (its init was killed) has
		// the last word.
		c.mu.Lock()
		if c.rec.State == stateCreated {
			c.rec.State, c.rec.ExitCode, c.rec.Reason, c.rec.Message = stateExited, 128, "StartError", err.Error()
			c.rec.FinishedAt = nowNano()
		}
		c.mu.Unlock()
		c.markExited()
		_ = m.saveContainer(c)
		return fmt.Errorf("start container %s: %w", rec.ID, err)
	}
	c.mu.Lock()
	if c.rec.State == stateCreated {
		// An exit reported meanwhile has the last word.
		c.rec.State = stateRunning
		c.rec.StartedAt = st.StartedAt
		if st.Pid != 0 {
			c.rec.Pid = int(st.Pid) // a restored container's init is new
		}
	}
	c.mu.Unlock()
	m.nriStarted(ctx, c)
	logctx.From(ctx, m.log).Info("container started", "id", rec.ID)
	defer m.emit(runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, rec.ID, rec.SandboxID)
	return m.saveContainer(c)
}
