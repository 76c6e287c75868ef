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
	"regexp"
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
	if err := newPinFile(path); err != nil {
		return fmt.Errorf("create %s namespace file: %w", kind, err)
	}
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

// newPinFile makes the empty file a namespace is bound to.
func newPinFile(path string) error {
	// Only root may enter the directories of berth's namespace files.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444) //nolint:gosec // an empty bind-mount target in a 0700 directory, never written
	if err != nil {
		return err
	}
	return f.Close()
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

// sysctlName is the kubelet's pattern of a sysctl name (IsValidSysctlName
// in k8s.io/kubernetes pkg/apis/core/validation): segments of lower-case
// letters, digits, '-' and '_', separated by '.' or '/'. It leaves no room
// for an empty, "." or ".." path component.
var sysctlName = regexp.MustCompile(`^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$`)

// maxSysctlName is the kubelet's limit on a sysctl name's length.
const maxSysctlName = 253

// NormalizeSysctl checks a sysctl name as the kubelet does and returns it
// in dot form: "net/ipv4/conf/eth0.100/rp_filter" (slashes separate) is
// "net.ipv4.conf.eth0/100.rp_filter" (a slash stands for a dot inside a
// name).
func NormalizeSysctl(name string) (string, error) {
	if len(name) > maxSysctlName || !sysctlName.MatchString(name) {
		return "", errdefs.InvalidArgument("sysctl name %q is invalid: want at most %d characters matching %s", name, maxSysctlName, sysctlName)
	}
	if i := strings.IndexAny(name, "./"); i >= 0 && name[i] == '/' {
		name = swapSeparators(name)
	}
	return name, nil
}

func swapSeparators(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, s)
}

// Sysctls checks a pod's sysctl names, normalises them and splits them by
// namespace; a sysctl of no namespace is invalid.
func Sysctls(all map[string]string) (map[Kind]map[string]string, error) {
	out := map[Kind]map[string]string{}
	for raw, v := range all {
		name, err := NormalizeSysctl(raw)
		if err != nil {
			return nil, err
		}
		k, ok := SysctlKind(name)
		if !ok {
			return nil, errdefs.InvalidArgument("sysctl %q is not namespaced: a pod cannot set it", raw)
		}
		if out[k] == nil {
			out[k] = map[string]string{}
		}
		if _, dup := out[k][name]; dup {
			return nil, errdefs.InvalidArgument("sysctl %q is given twice (in dot and slash form)", name)
		}
		out[k][name] = v
	}
	return out, nil
}

// sysctlPath is the path of a (normalised) sysctl relative to /proc/sys,
// refused if any component is empty, "." or "..".
func sysctlPath(name string) (string, error) {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		p = strings.ReplaceAll(p, "/", ".")
		if p == "" || p == "." || p == ".." {
			return "", errdefs.InvalidArgument("sysctl name %q has an empty, \".\" or \"..\" component", name)
		}
		parts[i] = p
	}
	return strings.Join(parts, "/"), nil
}

// WriteSysctls sets sysctls in the calling thread's namespaces (call it
// from a setup function). Each is written relative to /proc/sys and
// cannot leave it.
func WriteSysctls(sysctls map[string]string) error {
	if len(sysctls) == 0 {
		return nil
	}
	// Opened here: /proc/sys/net is the opening thread's network namespace.
	root, err := os.OpenRoot(procSys)
	if err != nil {
		return fmt.Errorf("open %s: %w", procSys, err)
	}
	defer func() { _ = root.Close() }()
	for raw, v := range sysctls {
		if err := writeSysctl(root, raw, v); err != nil {
			return err
		}
	}
	return nil
}

// procSys is where sysctls are; tests point it elsewhere.
var procSys = "/proc/sys"

func writeSysctl(root *os.Root, raw, v string) error {
	name, err := NormalizeSysctl(raw)
	if err != nil {
		return err
	}
	rel, err := sysctlPath(name)
	if err != nil {
		return err
	}
	f, err := root.OpenFile(rel, os.O_WRONLY, 0)
	if err != nil {
		return errdefs.InvalidArgument("sysctl %s=%s: %v", raw, v, err)
	}
	_, werr := f.WriteString(v)
	if err := errors.Join(werr, f.Close()); err != nil {
		return errdefs.InvalidArgument("sysctl %s=%s: %v", raw, v, err)
	}
	return nil
}
