package service

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// consoleSocket receives a terminal's master from the runtime
// (--console-socket).
type consoleSocket struct {
	dir, path string
	l         *net.UnixListener
}

func newConsoleSocket() (*consoleSocket, error) {
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "berth-tty-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &consoleSocket{dir: dir, path: path, l: l}, nil
}

func (c *consoleSocket) receive(timeout time.Duration) (*os.File, error) {
	_ = c.l.SetDeadline(time.Now().Add(timeout))
	conn, err := c.l.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	oob := make([]byte, unix.CmsgSpace(4))
	buf := make([]byte, 4096)
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("no terminal received: %w", err)
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("no terminal received: %d control messages", len(msgs))
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return nil, fmt.Errorf("no terminal received: %w", err)
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return nil, fmt.Errorf("no terminal received: %d descriptors", len(fds))
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

func (c *consoleSocket) Close() {
	_ = c.l.Close()
	_ = os.RemoveAll(c.dir)
}
