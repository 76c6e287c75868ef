package pinns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestPinUser pins a user namespace with a network and a UTS namespace
// it owns, and checks the mappings and the ownership on the host.
func TestPinUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces and mounts")
	}
	dir := t.TempDir()
	u := UserNS{
		Path:  filepath.Join(dir, "user"),
		UIDs:  []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
		GIDs:  []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 65536}},
		Owned: map[Kind]string{Net: filepath.Join(dir, "net"), UTS: filepath.Join(dir, "uts")},
	}
	if err := PinUser(u); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{u.Path, u.Owned[Net], u.Owned[UTS]} {
		defer Remove(p)
	}
	userFd, err := unix.Open(u.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(userFd)
	for _, k := range []Kind{Net, UTS} {
		fd, err := unix.Open(u.Owned[k], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		owner, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		var a, b unix.Stat_t
		_ = unix.Fstat(owner, &a)
		_ = unix.Fstat(userFd, &b)
		unix.Close(owner)
		if a.Ino != b.Ino {
			t.Errorf("%s namespace is owned by user namespace %d, want the pinned one %d", k, a.Ino, b.Ino)
		}
	}
	// The pinned namespace's maps, as a process joining it sees them.
	err = Enter(u.Owned[UTS], UTS, func() error { return unix.Sethostname([]byte("in-userns")) })
	if err != nil {
		t.Fatalf("host root could not set up a namespace the pod's user namespace owns: %v", err)
	}
	if err := Enter(u.Path, User, func() error { return nil }); err == nil {
		t.Error("Enter of a user namespace from a thread succeeded")
	}
	if err := PinUser(UserNS{Path: filepath.Join(dir, "nomap")}); err == nil || !strings.Contains(err.Error(), "mappings") {
		t.Errorf("PinUser without mappings: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nomap")); !os.IsNotExist(err) {
		t.Errorf("failed PinUser left its file: %v", err)
	}
}
