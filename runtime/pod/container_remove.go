package pod

import (
	"context"
	"fmt"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/store"
)

// RemoveContainer removes a container, stopping it first; a missing one
// is not an error.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	unblock := m.nri.BlockSync()
	defer unblock()
	c, err := m.getContainer(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if c.isRemoved() {
		return nil
	}
	return m.removeContainer(ctx, c)
}

func (m *Manager) removeContainer(ctx context.Context, c *container) error {
	if err := m.stopContainer(ctx, c, 0); err != nil {
		return err
	}
	// Described while its spec is still there.
	nriRemoved := m.nriRemoval(c)
	rec := c.snapshot()
	if sb, err := m.getSandbox(rec.SandboxID); err == nil {
		if client, err := sb.client(); err == nil {
			if _, err := client.Delete(ctx, &shimv1.DeleteRequest{Id: rec.ID, Force: true}); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete container %s: %w", rec.ID, err)
			}
		} else {
			m.forceDeleteFromRuntime(ctx, sb.handler, rec.ID)
		}
	}
	if err := m.removeDir(m.ctrBundle(rec.ID)); err != nil {
		return err
	}
	if err := m.removeDir(filepath.Join(m.ctrRootDir(), rec.ID)); err != nil {
		return err
	}
	if err := m.images.Release(rec.ID); err != nil {
		return err
	}
	if err := m.db.Group(func(tx *store.Tx) error { return tx.Delete(bucketContainers, rec.ID) }); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.containers, rec.ID)
	m.mu.Unlock()
	c.mu.Lock()
	c.removed = true
	c.mu.Unlock()
	m.releaseName(rec.Name, rec.ID)
	m.forgetStats(rec.ID)
	c.markExited()
	nriRemoved(ctx)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, rec.ID, rec.SandboxID)
	logctx.From(ctx, m.log).Info("container removed", "id", rec.ID)
	return nil
}
