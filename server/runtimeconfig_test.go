package server

import (
	"context"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

type fakePodCIDR struct {
	got []string
	err error
}

func (f *fakePodCIDR) SetPodCIDR(_ context.Context, cidr string) error {
	f.got = append(f.got, cidr)
	return f.err
}

func podCIDRRequest(cidr string) *runtimeapi.UpdateRuntimeConfigRequest {
	return &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}}
}

// The kubelet's pod CIDR reaches the network as sent; none (an empty
// request, or no CIDR yet) does not; the network's refusal is the RPC's.
func TestUpdateRuntimeConfigPodCIDR(t *testing.T) {
	ctx := context.Background()
	f := &fakePodCIDR{}
	s := &RuntimeService{PodCIDR: f}
	for _, req := range []*runtimeapi.UpdateRuntimeConfigRequest{{}, podCIDRRequest("")} {
		if _, err := s.UpdateRuntimeConfig(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UpdateRuntimeConfig(ctx, podCIDRRequest("10.244.1.0/24,fd00::/64")); err != nil {
		t.Fatal(err)
	}
	if len(f.got) != 1 || f.got[0] != "10.244.1.0/24,fd00::/64" {
		t.Errorf("SetPodCIDR got %q", f.got)
	}
	f.err = errdefs.InvalidArgument("pod_cidr %q: bad", "x")
	if _, err := s.UpdateRuntimeConfig(ctx, podCIDRRequest("x")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("refused CIDR: %v", err)
	}
	// Without a network (tests, tools) the request is accepted as before.
	if _, err := (&RuntimeService{}).UpdateRuntimeConfig(ctx, podCIDRRequest("10.244.1.0/24")); err != nil {
		t.Error(err)
	}
}
