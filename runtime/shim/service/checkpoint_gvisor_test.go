package service

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
)

// TestSandboxCheckpointRequests: a gVisor pod's shim checkpoints only its
// sandbox container (the whole sandbox), never one container alone, and
// restores without a CRIU work path.
func TestSandboxCheckpointRequests(t *testing.T) {
	s := &Service{opts: Options{PodID: "pod", Runtime: &oci.Runtime{Kind: oci.KindRunsc}, Log: slog.New(slog.DiscardHandler)}, containers: map[string]*container{}}
	ctx := context.Background()
	for name, req := range map[string]*shimv1.CheckpointPodRequest{
		"a container":           {Containers: []*shimv1.CheckpointRequest{{Id: "ctr", ImagePath: "/i"}}},
		"another with an image": {Containers: []*shimv1.CheckpointRequest{{Id: "pod", ImagePath: "/i"}, {Id: "ctr", ImagePath: "/j"}}},
		"another first":         {Containers: []*shimv1.CheckpointRequest{{Id: "ctr"}, {Id: "pod", ImagePath: "/i"}}},
		"one named twice":       {Containers: []*shimv1.CheckpointRequest{{Id: "pod", ImagePath: "/i"}, {Id: "ctr"}, {Id: "ctr"}}},
		"no image path":         {Containers: []*shimv1.CheckpointRequest{{Id: "pod"}}},
	} {
		if _, err := s.CheckpointPod(ctx, req); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := s.CheckpointPod(ctx, &shimv1.CheckpointPodRequest{Containers: []*shimv1.CheckpointRequest{{Id: "pod", ImagePath: "/i"}}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("a sandbox container the shim does not run: %v, want NotFound", err)
	}
	if _, err := s.Checkpoint(ctx, &shimv1.CheckpointRequest{Id: "ctr", ImagePath: "/i", WorkPath: "/w"}); !errors.Is(err, errdefs.ErrUnimplemented) {
		t.Errorf("Checkpoint of one gVisor container: %v, want Unimplemented", err)
	}
	for name, tc := range map[string]struct {
		req  *shimv1.CreateRequest
		want error
	}{
		"no work path": {&shimv1.CreateRequest{Restore: &shimv1.RestoreOptions{ImagePath: "/i"}}, nil},
		"no image":     {&shimv1.CreateRequest{Restore: &shimv1.RestoreOptions{}}, errdefs.ErrInvalidArgument},
		"terminal":     {&shimv1.CreateRequest{Terminal: true, Restore: &shimv1.RestoreOptions{ImagePath: "/i"}}, errdefs.ErrFailedPrecondition},
	} {
		if err := s.checkRestore(tc.req); !errors.Is(err, tc.want) && (tc.want != nil || err != nil) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// TestSandboxHolds: a gVisor checkpoint goes ahead only when the sandbox
// holds exactly the containers named, all running (one created while
// berthd listed them would be in gVisor's image and not in pod.json).
func TestSandboxHolds(t *testing.T) {
	running := func(id string) *container {
		return &container{id: id, status: shimv1.Status_STATUS_RUNNING}
	}
	s := &Service{opts: Options{PodID: "pod"}, containers: map[string]*container{"pod": running("pod"), "a": running("a"), "b": running("b")}}
	for name, tc := range map[string]struct {
		named []string
		ok    bool
	}{
		"all":              {[]string{"a", "b"}, true},
		"one not named":    {[]string{"a"}, false},
		"one not there":    {[]string{"a", "b", "c"}, false},
		"another in place": {[]string{"a", "c"}, false},
	} {
		named := map[string]bool{}
		for _, id := range tc.named {
			named[id] = true
		}
		err := s.sandboxHolds(named)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("%s: %v", name, err)
		}
	}
	s.containers["b"].status = shimv1.Status_STATUS_CREATED
	if err := s.sandboxHolds(map[string]bool{"a": true, "b": true}); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("a container created, not started: %v", err)
	}
}
