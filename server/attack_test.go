package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// runRecorder is a Pods that records whether a pod was run.
type runRecorder struct {
	Pods
	ran bool
}

func (r *runRecorder) RunPodSandbox(ctx context.Context, cfg *runtimeapi.PodSandboxConfig, handler string) (string, error) {
	r.ran = true
	return "pod", nil
}

// TestAttackPodLSMRequestsAreNotDropped: a pod asking for an SELinux
// label or an AppArmor profile berth does not apply is refused before
// anything runs (a pod without a sandbox container has no spec of its own
// where the request would be noticed).
func TestAttackPodLSMRequestsAreNotDropped(t *testing.T) {
	for field, sc := range map[string]*runtimeapi.LinuxSandboxSecurityContext{
		"LinuxSandboxSecurityContext.selinux_options": {SelinuxOptions: &runtimeapi.SELinuxOption{Type: "spc_t"}},
		"LinuxSandboxSecurityContext.apparmor":        {Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "p"}},
	} {
		pods := &runRecorder{}
		s := &RuntimeService{Pods: pods}
		_, err := s.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p"},
			Linux:    &runtimeapi.LinuxPodSandboxConfig{SecurityContext: sc},
		}})
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), field) || pods.ran {
			t.Errorf("%s: err = %v, pod ran %v; want InvalidArgument naming the field, nothing run", field, err, pods.ran)
		}
	}
}
