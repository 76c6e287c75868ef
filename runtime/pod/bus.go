package pod

import (
	"context"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// bus fans container and pod events out to GetContainerEvents streams.
type bus struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	ch   chan *runtimeapi.ContainerEventResponse
	once sync.Once
}

func (s *subscriber) close() { s.once.Do(func() { close(s.ch) }) }

// eventBuffer is how far a subscriber may fall behind before events to it
// are dropped (the kubelet relists now and then, so it recovers).
const eventBuffer = 1024

// Subscribe returns a channel of events, closed when ctx ends or berthd
// shuts down.
func (m *Manager) Subscribe(ctx context.Context) <-chan *runtimeapi.ContainerEventResponse {
	s := &subscriber{ch: make(chan *runtimeapi.ContainerEventResponse, eventBuffer)}
	m.events.mu.Lock()
	if m.events.closed {
		m.events.mu.Unlock()
		s.close()
		return s.ch
	}
	if m.events.subs == nil {
		m.events.subs = map[*subscriber]struct{}{}
	}
	m.events.subs[s] = struct{}{}
	m.events.mu.Unlock()
	context.AfterFunc(ctx, func() {
		m.events.mu.Lock()
		delete(m.events.subs, s)
		m.events.mu.Unlock()
		s.close()
	})
	return s.ch
}

// CloseEvents ends every event stream, so that a graceful stop does not
// wait on streams that never end by themselves.
func (m *Manager) CloseEvents() {
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	m.events.closed = true
	for s := range m.events.subs {
		s.close()
	}
	m.events.subs = nil
}

func (m *Manager) hasSubscribers() bool {
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	return len(m.events.subs) > 0
}

// emit publishes an event about container (or sandbox) id of pod podID,
// with the pod's status and its containers' statuses, as the kubelet's
// evented PLEG wants them.
func (m *Manager) emit(typ runtimeapi.ContainerEventType, id, podID string) {
	if !m.hasSubscribers() {
		return
	}
	ev := &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: typ, CreatedAt: nowNano()}
	ctx := context.Background()
	if st, _, err := m.PodSandboxStatus(ctx, podID, false); err == nil {
		ev.PodSandboxStatus = st
	}
	for _, c := range m.podContainers(podID) {
		if st, _, err := m.ContainerStatus(ctx, c.rec.ID, false); err == nil {
			ev.ContainersStatuses = append(ev.ContainersStatuses, st)
		}
	}
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	for s := range m.events.subs {
		select {
		case s.ch <- ev:
		default:
		}
	}
}
