package pod

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
)

// StopPodSandbox stops every container of the pod and the sandbox, and
// tears the network down once. Stopping a stopped pod does nothing.
func (m *Manager) StopPodSandbox(ctx context.Context, id string) error {
	unblock := m.nri.BlockSync()
	defer unblock()
	sb, err := m.lockedSandbox(id)
	if err != nil || sb == nil {
		return err
	}
	defer sb.op.Unlock()
	return m.stopSandbox(ctx, sb)
}

func (m *Manager) stopSandbox(ctx context.Context, sb *sandbox) error {
	for _, c := range m.podContainers(sb.rec.ID) {
		c.op.Lock()
		err := m.stopContainer(ctx, c, 0)
		c.op.Unlock()
		if err != nil {
			return err
		}
		m.nriStopped(ctx, c)
	}
	sb.mu.Lock()
	sb.stopping = true
	sb.mu.Unlock()
	rec := sb.snapshot()
	if client, err := sb.client(); err == nil && !rec.Pinned {
		select {
		case <-sb.pauseExited:
		default:
			if _, err := client.Kill(ctx, &shimv1.KillRequest{Id: rec.ID, Signal: uint32(unix.SIGKILL), All: sb.handler.Traits().Sandboxed}); err != nil && !isNotFound(err) {
				return fmt.Errorf("stop sandbox container: %w", err)
			}
			select {
			case <-sb.pauseExited:
			case <-time.After(10 * time.Second):
				return errdefs.Unavailable("sandbox container of %s did not exit", rec.ID)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	// Its containers stopped, its network still up.
	m.nriStopPod(ctx, sb)
	if rec.NetNS != "" && !rec.NetworkDown {
		if err := m.cni.Teardown(ctx, m.networkPod(sb)); err != nil {
			return err
		}
		if err := m.ns.RemoveNetNS(rec.NetNS); err != nil {
			return err
		}
		sb.mu.Lock()
		sb.rec.NetworkDown = true
		sb.mu.Unlock()
	}
	if err := m.unmount(filepath.Join(m.podDir(rec.ID), "shm")); err != nil {
		return err
	}
	sb.mu.Lock()
	changed := sb.rec.State != stateNotReady
	sb.rec.State = stateNotReady
	sb.mu.Unlock()
	if changed {
		// The sandbox container outlived its kill: no exit event said so.
		defer m.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, rec.ID, rec.ID)
	}
	return m.saveSandbox(sb)
}

// lockedSandbox returns pod id holding its operation lock (release it
// with sb.op.Unlock), or nil when there is nothing left to act on: a pod
// that is not there, or one removed meanwhile, is reclaimed already.
func (m *Manager) lockedSandbox(id string) (*sandbox, error) {
	sb, err := m.getSandbox(id)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sb.op.Lock()
	if sb.isRemoved() {
		sb.op.Unlock()
		return nil, nil
	}
	return sb, nil
}
