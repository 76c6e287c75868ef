package pod

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"
	remotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/shim/frame"
)

// runningContainer returns a running container and its pod's shim.
func (m *Manager) runningContainer(id string) (*container, shimv1.ShimServiceClient, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, nil, err
	}
	rec := c.snapshot()
	if rec.State != stateRunning {
		return nil, nil, errdefs.FailedPrecondition("container %s is not running", rec.ID)
	}
	client, err := m.podShim(rec.SandboxID)
	if err != nil {
		return nil, nil, err
	}
	return c, client, nil
}

// podShim is the client of pod id's shim.
func (m *Manager) podShim(id string) (shimv1.ShimServiceClient, error) {
	sb, err := m.getSandbox(id)
	if err != nil {
		return nil, err
	}
	return sb.client()
}

// execProcess is c's process with cmd as its arguments, as OCI JSON.
func execProcess(c *container, cmd []string, tty bool, size *specs.Box) ([]byte, error) {
	p := *c.process
	p.Args, p.Terminal, p.ConsoleSize = cmd, tty, size
	return json.Marshal(&p)
}

// CheckStreamable tells whether Exec or Attach can run in container id,
// before a streaming URL is handed out for it.
func (m *Manager) CheckStreamable(id string) error {
	_, _, err := m.runningContainer(id)
	return err
}

// CheckPortForward tells whether pod id can take port-forward streams.
func (m *Manager) CheckPortForward(id string) error {
	sb, err := m.getSandbox(id)
	if err != nil {
		return err
	}
	if sb.snapshot().State != stateReady {
		return errdefs.FailedPrecondition("pod sandbox %s is not ready", id)
	}
	return nil
}

// ExecStream runs cmd in a container with the client's streams; a non-zero
// exit is reported as an exec.ExitError, which the streaming server turns
// into the exit code the client sees.
func (m *Manager) ExecStream(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	if len(cmd) == 0 {
		return errdefs.InvalidArgument("exec needs a command")
	}
	c, client, err := m.runningContainer(id)
	if err != nil {
		return err
	}
	var size *specs.Box
	if tty {
		size = firstSize(ctx, resize)
	}
	raw, err := execProcess(c, cmd, tty, size)
	if err != nil {
		return err
	}
	resp, err := client.Exec(ctx, &shimv1.ExecRequest{Id: c.rec.ID, Process: raw, Stdin: in != nil})
	if err != nil {
		return err
	}
	code, err := relaySession(ctx, resp.Socket, in, out, errw, resize)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command %q exited with %d", cmd, code), Code: int(code)}
	}
	return nil
}

// firstSize waits briefly for the size a client sends as soon as its
// stream opens, so that the process starts on a terminal of that size: a
// resize that comes after the start can come after the process has
// read its size (a 0x0 terminal). Later sizes go as resizes.
func firstSize(ctx context.Context, resize <-chan remotecommand.TerminalSize) *specs.Box {
	if resize == nil {
		return nil
	}
	t := time.NewTimer(200 * time.Millisecond)
	defer t.Stop()
	select {
	case sz, ok := <-resize:
		if ok && sz.Width > 0 && sz.Height > 0 {
			return &specs.Box{Width: uint(sz.Width), Height: uint(sz.Height)}
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return nil
}

// AttachStream connects the client's streams to a running container's.
func (m *Manager) AttachStream(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, client, err := m.runningContainer(id)
	if err != nil {
		return err
	}
	resp, err := client.Attach(ctx, &shimv1.AttachRequest{Id: c.rec.ID, Stdin: in != nil})
	if err != nil {
		return err
	}
	_, err = relaySession(ctx, resp.Socket, in, out, errw, resize)
	return err
}

// relaySession connects to a shim session socket and moves the client's
// input, resizes and output until the shim reports the exit code.
func relaySession(ctx context.Context, socket string, in io.Reader, out, errw io.WriteCloser, resize <-chan remotecommand.TerminalSize) (int32, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return 0, fmt.Errorf("session socket: %w", err)
	}
	defer func() { _ = conn.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	fw := frame.NewWriter(conn)
	if in != nil {
		go func() {
			if _, err := io.Copy(fw.Stream(frame.Stdin), in); err == nil {
				_ = fw.Frame(frame.StdinClose, nil)
			}
		}()
	}
	if resize != nil {
		go func() {
			for sz := range resize {
				if fw.Frame(frame.Resize, frame.ResizePayload(sz.Width, sz.Height)) != nil {
					return
				}
			}
		}()
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	for {
		typ, p, err := frame.Read(r)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("session ended without an exit code: %w", err)
		}
		switch typ {
		case frame.Stdout:
			if out != nil {
				_, _ = out.Write(p)
			}
		case frame.Stderr:
			switch {
			case errw != nil:
				_, _ = errw.Write(p)
			case out != nil:
				_, _ = out.Write(p)
			}
		case frame.Exit:
			code, _ := frame.ParseExit(p)
			return code, nil
		}
	}
}

// PortForward connects stream to port of the pod: inside its network
// namespace for runc and crun, through runsc for gVisor, whose network
// stack lives in the sandbox.
func (m *Manager) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	defer func() { _ = stream.Close() }()
	if port <= 0 || port > 65535 {
		return errdefs.InvalidArgument("port %d is out of range", port)
	}
	sb, err := m.getSandbox(podID)
	if err != nil {
		return err
	}
	rec := sb.snapshot()
	var conn net.Conn
	if sb.handler.Traits().Sandboxed {
		conn, err = m.runscPortForward(ctx, sb, port)
	} else {
		conn, err = dialInNetNS(ctx, rec.NetNS, port)
	}
	if err != nil {
		return fmt.Errorf("port-forward to %s port %d: %w", rec.ID, port, err)
	}
	defer func() { _ = conn.Close() }()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// dialInNetNS connects to localhost:port in the network namespace at
// path ("" is the host's). A socket belongs to the namespace of the
// thread that creates it, so one locked thread switches in for the dial.
func dialInNetNS(ctx context.Context, path string, port int32) (net.Conn, error) {
	dial := func() (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp4", "127.0.0.1:"+strconv.Itoa(int(port)))
		if err != nil {
			conn, err = d.DialContext(ctx, "tcp6", "[::1]:"+strconv.Itoa(int(port)))
		}
		return conn, err
	}
	if path == "" {
		return dial()
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer func() { _ = orig.Close() }()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer func() { _ = target.Close() }()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("enter pod network: %w", err)}
			return
		}
		conn, err := dial()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and dies with this goroutine
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// runscPortForward asks gVisor to connect to port inside the sandbox and
// hand the connection over a unix socket.
func (m *Manager) runscPortForward(ctx context.Context, sb *sandbox, port int32) (net.Conn, error) {
	dir, err := os.MkdirTemp("", "berth-pf-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	sock := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer func() { _ = l.Close() }()
	cmd := sb.handler.Command(ctx, "port-forward", "--stream", sock, sb.rec.ID, strconv.Itoa(int(port)))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait() }()
	_ = l.SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := l.Accept()
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, errors.Join(errors.New("runsc port-forward did not connect"), err)
	}
	return conn, nil
}
