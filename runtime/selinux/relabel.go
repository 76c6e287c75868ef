// Package selinux labels host files for containers: what CRI's
// Mount.selinux_relabel asks, done as containerd does it, since the OCI
// runtime only labels the mounts it makes itself.
package selinux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
)

const xattr = "security.selinux"

// refused are the host's own trees: given a container's label they would
// be out of reach of the host's services (and, shared by every pod, of
// no use to isolate one).
var refused = map[string]bool{
	"/": true, "/bin": true, "/boot": true, "/dev": true, "/etc": true, "/etc/passwd": true,
	"/etc/shadow": true, "/etc/group": true, "/etc/pki": true, "/etc/selinux": true, "/home": true,
	"/lib": true, "/lib32": true, "/lib64": true, "/media": true, "/mnt": true, "/opt": true,
	"/proc": true, "/root": true, "/run": true, "/sbin": true, "/srv": true, "/sys": true,
	"/tmp": true, "/usr": true, "/var": true, "/var/lib": true, "/var/log": true, "/var/run": true,
}

// refusedTrees are refused with everything beneath them: kernel
// interfaces and the operating system's own files.
var refusedTrees = []string{"/proc", "/sys", "/usr", "/boot"}

// Check refuses a path that is never relabeled; also lists more such
// paths (berth's own directories).
func Check(path string, also ...string) error {
	p := filepath.Clean(path)
	if !filepath.IsAbs(p) {
		return errdefs.InvalidArgument("selinux_relabel of %s: not an absolute path", path)
	}
	bad := refused[p]
	for _, t := range refusedTrees {
		bad = bad || strings.HasPrefix(p, t+"/")
	}
	for _, a := range also {
		bad = bad || p == filepath.Clean(a)
	}
	if bad {
		return errdefs.InvalidArgument("selinux_relabel of %s is refused: it is one of the host's own directories", p)
	}
	return nil
}

// Relabel gives path, and everything beneath it, the SELinux label. It
// never follows a symbolic link: each entry is reached through its
// pinned parent directory, so a tree that changes while it is walked (a
// running container may share it) cannot lead the walk out of it. A
// filesystem without labels (ENOTSUP) is left as it is, as containerd
// does.
func Relabel(path, label string, also ...string) error {
	if err := Check(path, also...); err != nil {
		return err
	}
	if label == "" {
		return errors.New("selinux: empty label")
	}
	p := filepath.Clean(path)
	parent, err := unix.Open(filepath.Dir(p), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("selinux: relabel %s: %w", p, err)
	}
	defer func() { _ = unix.Close(parent) }()
	// Checked again where the parent really is: a link on the way may
	// have led elsewhere since the path was resolved.
	dir, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(parent))
	if err != nil {
		return fmt.Errorf("selinux: relabel %s: %w", p, err)
	}
	if err := Check(filepath.Join(dir, filepath.Base(p)), also...); err != nil {
		return err
	}
	if err := relabelAt(parent, filepath.Base(p), label); err != nil {
		return fmt.Errorf("selinux: relabel %s: %w", p, err)
	}
	return nil
}

// relabelAt labels name in dir, a directory's entries before the
// directory itself: an interrupted walk leaves the top unlabeled and is
// done again.
func relabelAt(dir int, name, label string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil // removed meanwhile
		}
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			// Replaced meanwhile: label what is there now, never
			// through it.
		case err != nil:
			return err
		default:
			if err := relabelEntries(fd, label); err != nil {
				return err
			}
		}
	}
	return setAt(dir, name, label)
}

func relabelEntries(fd int, label string) error {
	f := os.NewFile(uintptr(fd), "dir")
	defer func() { _ = f.Close() }()
	for {
		names, err := f.Readdirnames(256)
		for _, n := range names {
			if err := relabelAt(fd, n, label); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// setAt sets the label of name in dir, not following it if it is a
// link: /proc/self/fd/<dir> stands for the pinned directory, and the l*
// calls do not follow the last component.
func setAt(dir int, name, label string) error {
	p := "/proc/self/fd/" + strconv.Itoa(dir) + "/" + name
	cur := make([]byte, 256)
	if n, err := unix.Lgetxattr(p, xattr, cur); err == nil && string(bytes.TrimRight(cur[:n], "\x00")) == label {
		return nil
	}
	err := unix.Lsetxattr(p, xattr, []byte(label), 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	return err
}

// Label is the SELinux label of path itself (a link's own), "" when it
// has none.
func Label(path string) string {
	b := make([]byte, 256)
	n, err := unix.Lgetxattr(path, xattr, b)
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(b[:n]), "\x00")
}
