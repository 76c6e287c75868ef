package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// fakeProfiles fakes the kernel's list of loaded AppArmor profiles.
func fakeProfiles(t *testing.T, names ...string) string {
	t.Helper()
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + " (enforce)\n")
	}
	p := filepath.Join(t.TempDir(), "profiles")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func profile(typ runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
	return &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
}

var (
	runtimeDefault = profile(runtimeapi.SecurityProfile_RuntimeDefault, "")
	unconfined     = profile(runtimeapi.SecurityProfile_Unconfined, "")
)

func localhost(name string) *runtimeapi.SecurityProfile {
	return profile(runtimeapi.SecurityProfile_Localhost, name)
}

// wantErr checks err's class and that it names every one of names ("" for
// no error).
func wantErr(t *testing.T, err, class error, names ...string) {
	t.Helper()
	if class == nil {
		if err != nil {
			t.Fatalf("err = %v, want none", err)
		}
		return
	}
	if !errors.Is(err, class) {
		t.Fatalf("err = %v, want %v", err, class)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("err = %v, want it to name %q", err, n)
		}
	}
}

func TestAppArmorApplied(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pod     *runtimeapi.SecurityProfile
		sc      *runtimeapi.LinuxContainerSecurityContext
		want    string
		class   error
		naming  []string
		loadErr error
	}{
		{name: "nothing asked: the default", want: "berth-default"},
		{name: "RuntimeDefault", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: runtimeDefault}, want: "berth-default"},
		{name: "Unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: unconfined}, want: ""},
		{name: "Localhost", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: localhost("k8s-deny-write")}, want: "k8s-deny-write"},
		{name: "Localhost with its prefix", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: localhost("localhost/k8s-deny-write")}, want: "k8s-deny-write"},
		{
			name: "Localhost not loaded", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: localhost("missing")},
			class: errdefs.ErrFailedPrecondition, naming: []string{"LinuxContainerSecurityContext.apparmor", `"missing"`, "not loaded"},
		},
		{
			name: "Localhost without a name", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: localhost("localhost/")},
			class: errdefs.ErrInvalidArgument, naming: []string{"LinuxContainerSecurityContext.apparmor"},
		},
		{
			name: "localhost_ref with another type", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: profile(runtimeapi.SecurityProfile_Unconfined, "x")},
			class: errdefs.ErrInvalidArgument, naming: []string{"LinuxContainerSecurityContext.apparmor", "localhost_ref"},
		},
		{name: "deprecated runtime/default", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}, want: "berth-default"},
		{name: "deprecated unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "unconfined"}, want: ""},
		{name: "deprecated localhost", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-deny-write"}, want: "k8s-deny-write"},
		{
			name: "deprecated localhost not loaded", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/gone"},
			class: errdefs.ErrFailedPrecondition, naming: []string{"LinuxContainerSecurityContext.apparmor_profile", `"gone"`},
		},
		{
			name: "deprecated nonsense", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "k8s-deny-write"},
			class: errdefs.ErrInvalidArgument, naming: []string{"LinuxContainerSecurityContext.apparmor_profile"},
		},
		{
			name: "the structured field wins", want: "",
			sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: unconfined, ApparmorProfile: "localhost/gone"},
		},
		{name: "privileged: none by default", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, want: ""},
		{name: "privileged: none for RuntimeDefault", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: runtimeDefault}, want: ""},
		{name: "privileged: a named profile", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: localhost("k8s-deny-write")}, want: "k8s-deny-write"},
		{name: "the pod's profile by default", pod: localhost("k8s-deny-write"), want: "k8s-deny-write"},
		{name: "the container's over the pod's", pod: localhost("k8s-deny-write"), sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: runtimeDefault}, want: "berth-default"},
		{
			name: "the pod's missing profile", pod: localhost("gone"), sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: runtimeDefault},
			class: errdefs.ErrFailedPrecondition, naming: []string{"LinuxSandboxSecurityContext.apparmor", `"gone"`},
		},
		{
			name: "default profile cannot be loaded", loadErr: errors.New("apparmor_parser: exit status 1"),
			class: errdefs.ErrFailedPrecondition, naming: []string{"berth-default", "apparmor_parser"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			loads := 0
			f.h.LSM = LSM{AppArmor: true, AppArmorProfiles: fakeProfiles(t, "k8s-deny-write", "other"), LoadAppArmorDefault: func() error { loads++; return tc.loadErr }}
			f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Apparmor: tc.pod, Privileged: tc.sc.GetPrivileged()}
			s, _, err := f.container(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc}})
			wantErr(t, err, tc.class, tc.naming...)
			if err != nil {
				return
			}
			if s.Process.ApparmorProfile != tc.want {
				t.Errorf("apparmorProfile = %q, want %q", s.Process.ApparmorProfile, tc.want)
			}
			if tc.want == "berth-default" && loads == 0 {
				t.Error("the default profile was applied without making sure it is loaded")
			}
		})
	}
}

func TestAppArmorSandbox(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sc         *runtimeapi.LinuxSandboxSecurityContext
		want       string
		class      error
		profiles   []string
		noLoadHook bool
	}{
		{name: "nothing asked", want: "berth-default"},
		{name: "the pod's profile", sc: &runtimeapi.LinuxSandboxSecurityContext{Apparmor: localhost("k8s-deny-write")}, want: "k8s-deny-write"},
		{name: "unconfined", sc: &runtimeapi.LinuxSandboxSecurityContext{Apparmor: unconfined}, want: ""},
		{name: "privileged", sc: &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}, want: ""},
		{name: "missing", sc: &runtimeapi.LinuxSandboxSecurityContext{Apparmor: localhost("gone")}, class: errdefs.ErrFailedPrecondition},
		// Without a loader, the default must be in the kernel already.
		{name: "default loaded, no loader", noLoadHook: true, profiles: []string{"berth-default"}, want: "berth-default"},
		{name: "default missing, no loader", noLoadHook: true, class: errdefs.ErrFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.h.LSM = LSM{AppArmor: true, AppArmorProfiles: fakeProfiles(t, append(tc.profiles, "k8s-deny-write")...)}
			if !tc.noLoadHook {
				f.h.LoadAppArmorDefault = func() error { return nil }
			}
			f.pod.Config.Linux.SecurityContext = tc.sc
			s, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs")
			wantErr(t, err, tc.class, "LinuxSandboxSecurityContext.apparmor")
			if err == nil && s.Process.ApparmorProfile != tc.want {
				t.Errorf("apparmorProfile = %q, want %q", s.Process.ApparmorProfile, tc.want)
			}
			if err := CheckSandboxSecurity(f.h, f.pod.Config); (err == nil) != (tc.class == nil) {
				t.Errorf("CheckSandboxSecurity = %v, want the same verdict as the spec", err)
			}
		})
	}
}

// TestAppArmorRefusedWithoutAppArmor: on a node without AppArmor (this
// one), a profile asked for is refused, naming the field and the reason;
// asking for nothing or Unconfined is fine, and nothing is loaded.
func TestAppArmorRefusedWithoutAppArmor(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		sc          *runtimeapi.LinuxContainerSecurityContext
	}{
		{"RuntimeDefault", "LinuxContainerSecurityContext.apparmor", &runtimeapi.LinuxContainerSecurityContext{Apparmor: runtimeDefault}},
		{"Localhost", "LinuxContainerSecurityContext.apparmor", &runtimeapi.LinuxContainerSecurityContext{Apparmor: localhost("k8s-deny-write")}},
		{"deprecated runtime/default", "LinuxContainerSecurityContext.apparmor_profile", &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}},
		{"deprecated localhost", "LinuxContainerSecurityContext.apparmor_profile", &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-deny-write"}},
		{"privileged, named", "LinuxContainerSecurityContext.apparmor", &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: localhost("x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.h.LoadAppArmorDefault = func() error { t.Error("loaded a profile on a node without AppArmor"); return nil }
			f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: tc.sc.GetPrivileged()}
			_, _, err := f.container(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: tc.sc}})
			wantErr(t, err, errdefs.ErrInvalidArgument, tc.field, "AppArmor is not enabled on this node")
		})
	}
	f := newFixture(t)
	f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Apparmor: runtimeDefault}
	_, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs")
	wantErr(t, err, errdefs.ErrInvalidArgument, "LinuxSandboxSecurityContext.apparmor", "AppArmor is not enabled on this node")
	wantErr(t, CheckSandboxSecurity(f.h, f.pod.Config), errdefs.ErrInvalidArgument, "LinuxSandboxSecurityContext.apparmor")

	for _, sc := range []*runtimeapi.LinuxContainerSecurityContext{nil, {Apparmor: unconfined}, {ApparmorProfile: "unconfined"}, {Privileged: true}} {
		f := newFixture(t)
		f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: sc.GetPrivileged()}
		s, _, err := f.container(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc}})
		if err != nil {
			t.Errorf("%v: %v, want accepted", sc, err)
		} else if s.Process.ApparmorProfile != "" {
			t.Errorf("%v: profile %q, want none", sc, s.Process.ApparmorProfile)
		}
	}
}
