package oci

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// logArgs are the global arguments that send the runtime's own messages to
// logFile as JSON lines, away from the container's stdio.
func (r *Runtime) logArgs(logFile string) []string {
	if logFile == "" {
		return nil
	}
	if prefix := r.Traits().LogFilePrefix; prefix != "" {
		return []string{"--log=" + prefix + logFile, "--log-format=json"}
	}
	return []string{"--log", logFile, "--log-format", "json"}
}

func (r *Runtime) cmd(ctx context.Context, logFile string, args ...string) *exec.Cmd {
	full := append(r.GlobalArgs(), r.logArgs(logFile)...)
	return exec.CommandContext(ctx, r.Path, append(full, args...)...)
}

// CreateOpts are the options of `create`.
type CreateOpts struct {
	Bundle        string
	PidFile       string
	ConsoleSocket string
	LogFile       string
}

// Create builds `create`: the container's init is set up and waits for
// `start`; its stdio are the command's.
func (r *Runtime) Create(ctx context.Context, id string, o CreateOpts) *exec.Cmd {
	args := []string{"create", "--bundle", o.Bundle, "--pid-file", o.PidFile}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	return r.cmd(ctx, o.LogFile, append(args, id)...)
}

// Start builds `start`.
func (r *Runtime) Start(ctx context.Context, id, logFile string) *exec.Cmd {
	return r.cmd(ctx, logFile, "start", id)
}

// Kill builds `kill` of the init process, or of all processes.
func (r *Runtime) Kill(ctx context.Context, id string, sig int, all bool, logFile string) *exec.Cmd {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	return r.cmd(ctx, logFile, append(args, id, strconv.Itoa(sig))...)
}

// Delete builds `delete`.
func (r *Runtime) Delete(ctx context.Context, id string, force bool, logFile string) *exec.Cmd {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	return r.cmd(ctx, logFile, append(args, id)...)
}

// ExecOpts are the options of `exec`.
type ExecOpts struct {
	ProcessFile   string
	PidFile       string
	ConsoleSocket string
	LogFile       string
	// InternalPidFile receives the process's pid inside a gVisor sandbox
	// (runsc only), which KillPid signals.
	InternalPidFile string
}

// Exec builds a detached `exec`: the runtime starts the process and exits;
// the process is left to the caller (a subreaper) to wait for.
func (r *Runtime) Exec(ctx context.Context, id string, o ExecOpts) *exec.Cmd {
	args := []string{"exec", "--process", o.ProcessFile, "--pid-file", o.PidFile, "--detach"}
	if o.ConsoleSocket != "" {
		args = append(args, "--console-socket", o.ConsoleSocket)
	}
	if o.InternalPidFile != "" && r.Traits().Sandboxed {
		args = append(args, "--internal-pid-file", o.InternalPidFile)
	}
	return r.cmd(ctx, o.LogFile, append(args, id)...)
}

// KillPid builds a `kill` of one process of a gVisor container, by its pid
// inside the sandbox.
func (r *Runtime) KillPid(ctx context.Context, id string, pid, sig int, logFile string) *exec.Cmd {
	return r.cmd(ctx, logFile, "kill", "--pid", strconv.Itoa(pid), id, strconv.Itoa(sig))
}

// Update builds `update` from an OCI LinuxResources JSON file.
func (r *Runtime) Update(ctx context.Context, id, resourcesFile, logFile string) *exec.Cmd {
	return r.cmd(ctx, logFile, "update", "--resources", resourcesFile, id)
}

// LastError returns the last error the runtime logged to logFile (JSON
// lines), or "" when there is none.
func LastError(logFile string) string {
	data, err := os.ReadFile(logFile)
	if err != nil {
		return ""
	}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var entry struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") {
			last = strings.TrimSpace(entry.Msg)
		}
	}
	return last
}

// Stats is what `events --stats` reports of a container: for gVisor the
// only view of a container's use inside its sandbox.
type Stats struct {
	CPUNanos, MemUsage, MemLimit, Pids uint64
}

// Stats runs `events --stats`.
func (r *Runtime) Stats(ctx context.Context, id string) (*Stats, error) {
	out, err := r.Command(ctx, "events", "--stats", id).Output()
	if err != nil {
		return nil, err
	}
	var ev struct {
		Data struct {
			CPU struct {
				Usage struct {
					Total uint64 `json:"total"`
				} `json:"usage"`
			} `json:"cpu"`
			Memory struct {
				Usage struct {
					Usage uint64 `json:"usage"`
					Limit uint64 `json:"limit"`
				} `json:"usage"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
			} `json:"pids"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &ev); err != nil {
		return nil, err
	}
	d := ev.Data
	return &Stats{CPUNanos: d.CPU.Usage.Total, MemUsage: d.Memory.Usage.Usage, MemLimit: d.Memory.Usage.Limit, Pids: d.Pids.Current}, nil
}
