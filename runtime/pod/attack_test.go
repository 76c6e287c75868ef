package pod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// TestAttackStatsWalkFollowsSwappedSymlink: a container swaps a directory
// of its writable layer for a symlink to a host directory while berth
// measures the layer; the walk must never go through it.
func TestAttackStatsWalkFollowsSwappedSymlink(t *testing.T) {
	base := t.TempDir()
	host := filepath.Join(base, "host")
	upper := filepath.Join(base, "upper")
	for _, d := range []string{host, upper} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(host, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Many directories, each swapped in turn: a walk meets one mid-swap.
	const dirs = 32
	for i := range dirs {
		if err := os.Mkdir(filepath.Join(upper, fmt.Sprint("d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	swapped := make(chan struct{})
	go func() {
		defer close(swapped)
		for i := 0; !stop.Load(); i = (i + 1) % dirs {
			d := filepath.Join(upper, fmt.Sprint("d", i))
			_ = os.Rename(d, d+".away")
			_ = os.Symlink(host, d)
			_ = os.Remove(d)
			_ = os.Rename(d+".away", d)
		}
	}()
	defer func() { stop.Store(true); <-swapped }()
	deadline := time.Now().Add(2 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		// The layer holds at most its directories, their ".away" names
		// and a symlink: far fewer than the host directory's 300 files.
		if _, inodes := diskUsage(upper); inodes > 3*dirs+1 {
			t.Fatalf("walk %d counted %d inodes: it went through a symlink into the host", n, inodes)
		}
	}
}

// TestAttackStatsWalkCrossesMounts: what is mounted inside a layer
// directory is not the layer's.
func TestAttackStatsWalkCrossesMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	upper := t.TempDir()
	mnt := filepath.Join(upper, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skip("cannot mount tmpfs:", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	for i := range 50 {
		if err := os.WriteFile(filepath.Join(mnt, fmt.Sprint(i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, inodes := diskUsage(upper); inodes > 2 {
		t.Errorf("counted %d inodes: the walk crossed into a mount", inodes)
	}
}

// TestAttackTargetPIDOfAnotherPod: a container asks to join the PID
// namespace of a container of another pod (whose processes it could then
// signal and trace); refused, as containerd does.
func TestAttackTargetPIDOfAnotherPod(t *testing.T) {
	e := newEnv(t)
	victim := e.createCtr(e.runPod("victim"), "app")
	attacker := ctrConfig("attacker")
	attacker.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{
		Pid: runtimeapi.NamespaceMode_TARGET, TargetId: victim,
	}}
	if _, err := e.m.CreateContainer(context.Background(), e.runPod("attacker"), attacker); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "another pod") {
		t.Errorf("joining another pod's PID namespace: %v, want InvalidArgument", err)
	}
}
