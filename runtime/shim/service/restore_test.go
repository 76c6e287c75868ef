package service

import (
	"errors"
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/caps"
	"github.com/berthrt/berth/runtime/errdefs"
)

// TestCheckRestored: a restored init (here the test itself, in the host's
// namespaces with its own credentials) passes only a spec it is no more
// privileged than and whose namespaces it is in.
func TestCheckRestored(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the checks compare a root process with specs")
	}
	pid := os.Getpid()
	all := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps.All}}, Linux: &specs.Linux{}}
	if err := checkRestoredCreds(pid, all); err != nil {
		t.Errorf("every capability allowed: %v", err)
	}
	if err := checkRestoredNamespaces(pid, all); err != nil {
		t.Errorf("host namespaces where the spec makes none: %v", err)
	}
	refused := map[string]*specs.Spec{
		"capabilities beyond the bounding set": {Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_CHOWN"}}}, Linux: &specs.Linux{}},
		"another user":                         {Process: &specs.Process{User: specs.User{UID: 1000}, Capabilities: &specs.LinuxCapabilities{Bounding: caps.All}}, Linux: &specs.Linux{}},
		"no seccomp filter":                    {Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps.All}}, Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{}}},
	}
	for name, s := range refused {
		if err := checkRestoredCreds(pid, s); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("%s: %v, want FailedPrecondition", name, err)
		}
	}
	newNet := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}}
	if err := checkRestoredNamespaces(pid, newNet); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("the host's network namespace where the spec makes a new one: %v", err)
	}
	joined := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}}}}
	if err := checkRestoredNamespaces(pid, joined); err != nil {
		t.Errorf("the joined namespace is the host's here: %v", err)
	}
}
