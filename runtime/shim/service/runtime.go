package service

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthrt/berth/runtime/oci"
)

// runtimeTimeout bounds one runtime command; none should come close.
const runtimeTimeout = 2 * time.Minute

// runRuntime runs the runtime command build returns (given a fresh file
// for the runtime's own log) and turns a failure into an error carrying
// the runtime's message. Stdio left nil are /dev/null, except stderr,
// which is captured when the caller did not set it.
func (s *Service) runRuntime(build func(logFile string) *exec.Cmd) error {
	lf, err := os.CreateTemp(s.opts.StateDir, "rt-*.log")
	if err != nil {
		return err
	}
	_ = lf.Close()
	defer func() { _ = os.Remove(lf.Name()) }()
	cmd := build(lf.Name())
	var stderr bytes.Buffer
	var errR, errW *os.File
	if cmd.Stderr == nil {
		if errR, errW, err = os.Pipe(); err != nil {
			return err
		}
		cmd.Stderr = errW
	}
	started, err := s.reaper.Start(cmd)
	if errW != nil {
		_ = errW.Close()
	}
	if err != nil {
		if errR != nil {
			_ = errR.Close()
		}
		return err
	}
	if errR != nil {
		_, _ = io.Copy(&stderr, io.LimitReader(errR, 64<<10))
		_ = errR.Close()
	}
	exit := started.Wait()
	if exit.Status == 0 {
		return nil
	}
	msg := oci.LastError(lf.Name())
	if msg == "" {
		msg = strings.TrimSpace(stderr.String())
	}
	if msg == "" {
		msg = "exit status " + strconv.Itoa(exit.Status)
	}
	sub := ""
	for _, a := range cmd.Args[1:] {
		if slices.Contains([]string{"create", "start", "kill", "delete", "exec", "update", "checkpoint", "restore", "pause", "resume"}, a) {
			sub = a
			break
		}
	}
	// The runtime's message, classified once (oci.Classify): callers ask
	// errors.Is, never the text.
	return fmt.Errorf("%s %s: %w", s.opts.Runtime.Kind, sub, oci.Classify(msg))
}

func runtimeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), runtimeTimeout)
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, b)
	}
	return pid, nil
}

// donatesAtStart reports runtimes that hand a container the stdio of
// `start` rather than of `create` (gVisor, for subcontainers).
func (s *Service) donatesAtStart() bool { return s.opts.Runtime.Traits().Sandboxed }

// waitsThroughRuntime reports containers whose exit the shim cannot reap:
// gVisor subcontainers live inside the sandbox process.
func (s *Service) waitsThroughRuntime(id string) bool {
	return s.opts.Runtime.Traits().Sandboxed && id != s.opts.PodID
}
