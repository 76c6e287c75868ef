package direct

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNamespacesChanged: the container's init is no longer in the
// namespaces the runtime created it in (it made new ones, e.g. a user and
// mount namespace where it can fake /proc files). An exec that joined its
// namespaces now would run in ones the container chose; it is refused.
var ErrNamespacesChanged = errors.New("the container's init left the namespaces it was created in; exec refused")

// ErrInitGone: the container's init exited.
var ErrInitGone = errors.New("the container's init is gone")

// nsKinds are the namespaces compared; a kernel without one of them has no
// file for it and it is skipped.
var nsKinds = []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"}

// Init pins a container's init as the runtime left it after create,
// before any of the container's code ran: a pidfd (so signals and identity
// checks never reach a reused pid) and a descriptor of each namespace it
// is in. Joining these descriptors enters the container's namespaces
// whatever its init did since; Verify says whether it is still in them.
type Init struct {
	Pid int

	mu    sync.Mutex // guards the descriptors against use while they close
	pidfd int
	ns    map[string]nsHandle
}

type nsHandle struct {
	f   *os.File
	dev uint64
	ino uint64
}

// PinInit pins pid, which must not have been reaped (the shim is its
// parent or subreaper, so it cannot be until the shim waits for it).
func PinInit(pid int) (_ *Init, err error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of the container's init: %w", err)
	}
	in := &Init{Pid: pid, pidfd: pidfd, ns: map[string]nsHandle{}}
	defer func() {
		if err != nil {
			in.Close()
		}
	}()
	for _, kind := range nsKinds {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // this kernel has no such namespace
		}
		if err != nil {
			return nil, fmt.Errorf("namespace %s of the container's init: %w", kind, err)
		}
		f := os.NewFile(uintptr(fd), kind)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			_ = f.Close()
			return nil, err
		}
		in.ns[kind] = nsHandle{f: f, dev: st.Dev, ino: st.Ino}
	}
	// Alive after the opens: the /proc files were this process's.
	if err := in.Alive(); err != nil {
		return nil, err
	}
	return in, nil
}

// Alive is nil while the pinned process has not been reaped (a zombie
// still holds its pid).
func (in *Init) Alive() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.alive()
}

func (in *Init) alive() error {
	if err := unix.PidfdSendSignal(in.pidfd, 0, nil, 0); err != nil {
		return fmt.Errorf("%w (pid %d): %w", ErrInitGone, in.Pid, err)
	}
	return nil
}

// Signal sends sig to the pinned process; ESRCH once it is gone.
func (in *Init) Signal(sig unix.Signal) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	return unix.PidfdSendSignal(in.pidfd, sig, nil, 0)
}

// Dup returns copies (the caller's to close) of the pidfd and of the
// pinned namespaces of kinds, in that order.
func (in *Init) Dup(kinds []string) (pidfd *os.File, ns []*os.File, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	defer func() {
		if err != nil {
			closeAll(append(ns, pidfd))
			pidfd, ns = nil, nil
		}
	}()
	if pidfd, err = dupFile(in.pidfd, "pidfd"); err != nil {
		return nil, nil, err
	}
	for _, kind := range kinds {
		h, ok := in.ns[kind]
		if !ok {
			return nil, nil, fmt.Errorf("%w: no %s namespace pinned", ErrNamespacesChanged, kind)
		}
		f, err := dupFile(int(h.f.Fd()), kind)
		if err != nil {
			return nil, nil, err
		}
		ns = append(ns, f)
	}
	return pidfd, ns, nil
}

func dupFile(fd int, name string) (*os.File, error) {
	d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(d), name), nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			_ = f.Close()
		}
	}
}

// Verify is nil when the init is alive and in every namespace it was
// pinned in (ErrNamespacesChanged otherwise).
func (in *Init) Verify() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	var changed []string
	for kind, h := range in.ns {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/%s", in.Pid, kind), &st); err != nil {
			if aerr := in.alive(); aerr != nil {
				return aerr
			}
			return fmt.Errorf("namespace %s of the container's init: %w", kind, err)
		}
		if st.Dev != h.dev || st.Ino != h.ino {
			changed = append(changed, kind)
		}
	}
	// Alive after the reads: they were of the pinned process.
	if err := in.alive(); err != nil {
		return err
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		return fmt.Errorf("%w (%s)", ErrNamespacesChanged, strings.Join(changed, ", "))
	}
	return nil
}

// ReleaseNamespaces closes the namespace descriptors (once the init
// exited: they would keep its mounts alive). The pidfd stays.
func (in *Init) ReleaseNamespaces() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for kind, h := range in.ns {
		_ = h.f.Close()
		delete(in.ns, kind)
	}
}

// Close releases everything.
func (in *Init) Close() {
	in.ReleaseNamespaces()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.pidfd >= 0 {
		_ = unix.Close(in.pidfd)
		in.pidfd = -1
	}
}
