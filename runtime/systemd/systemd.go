// Package systemd talks to systemd over D-Bus for the systemd cgroup
// driver: it stops the slices berth names for pods the kubelet gave no
// cgroup parent, as the kubelet stops the pod slices it makes. The
// containers' scopes are the OCI runtime's (--systemd-cgroup): it starts
// them at create and stops them at delete.
package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/berthrt/berth/runtime/cgroups"
)

// Booted reports whether systemd is this host's init (sd_booted's test).
func Booted() bool {
	fi, err := os.Lstat("/run/systemd/system")
	return err == nil && fi.IsDir()
}

// Manager is a lazily opened connection to systemd, reopened when it
// breaks (a restarted dbus-daemon).
type Manager struct {
	// CgroupRoot is where the slices' cgroups are read ("" is
	// /sys/fs/cgroup, a cgroup v2 mount).
	CgroupRoot string

	mu   sync.Mutex
	conn *sdbus.Conn
	// dial connects (tests replace it); nil is the system bus, or
	// systemd's private socket.
	dial func(context.Context) (*sdbus.Conn, error)
}

func (m *Manager) connect(ctx context.Context) (*sdbus.Conn, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.conn != nil && m.conn.Connected() {
		return m.conn, nil
	}
	if m.conn != nil {
		m.conn.Close()
		m.conn = nil
	}
	// The system bus, or systemd's private socket when no dbus-daemon
	// runs (root only), as runc connects. Not with the caller's
	// context: the connection lives as long as it, and is shared; a
	// request's context, cancelled when the request ends, closed it
	// under the other requests using it (critest's concurrent creates
	// failed with "use of closed network connection"). Each call is
	// bounded by its caller's context instead.
	dial := m.dial
	if dial == nil {
		dial = sdbus.NewWithContext
	}
	c, err := dial(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("connect to systemd: %w", err)
	}
	m.conn = c
	return c, nil
}

// Version is the running systemd's version: a connection that works.
func (m *Manager) Version(ctx context.Context) (string, error) {
	c, err := m.connect(ctx)
	if err != nil {
		return "", err
	}
	p, err := c.GetManagerProperty("Version")
	if err != nil {
		return "", err
	}
	return strings.Trim(p, `"`), nil
}

// ErrPopulated is returned for a slice that still holds processes.
var ErrPopulated = errors.New("slice still holds processes")

// StopSlice stops the slice name (a pod's, "berth-<id>.slice") and waits
// until systemd has removed its cgroup. A slice systemd does not know
// (no container of the pod ever ran) is fine. One that still holds
// processes is left alone: stopping it would kill them, and a pod is
// removed only once its containers are gone.
func (m *Manager) StopSlice(ctx context.Context, name string) error {
	if !strings.HasSuffix(name, ".slice") || strings.ContainsAny(name, "/:") {
		return fmt.Errorf("not a slice name: %q", name)
	}
	if populated(filepath.Join(m.cgroupRoot(), cgroups.ExpandSlice(name))) {
		return fmt.Errorf("stop %s: %w", name, ErrPopulated)
	}
	c, err := m.connect(ctx)
	if err != nil {
		return err
	}
	done := make(chan string, 1)
	if _, err := c.StopUnitContext(ctx, name, "replace", done); err != nil {
		var derr dbus.Error
		if errors.As(err, &derr) && derr.Name == "org.freedesktop.systemd1.NoSuchUnit" {
			return nil
		}
		return fmt.Errorf("stop %s: %w", name, err)
	}
	select {
	case res := <-done:
		if res != "done" {
			return fmt.Errorf("stop %s: job %s", name, res)
		}
	case <-ctx.Done():
		return fmt.Errorf("stop %s: %w", name, ctx.Err())
	}
	// A slice does not fail, but one that did would stay listed.
	_ = c.ResetFailedUnitContext(ctx, name)
	return nil
}

func (m *Manager) cgroupRoot() string {
	if m.CgroupRoot == "" {
		return "/sys/fs/cgroup"
	}
	return m.CgroupRoot
}

// populated reads cgroup v2's cgroup.events: whether any process is in
// the cgroup or below. A cgroup that does not exist holds none.
func populated(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if line == "populated 1" {
			return true
		}
	}
	return false
}
