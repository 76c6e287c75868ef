package spec

import (
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestMaskedPathsAsRequested: in a pod with a user namespace (the only
// place Kubernetes allows procMount Unmasked) a container gets exactly the
// lists of its request, none for an empty one, as containerd does;
// elsewhere an empty list is the default, so a client sending none gets a
// masked /proc; a privileged container gets none whatever it asks.
func TestMaskedPathsAsRequested(t *testing.T) {
	kubeletMasked, kubeletReadonly := []string{"/proc/kcore", "/sys/firmware"}, []string{"/proc/sys"}
	for _, tc := range []struct {
		name                     string
		sc                       *runtimeapi.LinuxContainerSecurityContext
		podPrivileged, userns    bool
		wantMasked, wantReadonly []string
	}{
		{"no security context (crictl's default)", nil, false, false, defaultMaskedPaths, defaultReadonlyPaths},
		{"no lists", &runtimeapi.LinuxContainerSecurityContext{}, false, false, defaultMaskedPaths, defaultReadonlyPaths},
		{"empty lists, no user namespace", &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{}, ReadonlyPaths: []string{}}, false, false, defaultMaskedPaths, defaultReadonlyPaths},
		{"procMount Unmasked: empty lists in a user namespace", &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{}, ReadonlyPaths: []string{}}, false, true, nil, nil},
		{"procMount Default: the kubelet's lists", &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: kubeletMasked, ReadonlyPaths: kubeletReadonly}, false, false, kubeletMasked, kubeletReadonly},
		{"procMount Default in a user namespace", &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: kubeletMasked, ReadonlyPaths: kubeletReadonly}, false, true, kubeletMasked, kubeletReadonly},
		{"masked only", &runtimeapi.LinuxContainerSecurityContext{MaskedPaths: []string{"/bin/ls"}}, false, false, []string{"/bin/ls"}, defaultReadonlyPaths},
		{"read-only only in a user namespace", &runtimeapi.LinuxContainerSecurityContext{ReadonlyPaths: []string{"/tmp"}}, false, true, nil, []string{"/tmp"}},
		{"privileged ignores the lists", &runtimeapi.LinuxContainerSecurityContext{Privileged: true, MaskedPaths: kubeletMasked, ReadonlyPaths: kubeletReadonly}, true, false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.podPrivileged {
				f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
			}
			if tc.userns {
				f.pod.UserNS = "/run/berth/pods/p/userns"
			}
			s, _, err := f.container(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc}})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Linux.MaskedPaths, tc.wantMasked) || !slices.Equal(s.Linux.ReadonlyPaths, tc.wantReadonly) {
				t.Errorf("masked %q, read-only %q; want %q, %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, tc.wantMasked, tc.wantReadonly)
			}
		})
	}
}

// TestSandboxKeepsDefaultMaskedPaths: the sandbox container, which no
// request describes, keeps the default lists.
func TestSandboxKeepsDefaultMaskedPaths(t *testing.T) {
	f := newFixture(t)
	f.pod.PausePid = 0
	s, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{Config: v1.Config{Entrypoint: []string{"/pause"}}}, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Linux.MaskedPaths, defaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, defaultReadonlyPaths) {
		t.Errorf("sandbox masked %q, read-only %q", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
}
