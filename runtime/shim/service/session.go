package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/frame"
)

// sessionAcceptTimeout is how long a session socket waits for berthd.
const sessionAcceptTimeout = 30 * time.Second

// sessionListener listens on a fresh short unix socket path (paths are
// limited to 108 bytes) that only root can reach.
func sessionListener() (*net.UnixListener, string, error) {
	dir, err := os.MkdirTemp("", "berth-io-")
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", err
	}
	return l, path, nil
}

// acceptOne takes the one connection of a session and removes the socket.
func acceptOne(l *net.UnixListener, path string) (*net.UnixConn, error) {
	defer func() { _ = os.RemoveAll(filepath.Dir(path)) }()
	defer func() { _ = l.Close() }()
	_ = l.SetDeadline(time.Now().Add(sessionAcceptTimeout))
	return l.AcceptUnix()
}

// Exec prepares an interactive process; it starts once berthd connects.
func (s *Service) Exec(ctx context.Context, req *shimv1.ExecRequest) (*shimv1.SessionResponse, error) {
	c, err := s.running(req.Id)
	if err != nil {
		return nil, err
	}
	if err := c.verifyInit(); err != nil {
		return nil, err
	}
	var proc specs.Process
	if err := json.Unmarshal(req.Process, &proc); err != nil {
		return nil, errdefs.Errorf(errdefs.ErrInvalidArgument, "process: %v", err)
	}
	return s.serveSession("exec", req.Id, func(conn *net.UnixConn) { s.execSession(c, conn, req, proc.Terminal) })
}

// serveSession opens a session socket and runs the session on the one
// connection it takes; the socket is what berthd connects to.
func (s *Service) serveSession(kind, id string, run func(*net.UnixConn)) (*shimv1.SessionResponse, error) {
	l, path, err := sessionListener()
	if err != nil {
		return nil, err
	}
	go func() {
		conn, err := acceptOne(l, path)
		if err != nil {
			s.opts.Log.Warn(kind+" session not taken", "id", id, "err", err)
			return
		}
		defer func() { _ = conn.Close() }()
		run(conn)
	}()
	return &shimv1.SessionResponse{Socket: path}, nil
}

func (s *Service) execSession(c *container, conn *net.UnixConn, req *shimv1.ExecRequest, terminal bool) {
	fw := frame.NewWriter(conn)
	fail := func(msg string, code int32) {
		_ = fw.Frame(frame.Stderr, []byte(msg+"\n"))
		_ = fw.Frame(frame.Exit, frame.ExitPayload(code))
	}
	var stdio execStdio
	var stdinW *os.File      // what client input is written to
	var readers []*os.File   // what goes back to the client
	var childEnds []*os.File // closed once the process has them
	streams := []byte{frame.Stdout, frame.Stderr}
	if terminal {
		cs, err := newConsoleSocket()
		if err != nil {
			fail(err.Error(), 126)
			return
		}
		defer cs.Close()
		stdio.console = cs
	} else {
		if req.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				fail(err.Error(), 126)
				return
			}
			stdio.in, stdinW = r, w
			childEnds = append(childEnds, r)
		}
		for _, p := range []**os.File{&stdio.out, &stdio.err} {
			r, w, err := os.Pipe()
			if err != nil {
				fail(err.Error(), 126)
				return
			}
			*p = w
			childEnds = append(childEnds, w)
			readers = append(readers, r)
		}
	}
	// Directly where it can (no terminal): the helper joins the
	// namespaces pinned at create; the runtime joins the init's current.
	p, err := s.startDirect(context.Background(), c, req.Process, stdio)
	if errors.Is(err, errUseRuntime) {
		p, err = s.startExec(context.Background(), c, req.Process, stdio)
	}
	for _, f := range childEnds {
		_ = f.Close()
	}
	if err != nil {
		for _, r := range readers {
			_ = r.Close()
		}
		code := int32(126)
		if errors.Is(err, oci.ErrExecutableNotFound) {
			code = 127 // as a shell says of a command it cannot find
		}
		fail(err.Error(), code)
		return
	}
	defer p.cleanup()
	var master *os.File
	if terminal {
		if master, err = stdio.console.receive(10 * time.Second); err != nil {
			p.kill()
			fail("terminal: "+err.Error(), 126)
			return
		}
		defer func() { _ = master.Close() }()
		stdinW = master
		readers = []*os.File{master}
	}
	var copies sync.WaitGroup
	for i, r := range readers {
		copies.Add(1)
		go func(typ byte, r *os.File) {
			defer copies.Done()
			_, _ = io.Copy(fw.Stream(typ), r)
		}(streams[i], r)
	}
	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		relayInput(conn, stdinW, master, false)
	}()
	select {
	case <-p.exited:
	case <-clientGone:
		// Nobody is left to see it: a process must not outlive its client.
		select {
		case <-p.exited:
		default:
			p.kill()
			<-p.exited
		}
	}
	drain(&copies, readers...)
	_ = fw.Frame(frame.Exit, frame.ExitPayload(int32(p.code)))
	if stdinW != nil && stdinW != master {
		_ = stdinW.Close()
	}
}

// relayInput applies the client's frames: input to stdin, resizes to the
// terminal. It returns when the client closes the session.
func relayInput(conn net.Conn, stdin, console *os.File, closeStdinOnEOF bool) {
	r := bufio.NewReader(conn)
	for {
		typ, p, err := frame.Read(r)
		if err != nil {
			return
		}
		switch typ {
		case frame.Stdin:
			if stdin != nil {
				_, _ = stdin.Write(p)
			}
		case frame.StdinClose:
			if stdin != nil && (closeStdinOnEOF || console == nil) {
				_ = stdin.Close()
				stdin = nil
			}
		case frame.Resize:
			if w, h, ok := frame.ParseResize(p); ok && console != nil {
				_ = unix.IoctlSetWinsize(int(console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Col: w, Row: h})
			}
		}
	}
}

// Attach opens a session on a running container's stdio: its output from
// now on, its stdin if it has one, its terminal's size.
func (s *Service) Attach(ctx context.Context, req *shimv1.AttachRequest) (*shimv1.SessionResponse, error) {
	c, err := s.running(req.Id)
	if err != nil {
		return nil, err
	}
	return s.serveSession("attach", req.Id, func(conn *net.UnixConn) { s.attachSession(c, conn, req) })
}

func (s *Service) attachSession(c *container, conn *net.UnixConn, req *shimv1.AttachRequest) {
	fw := frame.NewWriter(conn)
	out := c.subscribe()
	defer c.unsubscribe(out)
	var stdin *os.File
	if req.Stdin {
		c.mu.Lock()
		stdin = c.stdin
		c.mu.Unlock()
	}
	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		relayInput(conn, stdin, c.console, c.stdinOnce)
	}()
	for {
		select {
		case m := <-out:
			if fw.Frame(m.typ, m.data) != nil {
				return
			}
		case <-c.exited:
			// Flush what the copiers passed on before the exit.
		flush:
			for {
				select {
				case m := <-out:
					_ = fw.Frame(m.typ, m.data)
				default:
					break flush
				}
			}
			_ = fw.Frame(frame.Exit, frame.ExitPayload(c.state().ExitCode))
			return
		case <-clientGone:
			return
		}
	}
}
