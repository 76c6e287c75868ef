package pod

import (
	"bytes"
	"fmt"
	"os"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/pinns"
)

// A pod's IPC namespace is joined by its containers, and CRIU dumps its
// SysV objects (shared memory, semaphores, message queues) with each of
// them; restoring a container recreates them in the new pod's namespace,
// and the next container's restore then fails on the objects that exist
// (CRIU: "Failed to prepare shm segment"). So a pod checkpoint of several
// containers is refused while the pod holds SysV objects; one container
// brings them back once. POSIX shared memory lives in /dev/shm, which the
// pod checkpoint copies.

// ipcNamespace is the pod's own IPC namespace; "" when it shares the
// node's.
func (m *Manager) ipcNamespace(sb *sandbox) string {
	rec := sb.snapshot()
	switch {
	case hostIPC(sb.cfg):
		return ""
	case rec.Pinned:
		return m.pinnedNS(rec.ID, pinns.IPC)
	case rec.PausePid > 0:
		return fmt.Sprintf("/proc/%d/ns/ipc", rec.PausePid)
	}
	return ""
}

// checkSysV refuses a checkpoint of n containers of sb whose IPC
// namespace holds SysV objects, when n > 1. The containers are not frozen
// yet: an object made between this check and the dump makes the restore
// of the second container fail instead.
func (m *Manager) checkSysV(sb *sandbox, n int) error {
	ns := m.ipcNamespace(sb)
	if n < 2 || ns == "" {
		return nil
	}
	var held []string
	err := m.ns.Enter(ns, pinns.IPC, func() error {
		for _, kind := range []string{"shm", "sem", "msg"} {
			// The thread's IPC namespace is the one /proc/sysvipc shows.
			data, err := os.ReadFile("/proc/sysvipc/" + kind)
			if err != nil {
				return err
			}
			if lines := bytes.Count(bytes.TrimSpace(data), []byte("\n")); lines > 0 {
				held = append(held, fmt.Sprintf("%d %s", lines, kind))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the pod's SysV IPC objects: %w", err)
	}
	if len(held) > 0 {
		return errdefs.FailedPrecondition("the pod's IPC namespace holds SysV IPC objects (%v), which CRIU would recreate with each container: checkpoint one container of it at a time", held)
	}
	return nil
}
