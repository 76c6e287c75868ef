package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// hostNobody is the unprivileged host user of the attacks.
const hostNobody = 65534

// runAsHostNobody runs the program at path with argv as uid and gid
// 65534 and returns its combined output; a start refused by the kernel
// (exec of a file nobody cannot reach) is err.
func runAsHostNobody(path string, argv ...string) (string, error) {
	return runAsHostUser(hostNobody, path, argv...)
}

// runAsHostUser is runAsHostNobody as uid and gid id.
func runAsHostUser(id uint32, path string, argv ...string) (string, error) {
	return runAsHostIDs(id, id, path, argv...)
}

// runAsHostIDs is runAsHostNobody as uid and gid.
func runAsHostIDs(uid, gid uint32, path string, argv ...string) (string, error) {
	cmd := &exec.Cmd{Path: path, Args: argv}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// requireHostUnreachable checks that nobody cannot stat path (which root
// can): EACCES, not "no such file".
func requireHostUnreachable(t *testing.T, path string) {
	t.Helper()
	requireUnreachableBy(t, hostNobody, path)
}

// requireUnreachableBy checks that uid and gid id cannot stat path.
func requireUnreachableBy(t *testing.T, id uint32, path string) {
	t.Helper()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("root cannot see %s either (the test is wrong): %v", path, err)
	}
	stat, err := exec.LookPath("stat")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runAsHostUser(id, stat, "stat", "-c", "%A %U", path)
	if err == nil {
		t.Errorf("uid %d reaches %s: %s", id, path, strings.TrimSpace(out))
		return
	}
	if !strings.Contains(out, "Permission denied") {
		t.Errorf("uid %d stat %s: %v %s, want Permission denied", id, path, err, out)
	}
}

// waitHostFile waits until root sees path (what a container wrote).
func waitHostFile(t *testing.T, path string) bool {
	t.Helper()
	for range 100 {
		if _, err := os.Lstat(path); err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// TestAttackHostUserReachesContainerLayers: a root container makes a
// setuid-root shell in its writable layer and writes to the pod's
// /dev/shm; a local unprivileged user must reach neither (nor anything
// else under berth's root and state directories), whatever the handler.
// The CVE-2021-41091 class: an overlay honours setuid bits, so a reachable
// setuid-root file is root for every local user.
func TestAttackHostUserReachesContainerLayers(t *testing.T) {
	for _, handler := range handlers {
		t.Run(handler, func(t *testing.T) {
			b := startBerthd(t, handler)
			// The test's root and state live in a 0700 temporary directory;
			// on a node they are under /var/lib and /run, open to everyone.
			base := filepath.Dir(b.Root)
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			pod, ctr := podWithContainer(t, b, dir, "suid",
				"cp /bin/busybox /suid-sh && chmod 4755 /suid-sh && echo secret > /dev/shm/secret && sleep 600")
			waitState(t, b, ctr, runtimeapi.ContainerState_CONTAINER_RUNNING)

			paths := []string{
				filepath.Join(b.Root, "meta.db"),
				filepath.Join(b.Root, "images", "layers"),
				filepath.Join(b.Root, "containers", ctr, "upper"),
				filepath.Join(b.State, "containers", ctr, "rootfs", "bin"),
				filepath.Join(b.State, "containers", ctr, "config.json"),
				filepath.Join(b.State, "pods", pod, "shm"),
				filepath.Join(b.State, "pods", pod, "hosts"),
			}
			// gVisor keeps a container's writes in its own overlay by
			// default: the files reach the host's layer only elsewhere.
			suid := filepath.Join(b.Root, "containers", ctr, "upper", "suid-sh")
			if waitHostFile(t, suid) {
				paths = append(paths, suid, filepath.Join(b.State, "containers", ctr, "rootfs", "suid-sh"))
				out, err := runAsHostNobody(suid, "cat", "/proc/self/status") // busybox: argv[0] is the applet
				if err == nil {
					t.Errorf("uid %d ran the container's setuid-root shell: %s", hostNobody, linesWithPrefix(out, "Uid:"))
				} else if !errors.Is(err, os.ErrPermission) {
					t.Errorf("exec of %s as uid %d: %v %s, want EACCES", suid, hostNobody, err, out)
				}
			} else if handler != "runsc" {
				t.Fatalf("the container's setuid file is not in its upper directory %s", suid)
			}
			if shm := filepath.Join(b.State, "pods", pod, "shm", "secret"); waitHostFile(t, shm) {
				paths = append(paths, shm)
			} else if handler != "runsc" {
				t.Fatalf("the container's /dev/shm file is not at %s", shm)
			}
			for _, p := range paths {
				requireHostUnreachable(t, p)
			}
		})
	}
}

func linesWithPrefix(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// TestAttackStaleDirectoryModes: berthd tightens the modes of directories
// an earlier berthd (or an admin) left open, since creating them again
// does not change an existing directory's mode.
func TestAttackStaleDirectoryModes(t *testing.T) {
	b := startBerthd(t, "runc")
	// Bundles are below the state directories: the root of a pod with a
	// user namespace passes through them (0711), nobody lists them.
	want := map[string]os.FileMode{
		b.Root: 0o700, filepath.Join(b.Root, "containers"): 0o700,
		b.State: 0o711, filepath.Join(b.State, "containers"): 0o711, filepath.Join(b.State, "pods"): 0o711,
	}
	b.Stop(t)
	for d := range want {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b.Restart(t)
	for d, mode := range want {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s is %v after a restart, want %v", d, fi.Mode().Perm(), mode)
		}
	}
}
