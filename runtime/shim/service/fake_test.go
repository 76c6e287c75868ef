package service

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The test binary doubles as a fake OCI runtime (BERTH_FAKE_RUNTIME=1)
// with runc's command line, and as the fake container init that waits
// for `start` (BERTH_FAKE_INIT=<bundle>). Container processes are real
// /bin/sh processes, so the shim reaps, signals and logs real children.

type fakeState struct {
	Bundle string `json:"bundle"`
	Pid    int    `json:"pid"`
}

func fakeInit(bundle string, args []string) {
	for {
		if _, err := os.Stat(filepath.Join(bundle, "started")); err == nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	err := syscall.Exec(args[0], args, os.Environ())
	fmt.Fprintln(os.Stderr, "fake init exec:", err)
	os.Exit(127)
}

// fakeRuntime implements create, start, kill, delete, exec and update.
func fakeRuntime(args []string) int {
	var root, logFile string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "--root":
			root, args = args[1], args[2:]
		case "--log":
			logFile, args = args[1], args[2:]
		case "--log-format":
			args = args[2:]
		default:
			args = args[1:]
		}
	}
	fail := func(format string, a ...any) int {
		msg := fmt.Sprintf(format, a...)
		if logFile != "" {
			line, _ := json.Marshal(map[string]string{"level": "error", "msg": msg})
			_ = os.WriteFile(logFile, append(line, '\n'), 0o600)
		}
		fmt.Fprintln(os.Stderr, msg)
		return 1
	}
	if len(args) == 0 {
		return fail("no command")
	}
	cmd, args := args[0], args[1:]
	flags := map[string]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--bundle", "--pid-file", "--console-socket", "--process", "--resources":
			flags[a] = args[i+1]
			i++
		default:
			if strings.HasPrefix(a, "--") {
				flags[a] = "true"
			} else {
				pos = append(pos, a)
			}
		}
	}
	state := func(id string) (fakeState, error) {
		var st fakeState
		b, err := os.ReadFile(filepath.Join(root, id))
		if err != nil {
			return st, fmt.Errorf("container %q does not exist", id)
		}
		return st, json.Unmarshal(b, &st)
	}
	switch cmd {
	case "create":
		id := pos[0]
		raw, err := os.ReadFile(filepath.Join(flags["--bundle"], "config.json"))
		if err != nil {
			return fail("read spec: %v", err)
		}
		var s specs.Spec
		if err := json.Unmarshal(raw, &s); err != nil {
			return fail("parse spec: %v", err)
		}
		if s.Process.Args[0] == "fail-create" {
			return fail("cannot create: told to fail")
		}
		init := exec.Command(os.Args[0])
		init.Env = append(os.Environ(), "BERTH_FAKE_INIT="+flags["--bundle"], "BERTH_FAKE_ARGS="+strings.Join(s.Process.Args, "\x1f"))
		init.Stdin, init.Stdout, init.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := init.Start(); err != nil {
			return fail("start init: %v", err)
		}
		pid := init.Process.Pid
		_ = os.WriteFile(flags["--pid-file"], []byte(strconv.Itoa(pid)), 0o600)
		st, _ := json.Marshal(fakeState{Bundle: flags["--bundle"], Pid: pid})
		_ = os.WriteFile(filepath.Join(root, id), st, 0o600)
	case "start":
		st, err := state(pos[0])
		if err != nil {
			return fail("%v", err)
		}
		_ = os.WriteFile(filepath.Join(st.Bundle, "started"), nil, 0o600)
	case "kill":
		st, err := state(pos[0])
		if err != nil {
			return fail("%v", err)
		}
		sig, _ := strconv.Atoi(pos[1])
		if err := syscall.Kill(st.Pid, syscall.Signal(sig)); err != nil {
			return fail("container not running: %v", err)
		}
	case "delete":
		st, err := state(pos[0])
		if err != nil {
			return fail("%v", err)
		}
		if flags["--force"] != "" {
			_ = syscall.Kill(st.Pid, syscall.SIGKILL)
		}
		_ = os.Remove(filepath.Join(root, pos[0]))
	case "exec":
		if _, err := state(pos[0]); err != nil {
			return fail("%v", err)
		}
		raw, err := os.ReadFile(flags["--process"])
		if err != nil {
			return fail("read process: %v", err)
		}
		var p specs.Process
		if err := json.Unmarshal(raw, &p); err != nil {
			return fail("parse process: %v", err)
		}
		c := exec.Command(p.Args[0], p.Args[1:]...)
		c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := c.Start(); err != nil {
			return fail("exec failed: %v", err)
		}
		_ = os.WriteFile(flags["--pid-file"], []byte(strconv.Itoa(c.Process.Pid)), 0o600)
	case "update":
	default:
		return fail("unknown command %s", cmd)
	}
	return 0
}
