package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/crilog"
	"github.com/berthrt/berth/runtime/shim/direct"
	"github.com/berthrt/berth/runtime/shim/frame"
	"github.com/berthrt/berth/runtime/shim/reaper"
)

// runtimeTimeout bounds one runtime command; none should come close.
const runtimeTimeout = 2 * time.Minute

// runRuntime runs the runtime command build returns (given a fresh file
// for the runtime's own log) and turns a failure into an error carrying
// the runtime's message. Stdio left nil are /dev/null, except stderr,
// which is captured when the caller did not set it.
func (s *Service) runRuntime(build func(logFile string) *exec.Cmd) error {
	lf, err := os.CreateTemp(s.opts.StateDir, "rt-*.log")
	if err != nil {
		return err
	}
	lf.Close()
	defer os.Remove(lf.Name())
	cmd := build(lf.Name())
	var stderr bytes.Buffer
	var errR, errW *os.File
	if cmd.Stderr == nil {
		if errR, errW, err = os.Pipe(); err != nil {
			return err
		}
		cmd.Stderr = errW
	}
	started, err := s.reaper.Start(cmd)
	if errW != nil {
		errW.Close()
	}
	if err != nil {
		if errR != nil {
			errR.Close()
		}
		return err
	}
	if errR != nil {
		_, _ = io.Copy(&stderr, io.LimitReader(errR, 64<<10))
		errR.Close()
	}
	exit := started.Wait()
	if exit.Status == 0 {
		return nil
	}
	msg := oci.LastError(lf.Name())
	if msg == "" {
		msg = strings.TrimSpace(stderr.String())
	}
	if msg == "" {
		msg = "exit status " + strconv.Itoa(exit.Status)
	}
	sub := ""
	for _, a := range cmd.Args[1:] {
		if slices.Contains([]string{"create", "start", "kill", "delete", "exec", "update"}, a) {
			sub = a
			break
		}
	}
	return fmt.Errorf("%s %s: %s", s.opts.Runtime.Kind(), sub, msg)
}

func runtimeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), runtimeTimeout)
}

// Create creates a container: stdio pipes (or a terminal), `create`, and
// the copiers that write its output to the CRI log.
func (s *Service) Create(_ context.Context, req *shimv1.CreateRequest) (*shimv1.ContainerState, error) {
	if req.Id == "" || req.Bundle == "" {
		return nil, status.Error(codes.InvalidArgument, "id and bundle are required")
	}
	s.mu.Lock()
	if _, ok := s.containers[req.Id]; ok {
		s.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "container %q exists", req.Id)
	}
	// Reserve the id while the runtime works.
	c := &container{id: req.Id, bundle: req.Bundle, memCgroup: req.MemoryCgroup, terminal: req.Terminal, stdinOnce: req.StdinOnce, exited: make(chan struct{})}
	s.containers[req.Id] = c
	s.mu.Unlock()
	st, err := s.create(c, req)
	if err != nil {
		s.mu.Lock()
		delete(s.containers, req.Id)
		s.mu.Unlock()
		return nil, err
	}
	return st, nil
}

func (s *Service) create(c *container, req *shimv1.CreateRequest) (_ *shimv1.ContainerState, err error) {
	log, err := crilog.Open(req.LogPath)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	var closers []*os.File // our copies of the child's ends
	var readers []*os.File // what the copiers read
	defer func() {
		if err != nil || !s.donatesAtStart() {
			for _, f := range closers {
				f.Close()
			}
		} else {
			// gVisor takes a subcontainer's stdio at `start`.
			c.childIO = closers
		}
		if err != nil {
			for _, f := range readers {
				f.Close()
			}
			if c.stdin != nil {
				c.stdin.Close()
			}
			log.Close()
		}
	}()

	var stdin, stdout, stderr *os.File
	if req.Stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		stdin, c.stdin = r, w
		closers = append(closers, r)
	}
	var console *consoleSocket
	if req.Terminal {
		if console, err = newConsoleSocket(); err != nil {
			return nil, err
		}
		defer console.Close()
	} else {
		for _, p := range []**os.File{&stdout, &stderr} {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, err
			}
			*p = w
			closers = append(closers, w)
			readers = append(readers, r)
		}
	}

	pidFile := filepath.Join(req.Bundle, "init.pid")
	_ = os.Remove(pidFile)
	ctx, cancel := runtimeCtx()
	defer cancel()
	started := time.Now()
	err = s.runRuntime(func(logFile string) *exec.Cmd {
		o := oci.CreateOpts{Bundle: req.Bundle, PidFile: pidFile, LogFile: logFile}
		if console != nil {
			o.ConsoleSocket = console.path
		}
		cmd := s.opts.Runtime.Create(ctx, req.Id, o)
		// With a terminal the runtime's stderr stays its own.
		setStdio(cmd, stdin, stdout, stderr)
		return cmd
	})
	if err != nil {
		return nil, err
	}
	pid, err := readPid(pidFile)
	if err != nil {
		s.forceDelete(req.Id)
		return nil, err
	}
	if console != nil {
		master, err := console.receive(10 * time.Second)
		if err != nil {
			s.forceDelete(req.Id)
			return nil, fmt.Errorf("terminal: %w", err)
		}
		readers = append(readers, master)
		c.console = master
		if req.Stdin {
			// The terminal is both ends: input goes to the master.
			c.stdin.Close()
			c.stdin = master
		}
	}
	c.log = log
	streams := []struct {
		name string
		typ  byte
	}{{"stdout", frame.Stdout}, {"stderr", frame.Stderr}}
	for i, r := range readers {
		c.io.Add(1)
		go func(name string, typ byte, r *os.File) {
			defer c.io.Done()
			defer r.Close()
			// The log gets every line; attached clients get what comes
			// while they are there.
			if err := log.Copy(name, io.TeeReader(r, c.tee(typ))); err != nil && !errors.Is(err, unix.EIO) {
				s.opts.Log.Debug("copy output", "id", c.id, "stream", name, "err", err)
			}
		}(streams[i].name, streams[i].typ, r)
	}

	var init *direct.Init
	if !s.donatesAtStart() {
		// Before any of the container's code ran: what is pinned now is
		// what the runtime made.
		if init, err = direct.PinInit(pid); err != nil {
			s.forceDelete(req.Id)
			return nil, fmt.Errorf("pin the container's init: %w", err)
		}
	}
	c.mu.Lock()
	c.pid = pid
	c.init = init
	if init != nil {
		c.direct.initStart = init.Start
	}
	c.status = shimv1.Status_STATUS_CREATED
	c.createdAt = time.Now()
	c.mu.Unlock()
	if s.waitsThroughRuntime(c.id) {
		// The pid is the gVisor sandbox's: `runsc wait` tells this one's exit.
		s.opts.Log.Info("container created", "id", c.id, "sandbox pid", pid)
		return c.state(), nil
	}
	s.mu.Lock()
	if e, ok := s.takeEarly(pid, started); ok {
		go s.containerExited(c, e)
	} else {
		s.byPid[pid] = c
	}
	s.mu.Unlock()
	s.opts.Log.Info("container created", "id", c.id, "pid", pid)
	return c.state(), nil
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, b)
	}
	return pid, nil
}

// forceDelete removes a half-created container from the runtime.
func (s *Service) forceDelete(id string) {
	ctx, cancel := runtimeCtx()
	defer cancel()
	_ = s.runRuntime(func(logFile string) *exec.Cmd { return s.opts.Runtime.Delete(ctx, id, true, logFile) })
}

// Start starts a created container.
func (s *Service) Start(_ context.Context, req *shimv1.IDRequest) (*shimv1.ContainerState, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.status != shimv1.Status_STATUS_CREATED {
		st := c.status
		c.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is %s, not created", req.Id, st)
	}
	// Set before `start`: the process may exit before `start` returns,
	// and finishedAt must not precede startedAt.
	c.startedAt = time.Now()
	c.mu.Unlock()
	ctx, cancel := runtimeCtx()
	defer cancel()
	err = s.release(ctx, c)
	if errors.Is(err, errUseRuntime) {
		err = s.runRuntime(func(logFile string) *exec.Cmd {
			cmd := s.opts.Runtime.Start(ctx, req.Id, logFile)
			if io := c.childIO; len(io) > 0 {
				in, out, errf := stdioOf(io)
				setStdio(cmd, in, out, errf)
			}
			return cmd
		})
	}
	c.closeChildIO()
	if err != nil {
		c.mu.Lock()
		c.startedAt = time.Time{}
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Lock()
	if c.status == shimv1.Status_STATUS_CREATED {
		c.status = shimv1.Status_STATUS_RUNNING
	}
	c.mu.Unlock()
	if s.waitsThroughRuntime(c.id) {
		go s.runtimeWait(c)
	}
	return c.state(), nil
}

// donatesAtStart reports runtimes that hand a container the stdio of
// `start` rather than of `create` (gVisor, for subcontainers).
func (s *Service) donatesAtStart() bool { return s.opts.Runtime.Kind() == "runsc" }

// waitsThroughRuntime reports containers whose exit the shim cannot reap:
// gVisor subcontainers live inside the sandbox process.
func (s *Service) waitsThroughRuntime(id string) bool {
	return s.opts.Runtime.Kind() == "runsc" && id != s.opts.PodID
}

// runtimeWait learns a gVisor subcontainer's exit from `runsc wait`.
func (s *Service) runtimeWait(c *container) {
	out, w, err := os.Pipe()
	if err != nil {
		s.containerExited(c, reaper.Exit{Status: 255, At: time.Now()})
		return
	}
	cmd := exec.CommandContext(context.Background(), s.opts.Runtime.Path, append(s.opts.Runtime.GlobalArgs(), "wait", c.id)...)
	cmd.Stdout = w
	started, err := s.reaper.Start(cmd)
	w.Close()
	if err != nil {
		out.Close()
		s.containerExited(c, reaper.Exit{Status: 255, At: time.Now()})
		return
	}
	var res struct {
		ExitStatus int `json:"exitStatus"`
	}
	derr := json.NewDecoder(out).Decode(&res)
	out.Close()
	e := started.Wait()
	status := res.ExitStatus
	if derr != nil {
		s.opts.Log.Warn("runsc wait", "id", c.id, "err", derr, "code", e.Status)
		status = 255
	}
	s.containerExited(c, reaper.Exit{Pid: c.pid, Status: status, At: time.Now()})
}

func stdioOf(io []*os.File) (in, out, errf *os.File) {
	// childIO holds [stdin] stdout stderr, stdin only when asked for.
	if len(io) == 3 {
		return io[0], io[1], io[2]
	}
	if len(io) == 2 {
		return nil, io[0], io[1]
	}
	return nil, nil, nil
}

// Delete removes a container. A created container is killed first (it never
// ran); a running one only with force.
func (s *Service) Delete(_ context.Context, req *shimv1.DeleteRequest) (*shimv1.ContainerState, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	st := c.state()
	if st.Status == shimv1.Status_STATUS_RUNNING && !req.Force {
		return nil, status.Errorf(codes.FailedPrecondition, "container %s is running", req.Id)
	}
	ctx, cancel := runtimeCtx()
	defer cancel()
	if st.Status != shimv1.Status_STATUS_STOPPED {
		// A created container never ran; a running one goes with force.
		// A failed kill is not the end: `delete --force` kills too.
		if _, err := s.Kill(ctx, &shimv1.KillRequest{Id: req.Id, Signal: uint32(unix.SIGKILL), All: s.opts.Runtime.Kind() == "runsc"}); err != nil {
			s.opts.Log.Warn("kill before delete", "id", req.Id, "err", err)
		}
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
		}
	}
	if err := s.runRuntime(func(logFile string) *exec.Cmd { return s.opts.Runtime.Delete(ctx, req.Id, true, logFile) }); err != nil && !isNotExist(err) {
		return nil, err
	}
	if s.waitsThroughRuntime(c.id) && st.Status == shimv1.Status_STATUS_CREATED {
		// Never started: no `runsc wait` watches it, and it is gone now.
		s.containerExited(c, reaper.Exit{Status: 137, At: time.Now()})
	}
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		return nil, status.Errorf(codes.DeadlineExceeded, "container %s did not exit after delete --force", req.Id)
	}
	c.closeChildIO()
	c.io.Wait()
	if c.log != nil {
		c.log.Close()
	}
	if c.stdin != nil {
		c.stdin.Close()
	}
	c.killExecs()
	if c.init != nil {
		c.init.Close()
	}
	s.mu.Lock()
	delete(s.containers, req.Id)
	s.mu.Unlock()
	_ = os.Remove(s.exitFile(req.Id))
	s.opts.Log.Info("container deleted", "id", req.Id)
	return c.state(), nil
}

func isNotExist(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "does not exist") || strings.Contains(msg, "not exist") || strings.Contains(msg, "not found")
}

// cappedBuffer keeps the first limit bytes written and drops the rest.
type cappedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - int64(b.buf.Len()); room > 0 {
		b.buf.Write(p[:min(int64(len(p)), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

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
		os.RemoveAll(dir)
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
	defer conn.Close()
	oob := make([]byte, unix.CmsgSpace(4))
	buf := make([]byte, 4096)
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("no terminal received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("no terminal received: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

func (c *consoleSocket) Close() {
	c.l.Close()
	os.RemoveAll(c.dir)
}
