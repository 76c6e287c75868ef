package apparmor

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	for _, tc := range []struct {
		name       string
		tmpl       Template
		want, deny []string
	}{
		{
			name: "full host",
			tmpl: Template{Name: DefaultProfile, ABI: "abi/3.0", Tunables: true, Base: true, Daemon: "unconfined"},
			want: []string{"abi <abi/3.0>,", "#include <tunables/global>", "profile berth-default flags=(attach_disconnected,mediate_deleted) {",
				"#include <abstractions/base>", "deny mount,", "signal (send,receive) peer=berth-default,", "peer=unconfined,", "deny @{PROC}/{kcore,sysrq-trigger} rwklx,"},
			// berthd unconfined: its rule is the unconfined one, once.
			deny: []string{"@{PROC}=/proc/"},
		},
		{
			name: "bare parser",
			tmpl: Template{Name: "x", Daemon: "berthd-profile"},
			want: []string{"@{PROC}=/proc/", "profile x flags", "signal (receive) peer=berthd-profile,", "ptrace (trace,tracedby,read,readby) peer=x,"},
			deny: []string{"abi <", "#include"},
		},
		{
			name: "daemon name the parser would misread",
			tmpl: Template{Name: "x", Daemon: "evil,\n  capability"},
			deny: []string{"evil"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, err := tc.tmpl.Render()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("profile lacks %q:\n%s", w, text)
				}
			}
			for _, d := range tc.deny {
				if strings.Contains(text, d) {
					t.Errorf("profile has %q:\n%s", d, text)
				}
			}
			if n := strings.Count(text, "peer=unconfined,"); n != 1 {
				t.Errorf("%d unconfined signal rules, want 1", n)
			}
			parse(t, text)
		})
	}
	for _, name := range []string{"", "two words", "a{b}", "x\n"} {
		if _, err := (Template{Name: name, Daemon: "unconfined"}).Render(); err == nil {
			t.Errorf("name %q rendered", name)
		}
	}
}

// parse checks the text with the host's apparmor_parser, when it has one,
// without loading it (-Q): the profile is real AppArmor syntax.
func parse(t *testing.T, text string) {
	t.Helper()
	if _, err := exec.LookPath("apparmor_parser"); err != nil {
		t.Log("no apparmor_parser: syntax not checked")
		return
	}
	if strings.Contains(text, "#include") {
		if _, err := os.Stat(filepath.Join(etcDir, "tunables/global")); err != nil {
			t.Log("no tunables/global: syntax not checked")
			return
		}
	}
	cmd := exec.Command("apparmor_parser", "-QK")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("apparmor_parser: %v: %s\n%s", err, out, text)
	}
}

func writeProfiles(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "profiles")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIsLoaded(t *testing.T) {
	p := writeProfiles(t, "berth-default-old (enforce)", "/usr/bin/man (enforce)", "k8s deny write (complain)", "lsb_release (kill)")
	for name, want := range map[string]bool{
		"/usr/bin/man":   true,
		"k8s deny write": true, // the name may hold spaces
		"lsb_release":    true,
		"berth-default":  false, // a prefix of another profile is not it
		"man":            false,
		"enforce":        false,
	} {
		got, err := IsLoaded(p, name)
		if err != nil || got != want {
			t.Errorf("IsLoaded(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := IsLoaded(filepath.Join(t.TempDir(), "missing"), "x"); err == nil {
		t.Error("a missing profiles file is no error")
	}
}

func TestLoaderLoadsOnceAndRetries(t *testing.T) {
	p := writeProfiles(t, "other (enforce)")
	var calls int
	fail := errors.New("parser failed")
	l := &Loader{
		Profiles: p,
		Template: func(name string) Template { return Template{Name: name, Daemon: "unconfined"} },
		Parse: func(text string) error {
			calls++
			if calls == 1 {
				return fail
			}
			if !strings.Contains(text, "profile "+DefaultProfile+" ") {
				t.Errorf("loaded text:\n%s", text)
			}
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteString(DefaultProfile + " (enforce)\n")
			return err
		},
	}
	if err := l.Load(); !errors.Is(err, fail) {
		t.Fatalf("first load: %v, want the parser's error", err)
	}
	for range 3 {
		if err := l.Load(); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 2 {
		t.Errorf("parser ran %d times, want 2 (a failure, then one load)", calls)
	}
	// Unloaded behind berth's back: loaded again.
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Load(); err != nil || calls != 3 {
		t.Errorf("after unload: %v, %d parser runs; want a reload", err, calls)
	}
}
