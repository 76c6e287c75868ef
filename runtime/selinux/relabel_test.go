package selinux

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestCheck(t *testing.T) {
	for p, ok := range map[string]bool{
		"/":                                   false,
		"/etc":                                false,
		"/etc/":                               false,
		"/usr":                                false,
		"/usr/local/share":                    false,
		"/home":                               false,
		"/var/lib":                            false,
		"/proc/1/root":                        false,
		"/sys/fs/cgroup":                      false,
		"/var/lib/berth":                      false, // listed by the caller
		"relative/dir":                        false,
		"/var/lib/kubelet/pods/u/volumes/v":   true,
		"/etc/kubernetes/data":                true,
		"/home/user/project":                  true,
		"/var/lib/berth/containers/x/volumes": true,
	} {
		err := Check(p, "/var/lib/berth")
		if ok != (err == nil) {
			t.Errorf("Check(%q) = %v, want allowed=%v", p, err, ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Check(%q) = %v, want InvalidArgument", p, err)
		}
	}
}

func label(t *testing.T, p string) string {
	t.Helper()
	return Label(p)
}

// TestRelabel labels a tree for real: security.* attributes need root
// and a filesystem that keeps them (without SELinux the kernel stores
// them as given).
func TestRelabel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := t.TempDir()
	if err := unix.Lsetxattr(root, xattr, []byte("probe"), 0); err != nil {
		t.Skipf("no security.* attributes here: %v", err)
	}
	vol, outside := filepath.Join(root, "vol"), filepath.Join(root, "outside")
	for _, d := range []string{filepath.Join(vol, "a/b"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(vol, "a/b/file"), filepath.Join(vol, "top"), filepath.Join(outside, "secret")} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Links out of the tree: to a directory and to a file.
	if err := os.Symlink(outside, filepath.Join(vol, "a/dirlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(vol, "filelink")); err != nil {
		t.Fatal(err)
	}
	const l = "system_u:object_r:container_file_t:s0:c1,c2"
	for range 2 { // the second run finds everything labeled
		if err := Relabel(vol, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{vol, filepath.Join(vol, "a"), filepath.Join(vol, "a/b"), filepath.Join(vol, "a/b/file"), filepath.Join(vol, "top")} {
		if got := label(t, p); got != l {
			t.Errorf("%s: label %q, want %q", p, got, l)
		}
	}
	for _, p := range []string{outside, filepath.Join(outside, "secret")} {
		if got := label(t, p); got == l {
			t.Errorf("%s, outside the tree, was labeled through a link", p)
		}
	}
	if err := Relabel(filepath.Join(root, "missing"), l); err != nil {
		t.Errorf("a missing path: %v", err)
	}
}

// TestRelabelRefusesThroughLinks: the refusal holds for where a path
// really leads, not for how it is spelled.
func TestRelabelRefusesThroughLinks(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/usr", filepath.Join(dir, "usr")); err != nil {
		t.Fatal(err)
	}
	err := Relabel(filepath.Join(dir, "usr", "share"), "l")
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("relabel of /usr/share through a link: %v, want InvalidArgument", err)
	}
	if err := Relabel("/etc", "l"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "/etc") {
		t.Errorf("relabel of /etc: %v", err)
	}
}
