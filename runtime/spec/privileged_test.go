package spec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// TestPrivilegedContainerNeedsPrivilegedPod: a privileged container in a
// pod that is not is refused, naming both fields, as the kubelet and
// containerd refuse it; in a privileged pod it runs.
func TestPrivilegedContainerNeedsPrivilegedPod(t *testing.T) {
	privileged := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{
		SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Privileged: true},
	}}
	for _, tc := range []struct {
		name   string
		pod    *runtimeapi.LinuxSandboxSecurityContext
		ctr    *runtimeapi.ContainerConfig
		refuse bool
	}{
		{"pod without a security context", nil, privileged, true},
		{"unprivileged pod", &runtimeapi.LinuxSandboxSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 0}}, privileged, true},
		{"privileged pod", &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}, privileged, false},
		{"unprivileged container, privileged pod", &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}, &runtimeapi.ContainerConfig{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.pod.Config.Linux.SecurityContext = tc.pod
			s, _, err := f.container(t, tc.ctr)
			if !tc.refuse {
				if err != nil {
					t.Fatal(err)
				}
				if got := tc.ctr.GetLinux().GetSecurityContext().GetPrivileged(); got != (len(s.Process.Capabilities.Bounding) == len(allCaps)) {
					t.Errorf("privileged %v, yet %d capabilities", got, len(s.Process.Capabilities.Bounding))
				}
				return
			}
			msg := fmt.Sprint(err)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(msg, "LinuxContainerSecurityContext.privileged") || !strings.Contains(msg, "LinuxSandboxSecurityContext.privileged") {
				t.Errorf("err = %v, want InvalidArgument naming both privileged fields", err)
			}
		})
	}
}
