package service

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/checkpoint"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/direct"
)

// A container created with restore options is only registered at Create
// (its stdio and log ready, status CREATED, no process, nothing in the
// runtime); Start runs `restore` instead of releasing a created init, so
// that the kubelet's Create then Start brings it back as it does any
// container, and a container never started is removed like any other.

// checkRestore refuses restore options the shim cannot honour.
func (s *Service) checkRestore(req *shimv1.CreateRequest) error {
	ro := req.Restore
	t := s.opts.Runtime.Traits()
	switch {
	case ro == nil:
		return nil
	case !t.Checkpoint && !t.SandboxCheckpoint:
		return errdefs.Errorf(errdefs.ErrUnimplemented, "%s", s.opts.Runtime.Kind.CheckpointUnsupported())
	case req.Terminal:
		return errdefs.Errorf(errdefs.ErrFailedPrecondition, "a container with a terminal cannot be restored")
	case ro.ImagePath == "":
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "restore needs an image path")
	case ro.WorkPath == "" && !t.SandboxCheckpoint:
		// gVisor keeps no restore log of its own beside the image.
		return errdefs.Errorf(errdefs.ErrInvalidArgument, "restore needs a work path")
	}
	return nil
}

// restorePending reports a container created for a restore that has not
// been restored (yet).
func (c *container) restorePending() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.restore != nil && c.pid == 0 && c.status == shimv1.Status_STATUS_CREATED
}

func (s *Service) pendingRestore(c *container) *shimv1.ContainerState {
	c.mu.Lock()
	c.status = shimv1.Status_STATUS_CREATED
	c.createdAt = time.Now()
	c.mu.Unlock()
	s.opts.Log.Info("container created for restore", "id", c.id)
	return c.state()
}

// startRestore restores c from its CRIU images: `restore --detach` with
// the stdio prepared at Create, after which the restored init is the
// shim's child (it reparents to the shim, a subreaper, when the runtime
// exits) and is pinned and reaped as a created one would be.
func (s *Service) startRestore(c *container) (*shimv1.ContainerState, error) {
	if s.opts.Runtime.Traits().SandboxCheckpoint {
		return s.startSandboxRestore(c)
	}
	ro := c.restore
	pid, started, err := s.runRestore(c, ro.WorkPath, func(err error) error {
		return criuError(err, filepath.Join(ro.WorkPath, checkpoint.RestoreLog))
	})
	if err != nil {
		return nil, err
	}
	init, err := direct.PinInit(pid)
	if err == nil {
		if err = checkRestored(pid, c.bundle); err != nil {
			init.Close()
		}
	}
	if err != nil {
		s.forceDelete(c.id)
		c.mu.Lock()
		c.startedAt = time.Time{}
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Lock()
	c.pid, c.init, c.restore = pid, init, nil
	c.status = shimv1.Status_STATUS_RUNNING
	c.mu.Unlock()
	s.watchInit(c, pid, started)
	// The images are spent (the processes run from memory now); they are
	// as large as that memory. CRIU's restore.log stays beside them.
	if err := os.RemoveAll(ro.ImagePath); err != nil {
		s.opts.Log.Warn("remove spent checkpoint images", "id", c.id, "err", err)
	}
	s.opts.Log.Info("container restored", "id", c.id, "pid", pid)
	return c.state(), nil
}

// checkRestored holds a restored init to its spec. CRIU recreates
// namespaces, credentials and seccomp filters from the images, which came
// with the archive, not from berth: the init must be in the pod's joined
// namespaces, in new ones where the spec makes new ones (never the
// host's), in the host's user namespace where the spec has none, and no
// more privileged than the spec (bounding and effective capabilities,
// user, seccomp, no_new_privs). Pinning it, as create does, then keeps
// every exec in the namespaces checked here.
func checkRestored(pid int, bundle string) error {
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return err
	}
	if err := checkRestoredNamespaces(pid, &spec); err != nil {
		return err
	}
	return checkRestoredCreds(pid, &spec)
}

// procNS is the /proc/<pid>/ns name of each OCI namespace type.
var procNS = map[specs.LinuxNamespaceType]string{
	specs.PIDNamespace: "pid", specs.NetworkNamespace: "net", specs.MountNamespace: "mnt",
	specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.UserNamespace: "user",
	specs.CgroupNamespace: "cgroup",
}

func checkRestoredNamespaces(pid int, spec *specs.Spec) error {
	ino := func(p string) (uint64, error) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return 0, err
		}
		return st.Ino, nil
	}
	want := map[string]specs.LinuxNamespace{}
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if name, ok := procNS[ns.Type]; ok {
				want[name] = ns
			}
		}
	}
	// The time namespace is left out: CRIU may make one to keep the
	// restored monotonic clocks, which the spec does not list.
	for _, name := range procNS {
		got, err := ino(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
		if err != nil {
			continue // a kernel without this namespace
		}
		host, err := ino("/proc/self/ns/" + name)
		if err != nil {
			return err
		}
		ns, listed := want[name]
		switch {
		case listed && ns.Path != "":
			joined, err := ino(ns.Path)
			if err != nil {
				return err
			}
			if got != joined {
				return restoreRefused("the restored init is not in the pod's %s namespace", name)
			}
		case listed && got == host:
			return restoreRefused("the restored init is in the host's %s namespace, not a new one", name)
		case !listed && got != host:
			return restoreRefused("the restored init is in a %s namespace the spec does not make", name)
		}
	}
	return nil
}

func restoreRefused(format string, args ...any) error {
	return errdefs.Errorf(errdefs.ErrFailedPrecondition, "restore refused: "+format, args...)
}

// startSandboxRestore restores a container of a gVisor sandbox: `restore
// --detach` with the stdio prepared at Create. The sandbox container's
// restore makes the sandbox (its pid is the shim's child to reap, as
// after `create`) and hands it the image, which it has opened: the copy
// is removed then. Each other container's restore joins it (its exit
// then comes from `runsc wait`, as after `start`); the sandbox's kernel
// resumes when the last container of the image has joined. Nothing runs
// on the host from the image: the sandbox and its gofers are made from
// the bundles as at create, the image is read by the sandbox's kernel.
func (s *Service) startSandboxRestore(c *container) (*shimv1.ContainerState, error) {
	ro := c.restore
	// gVisor keeps no restore log of its own beside the image: no work path.
	pid, started, err := s.runRestore(c, "", func(err error) error {
		return fmt.Errorf("restore %s: %w", c.id, err)
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.pid, c.restore = pid, nil
	c.status = shimv1.Status_STATUS_RUNNING
	c.mu.Unlock()
	if s.waitsThroughRuntime(c.id) {
		go s.runtimeWait(c) //nolint:gosec // waits for the container's exit, which outlives the Start call
		s.opts.Log.Info("container restored", "id", c.id, "sandbox pid", pid)
		return c.state(), nil
	}
	s.watchInit(c, pid, started)
	if err := os.RemoveAll(ro.ImagePath); err != nil {
		s.opts.Log.Warn("remove the sandbox's checkpoint image", "id", c.id, "err", err)
	}
	s.opts.Log.Info("sandbox restored", "id", c.id, "pid", pid)
	return c.state(), nil
}

// runRestore runs the runtime's `restore --detach` of c (from the image
// of its RestoreOptions, with the stdio prepared at Create) and returns
// the restored init's pid and when the restore began (for exits reaped
// meanwhile). On failure the container is deleted and failed says what
// went wrong; c's start time is kept only on success.
func (s *Service) runRestore(c *container, workPath string, failed func(error) error) (pid int, started time.Time, err error) {
	pidFile := filepath.Join(c.bundle, "init.pid")
	_ = os.Remove(pidFile)
	ctx, cancel := runtimeCtx()
	defer cancel()
	c.mu.Lock()
	c.startedAt = time.Now()
	c.mu.Unlock()
	defer func() {
		if err != nil {
			c.mu.Lock()
			c.startedAt = time.Time{}
			c.mu.Unlock()
		}
	}()
	started = time.Now()
	err = s.runRuntime(func(logFile string) *exec.Cmd {
		cmd := s.opts.Runtime.Restore(ctx, c.id, oci.RestoreOpts{Bundle: c.bundle, PidFile: pidFile, ImagePath: c.restore.ImagePath, WorkPath: workPath, LogFile: logFile})
		in, out, errf := stdioOf(c.childIO)
		setStdio(cmd, in, out, errf)
		return cmd
	})
	c.closeChildIO()
	if err != nil {
		s.forceDelete(c.id)
		return 0, started, failed(err)
	}
	if pid, err = readPid(pidFile); err != nil {
		s.forceDelete(c.id)
		return 0, started, err
	}
	return pid, started, nil
}
