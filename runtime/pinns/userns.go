package pinns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// User is a user namespace. It cannot be unshared by one thread of a
// multi-threaded process, so PinUser makes it in a child process.
var User = Kind{unix.CLONE_NEWUSER, "user"}

// UserNS is a user namespace to pin with the namespaces that live in it.
type UserNS struct {
	// Path pins the user namespace.
	Path       string
	UIDs, GIDs []specs.LinuxIDMapping
	// Owned are the namespaces created inside it (owned by it, so that
	// root in the pod has its capabilities over them), by pin path.
	Owned map[Kind]string
}

// PinUser creates a user namespace with the mappings and the owned
// namespaces in it, and pins them all. The namespaces come from a child
// cloned into them, stopped (traced) at its exec before running a single
// instruction, and killed once they are pinned. Nothing is set up inside
// them: use Enter.
func PinUser(u UserNS) (err error) {
	if len(u.UIDs) == 0 || len(u.GIDs) == 0 {
		return errors.New("user namespace without uid or gid mappings")
	}
	paths := map[Kind]string{User: u.Path}
	flags := uintptr(unix.CLONE_NEWUSER)
	for k, p := range u.Owned {
		if k == User {
			return errors.New("a user namespace cannot own another here")
		}
		paths[k] = p
		flags |= uintptr(k.flag)
	}
	var made []string
	defer func() {
		if err != nil {
			for _, p := range made {
				_ = Remove(p)
			}
		}
	}()
	for _, p := range paths {
		if err := newPinFile(p); err != nil {
			return err
		}
		made = append(made, p)
	}
	// The tracer is this thread; it stays ours until the child is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := &exec.Cmd{
		Path: "/proc/self/exe",
		Args: []string{"berth-pinns"},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  flags,
			UidMappings: sysIDMaps(u.UIDs),
			GidMappings: sysIDMaps(u.GIDs),
			// Containers in the pod set their supplementary groups.
			GidMappingsEnableSetgroups: true,
			Ptrace:                     true,
			Pdeathsig:                  unix.SIGKILL,
		},
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("create user namespace: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	}()
	for k, p := range paths {
		src := fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, k.name)
		if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin %s namespace: %w", k, err)
		}
	}
	return nil
}

func sysIDMaps(in []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(in))
	for i, m := range in {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// Enter runs fn on a thread that joined the namespace pinned at path.
// The thread is never given back to the Go scheduler (as in Pin).
func Enter(path string, kind Kind, fn func() error) error {
	if kind == User || kind.flag == unix.CLONE_NEWNS {
		// A multi-threaded process cannot join either.
		return fmt.Errorf("cannot enter a %s namespace from a thread", kind)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(path) //nolint:gosec // a namespace file berth pinned
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(f.Fd()), kind.flag)
		_ = f.Close()
		if err != nil {
			errc <- fmt.Errorf("enter %s namespace %s: %w", kind, path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
