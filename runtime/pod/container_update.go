package pod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/logctx"
	"github.com/berthrt/berth/runtime/spec"
)

// UpdateContainerResources changes a container's cgroup limits and
// records them, as containerd does: a created or running container's
// live, through its handler; an exited one's only in its spec and status
// (nothing runs to limit; the request succeeds, as in containerd, which
// keeps the spec as the record of what the container was given).
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return errdefs.InvalidArgument("linux resources are required")
	}
	if err := spec.CheckResources(m.host, r); err != nil {
		return err
	}
	unblock := m.nri.BlockSync()
	defer unblock()
	// Stats after the update read the new limits.
	defer m.dropRecentSamples()
	c, err := m.getContainer(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if c.isRemoved() {
		return errdefs.NotFound("container %s", id)
	}
	rec := c.snapshot()
	switch rec.State {
	case stateCreated, stateRunning:
		// NRI plugins may change what is applied (and recorded).
		if r, err = m.nriUpdate(ctx, c, r); err != nil {
			return err
		}
		if err := m.updateLive(ctx, c, r); err != nil {
			return err
		}
	case stateExited:
	default:
		return errdefs.FailedPrecondition("container %s is %s", rec.ID, rec.State)
	}
	if err := m.updateSpecResources(rec.ID, r); err != nil {
		return fmt.Errorf("record the resources of container %s: %w", rec.ID, err)
	}
	saved, err := proto.Marshal(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.rec.Resources = saved
	c.mu.Unlock()
	logctx.From(ctx, m.log).Info("container resources updated", "id", rec.ID, "state", rec.State)
	if err := m.saveContainer(c); err != nil {
		return err
	}
	m.nriUpdated(ctx, c)
	return nil
}

// updateLive has the handler apply r to the container's cgroup. A
// container that exits meanwhile has nothing left to limit: as
// containerd, that is no error (its exit is recorded).
func (m *Manager) updateLive(ctx context.Context, c *container, r *runtimeapi.LinuxContainerResources) error {
	id := c.snapshot().ID
	client, err := m.podShim(c.snapshot().SandboxID)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(spec.Resources(m.host, r, nil))
	if err != nil {
		return err
	}
	_, err = client.Update(ctx, &shimv1.UpdateRequest{Id: id, Resources: raw})
	if err == nil {
		sb, err := m.getSandbox(c.snapshot().SandboxID)
		if err != nil {
			return err
		}
		return m.syncScope(ctx, sb, id)
	}
	if st, serr := client.State(ctx, &shimv1.IDRequest{Id: id}); serr == nil && st.Status == shimv1.Status_STATUS_STOPPED {
		m.recordExit(c, st)
		return nil
	}
	return fmt.Errorf("update container %s: %w", id, err)
}

// updateSpecResources writes r into the container's OCI spec, which
// verbose status shows: the spec stays what the container was given.
func (m *Manager) updateSpecResources(id string, r *runtimeapi.LinuxContainerResources) error {
	file := filepath.Join(m.ctrBundle(id), "config.json")
	raw, err := os.ReadFile(file) //nolint:gosec // berth's own bundle
	if errors.Is(err, os.ErrNotExist) {
		return nil // a bundle already cleaned up: status keeps the record
	}
	if err != nil {
		return err
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	s.Linux.Resources = spec.Resources(m.host, r, s.Linux.Resources)
	data, err := json.Marshal(&s)
	if err != nil {
		return err
	}
	return atomicWrite(file, data)
}

// atomicWrite replaces file with data, so that a crash leaves the old
// spec or the new one, never half of one.
func atomicWrite(file string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(file), ".config-*.json")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), file)
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
