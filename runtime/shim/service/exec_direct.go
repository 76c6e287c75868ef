package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/direct"
)

// errUseRuntime: the process is to be started through the runtime's exec.
var errUseRuntime = errors.New("use the runtime's exec")

// directState is what a container's direct execs reuse.
type directState struct {
	plan   *direct.Plan
	mounts direct.CgroupMounts // the host's cgroup hierarchies, once read
	filter []byte              // the container's seccomp program, once read
}

// directPlan reads (once) how c's processes can be entered directly.
func (s *Service) directPlan(c *container) *direct.Plan {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.direct.plan != nil {
		return c.direct.plan
	}
	p := &direct.Plan{Unsupported: "not runc or crun"}
	if s.opts.Runtime.DirectExec && s.opts.Runtime.Traits().DirectExec {
		var spec specs.Spec
		data, err := os.ReadFile(filepath.Join(c.bundle, "config.json"))
		if err == nil {
			err = json.Unmarshal(data, &spec)
		}
		if err != nil {
			p = &direct.Plan{Unsupported: "spec: " + err.Error()}
		} else {
			plan := direct.PlanFor(&spec)
			p = &plan
		}
	} else if !s.opts.Runtime.DirectExec {
		p.Unsupported = "exec through the runtime configured"
	}
	c.direct.plan = p
	return p
}

// startDirect starts process (OCI JSON) in c without the runtime.
// errUseRuntime means the process cannot be started directly, nothing
// ran, and the runtime's exec is to be used.
// ctx covers the helper until the process started (and is the caller's
// to watch after).
func (s *Service) startDirect(ctx context.Context, c *container, process []byte, stdio execStdio) (*execProc, error) {
	if err := c.requireRunning(); err != nil {
		return nil, err
	}
	plan := s.directPlan(c)
	if plan.Unsupported != "" || stdio.console != nil || c.init == nil {
		return nil, errUseRuntime
	}
	var proc specs.Process
	if err := json.Unmarshal(process, &proc); err != nil {
		return nil, err
	}
	if why := direct.ProcessUnsupported(&proc); why != "" {
		return nil, errUseRuntime
	}
	// The helper joins the namespaces pinned at create, whatever the init
	// did since; an init that left them is refused all the same, as the
	// runtime's exec is.
	if err := c.verifyInit(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.direct.mounts == nil {
		// Once per container: parsing mountinfo costs more the more pods
		// a node runs.
		m, err := direct.HostCgroupMounts()
		if err != nil {
			c.mu.Unlock()
			return nil, fmt.Errorf("cgroup mounts: %w", err)
		}
		c.direct.mounts = m
	}
	req := &direct.Request{ContainerID: c.id, InitPid: c.pid, Namespaces: plan.Namespaces, Process: &proc,
		Seccomp: plan.Seccomp, SeccompFlags: plan.SeccompFlags, Filter: c.direct.filter, CgroupMounts: c.direct.mounts,
		DefaultHome: s.opts.Runtime.Traits().ExecHome}
	c.mu.Unlock()
	// The shim runs from a sealed copy of its binary (see shim.Spawn):
	// the helper, visible to the container once it joined it, is too.
	cmd, err := direct.Command("/proc/self/exe", req, c.init)
	if err != nil {
		if errors.Is(err, direct.ErrNamespacesChanged) {
			return nil, errExecRefused(err)
		}
		return nil, err
	}
	setStdio(cmd.Cmd, stdio.in, stdio.out, stdio.err)
	begun := time.Now()
	helper, err := s.reaper.Start(cmd.Cmd)
	cmd.Started()
	if err != nil {
		cmd.Close()
		s.opts.Log.Warn("direct exec helper did not start; using the runtime", "id", c.id, "err", err)
		return nil, errUseRuntime
	}
	p := &execProc{s: s, c: c, proc: cmd.Process, direct: true, exitc: make(chan int, 1), exited: make(chan struct{})}
	finish := func() {
		helper.Wait()
		cmd.Close()
	}
	if !c.track(p) {
		finish()
		return nil, c.requireRunning()
	}
	// Until the process started, the deadline ends the helper.
	stop := context.AfterFunc(ctx, p.kill)
	fail := func(err error) (*execProc, error) {
		stop()
		finish()
		p.untrack()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	// Once the helper ran, a failure is the exec's: the container may
	// have caused it (its memory limit killed the helper, it traces its
	// init) to push the exec to the runtime's, which joins whatever
	// namespaces the init is in by then.
	for {
		r, err := cmd.Next()
		switch {
		case err != nil:
			// Not wrapped: the helper's I/O error must not give the exec
			// a class (ttrpc would turn a wrapped ENOENT into NotFound).
			return fail(fmt.Errorf("direct exec: %v", err)) //nolint:errorlint // see above
		case len(r.Filter) > 0:
			c.mu.Lock()
			c.direct.filter = r.Filter
			c.mu.Unlock()
		case r.Error != "" && r.Refused:
			return fail(errExecRefused(errors.New(r.Error)))
		case r.Error != "" && r.Final && r.NotFound:
			return fail(errdefs.Errorf(oci.ErrExecutableNotFound, "%s", r.Error))
		case r.Error != "" && r.Final:
			return fail(errors.New(r.Error))
		case r.Error != "":
			return fail(fmt.Errorf("direct exec: %s", r.Error))
		case r.Pid > 0:
			stop()
			s.opts.Log.Debug("process started directly", "id", c.id, "pid", r.Pid, "after", time.Since(begun))
			p.pid = r.Pid
			go func() {
				code := 255 // the helper died: the exit is unknown
				if r, err := cmd.Next(); err == nil && r.Exit != nil {
					code = *r.Exit
				}
				finish()
				p.code = code
				p.untrack()
				close(p.exited)
			}()
			return p, nil
		}
	}
}
