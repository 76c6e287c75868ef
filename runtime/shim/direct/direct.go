// Package direct starts a process inside a running runc or crun container
// without the OCI runtime: the shim re-executes itself as a helper that
// enters the container the way the runtime's exec does (namespaces,
// cgroups, session keyring, rlimits, oom_score_adj, no_new_privs, the
// container's own seccomp filter, capabilities, user and groups, working
// directory, environment) and forks the process there. The runtime's exec
// costs two Go program starts and its state handling (about 20 ms with
// runc); this costs one small fork-exec. Kubelet probes are execs.
//
// The seccomp filter is the one the runtime installed in the container's
// init, read back from the kernel (PTRACE_SECCOMP_GET_FILTER), so the
// process runs under exactly the same program. What the helper does not
// do (user namespaces, AppArmor or SELinux labels, personality, I/O
// priority, scheduler settings, seccomp notify) is left to the runtime:
// Plan says so and the shim uses the runtime's exec.
package direct

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Arg is the argument that makes the shim binary the helper.
const Arg = "direct-exec"

// Request is what the helper is asked to do (JSON on fd 3).
type Request struct {
	// ContainerID names the session keyring the runtime gives a
	// container's processes.
	ContainerID string `json:"id"`
	// InitPid is the container's init, whose cgroups the process joins
	// (its pidfd comes with the request).
	InitPid int `json:"initPid"`
	// CgroupMounts are the host's cgroup hierarchies, read once by the
	// shim. A stale table fails the exec: the helper's cgroups must equal
	// the init's.
	CgroupMounts CgroupMounts `json:"cgroupMounts,omitempty"`
	// Namespaces are the kinds joined, in the order of their descriptors.
	Namespaces []string       `json:"namespaces"`
	Process    *specs.Process `json:"process"`
	// Seccomp: the container has a filter. Filter is its program when the
	// shim has it already; otherwise the helper reads it from InitPid.
	Seccomp      bool   `json:"seccomp"`
	SeccompFlags uint   `json:"seccompFlags"`
	Filter       []byte `json:"filter,omitempty"`
	// DefaultHome is HOME for a user the container's /etc/passwd lacks
	// ("" leaves HOME unset: runtimes differ).
	DefaultHome string `json:"defaultHome,omitempty"`
}

// Report is one line the helper writes on fd 4.
type Report struct {
	// Filter is the seccomp program it read from the container's init.
	Filter []byte `json:"filter,omitempty"`
	// Pid is the started process (host pid).
	Pid  int  `json:"pid,omitempty"`
	Exit *int `json:"exit,omitempty"`
	// Error ends the helper before any process ran. Final says the
	// runtime's exec would fail the same way (no such command).
	Error string `json:"error,omitempty"`
	Final bool   `json:"final,omitempty"`
	// Refused: the container is not as it was created (or could not be
	// fully entered); neither this nor the runtime's exec may run.
	Refused bool `json:"refused,omitempty"`
	// NotFound (with Final): the command is not in the container.
	NotFound bool `json:"notFound,omitempty"`
}

// Plan is how a container's processes are entered directly.
type Plan struct {
	Namespaces   []string
	Seccomp      bool
	SeccompFlags uint
	// Unsupported says why the runtime's exec must be used ("" if not).
	Unsupported string
}

// namespaceFiles are the /proc/<pid>/ns names of OCI namespace types.
var namespaceFiles = map[specs.LinuxNamespaceType]string{
	specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.NetworkNamespace: "net",
	specs.PIDNamespace: "pid", specs.CgroupNamespace: "cgroup", specs.MountNamespace: "mnt",
}

// seccompFlags are the seccomp(2) flags of OCI flag names.
var seccompFlags = map[specs.LinuxSeccompFlag]uint{
	"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}

// PlanFor reads a container's spec.
func PlanFor(s *specs.Spec) Plan {
	var p Plan
	if s.Linux == nil {
		p.Unsupported = "no linux section"
		return p
	}
	for _, ns := range s.Linux.Namespaces {
		name, ok := namespaceFiles[ns.Type]
		if !ok {
			p.Unsupported = fmt.Sprintf("%s namespace", ns.Type)
			return p
		}
		p.Namespaces = append(p.Namespaces, name)
	}
	if s.Linux.Personality != nil {
		p.Unsupported = "personality"
	}
	if s.Linux.IntelRdt != nil {
		p.Unsupported = "intelRdt"
	}
	if sc := s.Linux.Seccomp; sc != nil {
		if sc.ListenerPath != "" {
			p.Unsupported = "seccomp notify"
		}
		p.Seccomp = true
		for _, f := range sc.Flags {
			v, ok := seccompFlags[f]
			if !ok {
				p.Unsupported = "seccomp flag " + string(f)
			}
			p.SeccompFlags |= v
		}
	}
	return p
}

// ProcessUnsupported says why process cannot be started directly ("" if
// it can).
func ProcessUnsupported(p *specs.Process) string {
	switch {
	case p == nil:
		return "no process"
	case p.Terminal:
		return "terminal"
	case p.ApparmorProfile != "":
		return "AppArmor profile"
	case p.SelinuxLabel != "":
		return "SELinux label"
	case p.IOPriority != nil:
		return "I/O priority"
	case p.Scheduler != nil:
		return "scheduler"
	case p.ExecCPUAffinity != nil:
		return "CPU affinity"
	case len(p.Args) == 0:
		return "no arguments"
	}
	return ""
}

// Cmd is the helper.
type Cmd struct {
	*exec.Cmd
	reports *bufio.Scanner
	// The helper's descriptors (closed here once it started) and our end
	// of the report pipe.
	theirs []*os.File
	repR   *os.File
}

// Command prepares the helper (self is the shim's own binary) for req in
// the container whose init is pinned by in. Set its stdio (the process's),
// start it (through the shim's reaper), call Started, then read its
// reports with Next.
func Command(self string, req *Request, in *Init) (*Cmd, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	pidfd, ns, err := in.Dup(req.Namespaces)
	if err != nil {
		return nil, err
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		closeAll(append(ns, pidfd))
		return nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		closeAll(append(ns, pidfd, reqR, reqW))
		return nil, err
	}
	files := append([]*os.File{reqR, repW, pidfd}, ns...)
	// The helper reads the request once it runs.
	go func() {
		_, _ = reqW.Write(data)
		_ = reqW.Close()
	}()
	cmd := exec.Command(self, Arg) //nolint:noctx // the caller kills it on timeout
	cmd.ExtraFiles = files
	cmd.Dir = "/"
	// Nothing of the shim's environment; the process gets the spec's. A
	// race-built helper would sleep a second at exit, in the container's
	// cgroups, without GORACE (ignored by normal builds).
	cmd.Env = []string{"GORACE=atexit_sleep_ms=0"}
	c := &Cmd{Cmd: cmd, reports: bufio.NewScanner(repR), theirs: files, repR: repR}
	c.reports.Buffer(make([]byte, 0, 64<<10), 4<<20)
	return c, nil
}

// Started closes our copies of the helper's ends; call it once the helper
// runs (or failed to start).
func (c *Cmd) Started() { closeAll(c.theirs) }

// Next reads the helper's next report; an error means it is gone.
func (c *Cmd) Next() (Report, error) {
	if !c.reports.Scan() {
		if err := c.reports.Err(); err != nil {
			return Report{}, err
		}
		return Report{}, errors.New("direct exec helper exited without a report")
	}
	var r Report
	if err := json.Unmarshal(c.reports.Bytes(), &r); err != nil {
		return Report{}, fmt.Errorf("direct exec helper report %q: %w", strings.TrimSpace(c.reports.Text()), err)
	}
	return r, nil
}

// Close releases the report pipe.
func (c *Cmd) Close() { _ = c.repR.Close() }
