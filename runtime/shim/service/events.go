package service

import (
	"context"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
)

func (s *Service) publish(ev *shimv1.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
			// A subscriber that does not read loses events; it resyncs
			// with List when it reconnects.
		}
	}
}

// Events streams exits until the client goes away.
func (s *Service) Events(ctx context.Context, _ *shimv1.Empty, stream shimv1.ShimService_EventsServer) error {
	ch := make(chan *shimv1.Event, 128)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, ch)
		s.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}
