package direct

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPlanFor(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{
		Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/run/netns/x"}},
		Seccomp:    &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG"}},
	}}
	p := PlanFor(s)
	if p.Unsupported != "" || !slices.Equal(p.Namespaces, []string{"mnt", "pid", "net"}) || !p.Seccomp || p.SeccompFlags != 2 {
		t.Errorf("plan = %+v", p)
	}
	for name, mod := range map[string]func(*specs.Spec){
		"user namespace": func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		},
		"personality":    func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: "LINUX32"} },
		"seccomp notify": func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{ListenerPath: "/run/x.sock"} },
		"unknown flag": func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NEW"}}
		},
		"no linux": func(s *specs.Spec) { s.Linux = nil },
	} {
		c := &specs.Spec{Linux: &specs.Linux{}}
		mod(c)
		if p := PlanFor(c); p.Unsupported == "" {
			t.Errorf("%s: plan %+v says supported", name, p)
		}
	}
}

func TestProcessUnsupported(t *testing.T) {
	ok := &specs.Process{Args: []string{"true"}}
	if why := ProcessUnsupported(ok); why != "" {
		t.Errorf("plain process unsupported: %s", why)
	}
	for _, p := range []*specs.Process{
		nil, {}, {Args: []string{"sh"}, Terminal: true}, {Args: []string{"sh"}, ApparmorProfile: "x"},
		{Args: []string{"sh"}, SelinuxLabel: "x"}, {Args: []string{"sh"}, IOPriority: &specs.LinuxIOPriority{}},
		{Args: []string{"sh"}, Scheduler: &specs.Scheduler{}},
	} {
		if ProcessUnsupported(p) == "" {
			t.Errorf("%+v: supported", p)
		}
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "tool"), filepath.Join(dir, "data")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"A=1", "PATH=/nonexistent:" + dir}
	if got, err := lookPath("tool", env); err != nil || got != exe {
		t.Errorf("lookPath(tool) = %q, %v", got, err)
	}
	if got, err := lookPath(exe, nil); err != nil || got != exe {
		t.Errorf("lookPath(%s) = %q, %v", exe, got, err)
	}
	for _, f := range []string{"data", "missing", plain, dir} {
		if _, err := lookPath(f, env); err == nil {
			t.Errorf("lookPath(%s) found something", f)
		}
	}
	if _, err := lookPath("tool", []string{"A=1"}); !errors.Is(err, errNoExecutable) {
		t.Errorf("lookPath without PATH: %v", err)
	}
}

func TestWithHome(t *testing.T) {
	if got := withHome([]string{"HOME=/x"}, 0, "/"); !slices.Equal(got, []string{"HOME=/x"}) {
		t.Errorf("an explicit HOME changed: %v", got)
	}
	// uid 2^31-2 is in no /etc/passwd.
	if got := withHome([]string{"A=1"}, 1<<31-2, "/"); !slices.Equal(got, []string{"A=1", "HOME=/"}) {
		t.Errorf("default HOME: %v", got)
	}
	if got := withHome([]string{"A=1"}, 1<<31-2, ""); !slices.Equal(got, []string{"A=1"}) {
		t.Errorf("no default: %v", got)
	}
}
