package shim

import (
	"errors"
	"os"
	"os/exec"

	"golang.org/x/sys/unix"
)

// reapWhenExited reaps cmd's process once it has exited and sends what
// cmd.Wait said. It waits for the exit on a pidfd through Go's poller
// rather than in cmd.Wait, whose waitid blocks an OS thread: berthd keeps
// one such watch per pod (250 pods were 250 threads, about 12 MB of
// berthd's memory). cmd.Wait itself runs once the process is a zombie,
// and returns at once. Without pidfds (kernel < 5.3) it is cmd.Wait alone.
func reapWhenExited(cmd *exec.Cmd) <-chan error {
	exited := make(chan error, 1)
	go func() {
		awaitExit(cmd.Process.Pid)
		exited <- cmd.Wait()
	}()
	return exited
}

// awaitExit returns once process pid (a child) has exited, without
// reaping it; at once when it cannot watch it.
func awaitExit(pid int) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	// Non-blocking (set here: PIDFD_NONBLOCK needs kernel 5.10), so that
	// os.NewFile registers it with the poller, which reports it readable
	// once the process has exited.
	if err := unix.SetNonblock(pidfd, true); err != nil {
		_ = unix.Close(pidfd)
		return
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	defer func() { _ = f.Close() }()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		// Running: no error and nothing to report, or EAGAIN.
		return info.Signo != 0 || err != nil && !errors.Is(err, unix.EAGAIN)
	})
}
