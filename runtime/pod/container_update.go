package pod

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/spec"
)

// UpdateContainerResources changes a container's cgroup limits live,
// through its handler, and records them.
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return errdefs.InvalidArgument("linux resources are required")
	}
	if err := spec.CheckResources(m.host, r); err != nil {
		return err
	}
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	rec := c.snapshot()
	if rec.State != stateCreated && rec.State != stateRunning {
		return errdefs.FailedPrecondition("container %s is %s", rec.ID, rec.State)
	}
	client, err := m.podShim(rec.SandboxID)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(spec.Resources(m.host, r, nil))
	if err != nil {
		return err
	}
	if _, err := client.Update(ctx, &shimv1.UpdateRequest{Id: rec.ID, Resources: raw}); err != nil {
		return fmt.Errorf("update container %s: %w", rec.ID, err)
	}
	saved, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.rec.Resources = saved
	c.mu.Unlock()
	logctx.From(ctx, m.log).Info("container resources updated", "id", rec.ID)
	return m.saveContainer(c)
}

// ReopenContainerLog makes the shim reopen a running container's log file
// (the kubelet renamed it to rotate it).
func (m *Manager) ReopenContainerLog(ctx context.Context, id string) error {
	c, client, err := m.runningContainer(id)
	if err != nil {
		return err
	}
	if c.snapshot().LogPath == "" {
		return errdefs.FailedPrecondition("container %s has no log file", id)
	}
	_, err = client.ReopenLog(ctx, &shimv1.IDRequest{Id: c.rec.ID})
	return err
}
