// Package pinns creates namespaces that need no process to live: a thread
// unshares the namespace, sets it up, and a bind mount of its nsfs file
// keeps it. Pods without a sandbox container hold their network, IPC and
// UTS namespaces this way (CRI-O's pinns does the same).
package pinns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
)

// Kind is a namespace type that can be pinned.
type Kind struct {
	flag int
	name string // as in /proc/<pid>/ns/
}

// The kinds a pod pins.
var (
	Net = Kind{unix.CLONE_NEWNET, "net"}
	IPC = Kind{unix.CLONE_NEWIPC, "ipc"}
	UTS = Kind{unix.CLONE_NEWUTS, "uts"}
)

func (k Kind) String() string { return k.name }

// Pin creates a namespace of kind pinned at path (a new file), after
// running setup inside it. setup runs on the thread that made the
// namespace; that thread is never given back to the Go scheduler (its
// goroutine exits locked and the thread ends), so no other goroutine ever
// runs in the namespace.
func Pin(path string, kind Kind, setup func() error) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create %s namespace file: %w", kind, err)
	}
	f.Close()
	defer func() {
		if err != nil {
			_ = Remove(path)
		}
	}()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(kind.flag); err != nil {
			errc <- fmt.Errorf("unshare %s namespace: %w", kind, err)
			return
		}
		if setup != nil {
			if err := setup(); err != nil {
				errc <- err
				return
			}
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/%s", unix.Gettid(), kind.name)
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("pin %s namespace: %w", kind, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// Remove unpins the namespace at path and removes the file; a missing one
// is not an error.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// SysctlKind is the namespace a sysctl belongs to; false for one that is
// not namespaced (and so cannot be a pod's).
func SysctlKind(name string) (Kind, bool) {
	switch {
	case strings.HasPrefix(name, "net."):
		return Net, true
	case name == "kernel.sem", strings.HasPrefix(name, "kernel.shm"), strings.HasPrefix(name, "kernel.msg"),
		strings.HasPrefix(name, "fs.mqueue."):
		return IPC, true
	case name == "kernel.hostname", name == "kernel.domainname":
		return UTS, true
	}
	return Kind{}, false
}

// Sysctls splits a pod's sysctls by namespace; a sysctl of no namespace
// is invalid.
func Sysctls(all map[string]string) (map[Kind]map[string]string, error) {
	out := map[Kind]map[string]string{}
	for name, v := range all {
		k, ok := SysctlKind(name)
		if !ok {
			return nil, errdefs.InvalidArgument("sysctl %q is not namespaced: a pod cannot set it", name)
		}
		if out[k] == nil {
			out[k] = map[string]string{}
		}
		out[k][name] = v
	}
	return out, nil
}

// WriteSysctls sets sysctls in the calling thread's namespaces (call it
// from a setup function).
func WriteSysctls(sysctls map[string]string) error {
	for name, v := range sysctls {
		// The kubelet's form: dots separate, a slash stands for a dot
		// inside a name (net.ipv4.conf.eth0/100.rp_filter).
		p := filepath.Join("/proc/sys", strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, name))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return errdefs.InvalidArgument("sysctl %s=%s: %v", name, v, err)
		}
	}
	return nil
}
