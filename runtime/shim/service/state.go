package service

import (
	"context"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
)

// State returns a container's state.
func (s *Service) State(ctx context.Context, req *shimv1.IDRequest) (*shimv1.ContainerState, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	return c.state(), nil
}

// List returns every container's state.
func (s *Service) List(ctx context.Context, _ *shimv1.Empty) (*shimv1.ListResponse, error) {
	s.mu.Lock()
	cs := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	resp := &shimv1.ListResponse{}
	for _, c := range cs {
		resp.Containers = append(resp.Containers, c.state())
	}
	return resp, nil
}
