package pod

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/spec"
	"github.com/berthrt/berth/runtime/store"
)

// RemovePodSandbox stops the pod if needed and frees all it holds. A
// missing pod is not an error.
func (m *Manager) RemovePodSandbox(ctx context.Context, id string) error {
	unblock := m.nri.BlockSync()
	defer unblock()
	sb, err := m.lockedSandbox(id)
	if err != nil || sb == nil {
		return err
	}
	defer sb.op.Unlock()
	if err := m.stopSandbox(ctx, sb); err != nil {
		return err
	}
	for _, c := range m.podContainers(sb.rec.ID) {
		c.op.Lock()
		err := m.removeContainer(ctx, c)
		c.op.Unlock()
		if err != nil {
			return err
		}
	}
	rec := sb.snapshot()
	if client, err := sb.client(); err == nil && !rec.Pinned {
		if _, err := client.Delete(ctx, &shimv1.DeleteRequest{Id: rec.ID, Force: true}); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete sandbox container: %w", err)
		}
	} else if !rec.Pinned {
		m.forceDeleteFromRuntime(ctx, sb.handler, rec.ID)
	}
	m.stopShim(sb)
	if err := m.removeDir(filepath.Join(m.ctrRootDir(), rec.ID)); err != nil {
		return err
	}
	if err := m.images.Release(rec.ID); err != nil {
		return err
	}
	if pod := (&spec.Pod{ID: rec.ID, Config: sb.cfg}); pod.OwnCgroup(m.host.CgroupDriver) {
		if err := m.cgroups.Remove(pod.CgroupParent(m.host.CgroupDriver)); err != nil {
			return fmt.Errorf("remove pod cgroup: %w", err)
		}
	}
	if err := m.removePodSlice(ctx, sb); err != nil {
		return fmt.Errorf("remove pod slice: %w", err)
	}
	if err := m.removeDir(m.podDir(rec.ID)); err != nil {
		return err
	}
	if rec.NetNS != "" {
		if err := m.ns.RemoveNetNS(rec.NetNS); err != nil {
			return err
		}
	}
	if err := m.db.Group(func(tx *store.Tx) error { return tx.Delete(bucketSandboxes, rec.ID) }); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.sandboxes, rec.ID)
	m.mu.Unlock()
	sb.mu.Lock()
	sb.removed = true
	sb.mu.Unlock()
	m.releaseName(rec.Name, rec.ID)
	m.forgetStats(rec.ID)
	m.nriRemovePod(ctx, sb)
	m.emit(runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, rec.ID, rec.ID)
	logctx.From(ctx, m.log).Info("pod sandbox removed", "id", rec.ID)
	return nil
}

// forceDeleteFromRuntime removes a container with the runtime binary
// directly, for pods whose shim is gone.
func (m *Manager) forceDeleteFromRuntime(ctx context.Context, h *oci.Handler, id string) {
	if out, err := h.Delete(ctx, id, true, "").CombinedOutput(); err != nil && !errdefs.IsNotFound(oci.Classify(string(out))) {
		m.log.Warn("runtime delete", "id", id, "err", err, "out", strings.TrimSpace(string(out)))
	}
}
