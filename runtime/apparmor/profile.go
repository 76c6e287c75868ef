package apparmor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// DefaultProfile is the profile berth applies for RuntimeDefault.
const DefaultProfile = "berth-default"

// Template is what the default profile is rendered from.
type Template struct {
	Name string
	// ABI is the policy ABI the rules are written for ("abi/3.0"); empty
	// on parsers without ABI files, which take the rules as they are.
	ABI string
	// Tunables and Base: the host's parser has tunables/global (which
	// defines @{PROC}) and abstractions/base.
	Tunables, Base bool
	// Daemon is berthd's own profile ("unconfined" mostly): berthd and
	// its shims, which inherit it, signal containers.
	Daemon string
}

// Rules are written for the host's kernel interfaces, not for what the
// container's own files are: file access inside the container is left to
// permissions, capabilities and seccomp. What is denied is what a
// container could use to reach the host through /proc and /sys, and
// mounting.
const profileText = `{{if .ABI}}abi <{{.ABI}}>,
{{end}}{{if .Tunables}}#include <tunables/global>
{{else}}@{PROC}=/proc/
{{end}}
# berth's profile for containers asking for RuntimeDefault.
profile {{.Name}} flags=(attach_disconnected,mediate_deleted) {
{{- if .Base}}
  #include <abstractions/base>
{{- end}}

  network,
  capability,
  file,
  umount,

  # Signals from the host (unconfined processes, the OCI runtimes, berthd
  # and its shims) and among the container's own processes.
  signal (receive) peer=unconfined,
{{- if ne .Daemon "unconfined"}}
  signal (receive) peer={{.Daemon}},
{{- end}}
  signal (receive) peer=runc,
  signal (receive) peer=crun,
  signal (send,receive) peer={{.Name}},
  # ps and debuggers see the container's own processes only.
  ptrace (trace,tracedby,read,readby) peer={{.Name}},

  # The runtime has set up every mount the container gets.
  deny mount,

  # /proc: nothing is written outside /proc/<pid> and the IPC settings
  # of /proc/sys/kernel (shm*, msg*, sem*), which the IPC namespace owns.
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9s/]*,s,s[^y/]*,sy,sy[^s/]*,sys?*}/** w,
  deny @{PROC}/sys/[^k/]** w,
  deny @{PROC}/sys/kernel/{[^ms/]**,m[^s/]**,ms[^g/]**,s[^eh/]**,se[^m/]**,sh[^m/]**} w,
  deny @{PROC}/{kcore,sysrq-trigger} rwklx,

  # /sys: nothing is written outside the cgroup tree; firmware tables,
  # LSM policy and energy counters (a side channel) are not read either.
  deny /sys/{[^f/]*,f[^s/]*,fs/[^c/]*,fs/c[^g/]*,fs/cg[^r/]*}/** wklx,
  deny /sys/{firmware,kernel/security,devices/virtual/powercap}/** rwklx,
}
`

var profileTmpl = template.Must(template.New("profile").Parse(profileText))

// Render returns the profile's text for apparmor_parser.
func (t Template) Render() (string, error) {
	if !validName(t.Name) {
		return "", fmt.Errorf("apparmor: invalid profile name %q", t.Name)
	}
	if !validName(t.Daemon) {
		// A name the parser would read as something else: the rule
		// falls back to the common case.
		t.Daemon = "unconfined"
	}
	var b strings.Builder
	if err := profileTmpl.Execute(&b, t); err != nil {
		return "", err
	}
	return b.String(), nil
}

// validName: a name that stands as one unquoted word in a rule.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("\"'{}[]*?,#=()\\", r) {
			return false
		}
	}
	return true
}

// etcDir is where the host's parser finds its includes.
const etcDir = "/etc/apparmor.d"

// HostTemplate is the default profile as this host's parser and berthd's
// own confinement need it.
func HostTemplate(name string) Template {
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(etcDir, p)); return err == nil }
	t := Template{Name: name, Tunables: exists("tunables/global"), Base: exists("abstractions/base"), Daemon: currentProfile()}
	if exists("abi/3.0") {
		t.ABI = "abi/3.0"
	}
	return t
}

// currentProfile is the profile berthd runs under: "name (mode)" or
// "unconfined".
func currentProfile() string {
	for _, p := range []string{"/proc/self/attr/apparmor/current", "/proc/self/attr/current"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(strings.TrimRight(string(b), "\x00")), " ")
		if name != "" {
			return name
		}
	}
	return "unconfined"
}
