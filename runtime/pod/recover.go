package pod

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/spec"
	"github.com/berthrt/berth/runtime/store"
)

// recover rebuilds the manager's view after a (re)start: pods and
// containers from the metadata store, their state from their shims (which
// kept running), and rolls back whatever a crash left half done.
func (m *Manager) recover(ctx context.Context) error {
	start := time.Now()
	// Idmapped layers a crash left between their mount and their overlay's.
	if err := m.removeDir(m.idmapStaging()); err != nil {
		return err
	}
	var sbRecs []sandboxRecord
	var ctrRecs []containerRecord
	err := m.db.View(func(tx *store.Tx) error {
		var err error
		if sbRecs, err = store.All[sandboxRecord](tx, bucketSandboxes); err != nil {
			return err
		}
		ctrRecs, err = store.All[containerRecord](tx, bucketContainers)
		return err
	})
	if err != nil {
		return err
	}
	var live []*sandbox
	for _, rec := range sbRecs {
		sb := &sandbox{rec: rec, cfg: &runtimeapi.PodSandboxConfig{}, pauseExited: make(chan struct{})}
		if err := proto.Unmarshal(rec.Config, sb.cfg); err != nil {
			m.log.Error("unreadable pod record; dropping it", "pod", rec.ID, "err", err)
			m.deleteRecord(bucketSandboxes, rec.ID)
			continue
		}
		h, err := m.handlers.Get(rec.Handler)
		if err != nil {
			m.log.Error("pod's handler is gone; its containers cannot be managed", "pod", rec.ID, "handler", rec.Handler, "err", err)
			continue
		}
		sb.handler = h
		if rec.State == stateCreating {
			m.rollbackSandbox(ctx, sb)
			continue
		}
		if client, err := m.shims.Connect(ctx, m.shimSocket(rec.ID)); err == nil {
			sb.shim = client
		} else {
			m.log.Warn("shim of pod is gone", "pod", rec.ID, "err", err)
		}
		m.sandboxes[rec.ID] = sb
		m.names[rec.Name] = rec.ID
		live = append(live, sb)
	}
	for _, rec := range ctrRecs {
		sb := m.sandboxes[rec.SandboxID]
		c := &container{rec: rec, cfg: &runtimeapi.ContainerConfig{}, exited: make(chan struct{})}
		if err := proto.Unmarshal(rec.Config, c.cfg); err != nil || sb == nil || rec.State == stateCreating {
			m.rollbackContainer(ctx, sb, rec)
			continue
		}
		if raw, err := os.ReadFile(filepath.Join(m.ctrBundle(rec.ID), "config.json")); err == nil {
			var s specs.Spec
			if json.Unmarshal(raw, &s) == nil {
				c.process = s.Process
			}
		}
		if c.process == nil {
			c.process = &specs.Process{Cwd: "/"}
		}
		if rec.State == stateExited {
			c.markExited()
		}
		m.containers[rec.ID] = c
		m.names[rec.Name] = rec.ID
	}
	for _, sb := range live {
		if sb.shim == nil {
			m.shimLost(sb)
			continue
		}
		m.resync(sb, sb.shim)
		go m.watchShim(sb) //nolint:gosec // the watcher follows the shim for the pod's life, not this call's
	}
	if len(sbRecs) > 0 {
		m.log.Info("recovered pods", "pods", len(m.sandboxes), "containers", len(m.containers), "duration", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// rollbackSandbox undoes a RunPodSandbox that a crash cut short.
func (m *Manager) rollbackSandbox(ctx context.Context, sb *sandbox) {
	rec := sb.rec
	m.log.Warn("rolling back a pod whose creation was interrupted", "pod", rec.ID)
	if client, err := m.shims.Connect(ctx, m.shimSocket(rec.ID)); err == nil {
		sb.shim = client
		_, _ = client.Delete(ctx, &shimv1.DeleteRequest{Id: rec.ID, Force: true})
		m.stopShim(sb)
	}
	if !rec.Pinned {
		m.forceDeleteFromRuntime(ctx, sb.handler, rec.ID)
	}
	if rec.NetNS != "" {
		_ = m.cni.Teardown(ctx, m.networkPod(sb))
		_ = m.ns.RemoveNetNS(rec.NetNS)
	}
	_ = m.removeDir(filepath.Join(m.ctrRootDir(), rec.ID))
	_ = m.images.Release(rec.ID)
	if pod := (&spec.Pod{ID: rec.ID, Config: sb.cfg}); pod.OwnCgroup(m.host.CgroupDriver) {
		_ = m.cgroups.Remove(pod.CgroupParent(m.host.CgroupDriver))
	}
	_ = m.removePodSlice(ctx, sb)
	_ = m.removeDir(m.podDir(rec.ID))
	_ = os.Remove(m.shimSocket(rec.ID))
	m.deleteRecord(bucketSandboxes, rec.ID)
}

// rollbackContainer removes a container whose creation was interrupted,
// or whose pod is gone.
func (m *Manager) rollbackContainer(ctx context.Context, sb *sandbox, rec containerRecord) {
	m.log.Warn("removing an unfinished or orphaned container", "id", rec.ID, "pod", rec.SandboxID)
	if sb != nil {
		if sb.shim != nil {
			_, _ = sb.shim.Delete(ctx, &shimv1.DeleteRequest{Id: rec.ID, Force: true})
		}
		m.forceDeleteFromRuntime(ctx, sb.handler, rec.ID)
	}
	_ = m.removeDir(m.ctrBundle(rec.ID))
	_ = m.removeDir(filepath.Join(m.ctrRootDir(), rec.ID))
	_ = m.images.Release(rec.ID)
	m.deleteRecord(bucketContainers, rec.ID)
}
