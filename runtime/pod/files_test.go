package pod

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestPrivateDirTightensExisting: MkdirAll leaves an existing directory's
// mode alone; berth's directories are 0700 whatever an earlier version
// made them.
func TestPrivateDirTightensExisting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "containers")
	if err := os.Mkdir(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "new", "one")} {
		if err := PrivateDir(d); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, %v; want 0700", d, fi.Mode().Perm(), err)
		}
	}
}

// TestPodTraversable: the pod's root (and root) pass through; the
// directory stays root's and 0700 for everyone else, group members
// included.
func TestPodTraversable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: sets an ACL for another uid")
	}
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "bundle")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := podTraversable(dir, 165536); err != nil {
		t.Fatal(err)
	}
	inner := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	stat, err := exec.LookPath("stat")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid, gid uint32
		pass     bool
	}{
		{165536, 165536, true},
		{165536, 0, true},
		{65534, 165536, false}, // in the group the pod's gids start at
		{65534, 0, false},      // in root's group
		{65534, 65534, false},
	} {
		cmd := exec.Command(stat, inner)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tc.uid, Gid: tc.gid}}
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.pass {
			t.Errorf("uid %d gid %d through the bundle: %v %s, want passing %v", tc.uid, tc.gid, err, out, tc.pass)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		t.Errorf("the bundle belongs to %d:%d, want root's", st.Uid, st.Gid)
	}
}
