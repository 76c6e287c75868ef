package pod

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/shim/exitfile"
)

// watchShim follows a pod's shim: its exit events update container states
// as they happen (no polling), and the loss of the shim marks what it
// owned as exited.
func (m *Manager) watchShim(sb *sandbox) {
	for {
		client, err := sb.client()
		if err != nil {
			return // the pod was removed
		}
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := client.Events(ctx, &shimv1.Empty{})
		if err == nil {
			// Subscribed: now catch up on exits this stream did not see.
			m.resync(sb, client)
			for {
				ev, err := stream.Recv()
				if err != nil {
					break
				}
				m.onExit(sb, ev.GetContainer())
			}
		}
		cancel()
		select {
		case <-client.Done():
			if cur, _ := sb.client(); cur == client {
				m.shimLost(sb)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// resync asks the shim for every container's state and records exits.
func (m *Manager) resync(sb *sandbox, client shimClient) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := client.List(ctx, &shimv1.Empty{})
	if err != nil {
		m.log.Warn("list shim containers", "pod", sb.rec.ID, "err", err)
		return
	}
	for _, st := range list.Containers {
		if st.Status == shimv1.Status_STATUS_STOPPED {
			m.onExit(sb, st)
		}
	}
}

func (m *Manager) onExit(sb *sandbox, st *shimv1.ContainerState) {
	if st == nil {
		return
	}
	if st.Id == sb.rec.ID {
		m.pauseExited(sb)
		return
	}
	m.mu.Lock()
	c := m.containers[st.Id]
	m.mu.Unlock()
	if c != nil {
		m.recordExit(c, st)
	}
}

// pauseExited marks the pod not ready: without its sandbox container the
// kubelet must recreate it.
func (m *Manager) pauseExited(sb *sandbox) {
	sb.markPauseExited()
	sb.mu.Lock()
	changed := sb.rec.State == stateReady
	if changed {
		sb.rec.State = stateNotReady
	}
	expected := sb.stopping
	sb.mu.Unlock()
	if changed {
		if !expected {
			m.log.Warn("sandbox container exited; pod not ready", "pod", sb.rec.ID)
		}
		defer m.emit(runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, sb.rec.ID, sb.rec.ID)
		if err := m.saveSandbox(sb); err != nil {
			m.log.Error("record sandbox state", "pod", sb.rec.ID, "err", err)
		}
	}
}

// shimLost handles a shim that died: every container it owned is recorded
// as exited (with the exit the shim wrote down, if any), and their
// processes, orphaned now, are killed through the runtime.
func (m *Manager) shimLost(sb *sandbox) {
	sb.mu.Lock()
	sb.shim = nil
	sb.mu.Unlock()
	rec := sb.snapshot()
	m.log.Error("shim of pod exited; marking its containers exited", "pod", rec.ID)
	dir := m.podDir(rec.ID)
	for _, c := range m.podContainers(rec.ID) {
		cr := c.snapshot()
		if cr.State == stateExited {
			continue
		}
		st, err := exitfile.Read(dir, cr.ID)
		if err != nil {
			st = &shimv1.ContainerState{Id: cr.ID, Status: shimv1.Status_STATUS_STOPPED, ExitCode: 255, FinishedAt: nowNano()}
		}
		st.Message = "berth-shim of the pod exited; the container was stopped"
		m.recordExit(c, st)
		m.forceDeleteFromRuntime(context.Background(), sb.handler, cr.ID)
	}
	if !rec.Pinned {
		m.forceDeleteFromRuntime(context.Background(), sb.handler, rec.ID)
	}
	m.pauseExited(sb)
}

// stopShim asks the pod's shim to exit (it owns nothing by then) and
// closes the connection; a shim that will not go is killed.
func (m *Manager) stopShim(sb *sandbox) {
	sb.mu.Lock()
	c := sb.shim
	sb.shim = nil
	sb.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Info(ctx, &shimv1.Empty{})
	if _, serr := c.Shutdown(ctx, &shimv1.Empty{}); serr != nil && err == nil {
		m.log.Warn("shim refused to exit; killing it", "pod", sb.rec.ID, "err", serr)
		_ = unix.Kill(int(info.Pid), unix.SIGKILL)
	}
	_ = c.Close()
	_ = os.Remove(m.shimSocket(sb.rec.ID))
}

// isNotFound reports a missing object, from berth or from a shim.
func isNotFound(err error) bool {
	return errdefs.IsNotFound(err) || status.Code(err) == codes.NotFound
}
