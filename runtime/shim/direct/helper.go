package direct

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Main is the helper: it reads a Request on fd 3, reports on fd 4 and
// exits. Everything that changes what the process inherits happens on one
// locked thread, which then forks the process: the child is a copy of
// that thread (its namespaces, root, credentials, capabilities and
// seccomp filter), not of the rest of this Go program.
func Main() {
	runtime.LockOSThread()
	// The shim ignores these; a handler here (reset by exec) keeps the
	// process from inheriting that, as it does not through the runtime.
	signal.Notify(make(chan os.Signal, 1), unix.SIGHUP, unix.SIGPIPE)
	// SIGTERM from the shim (timeout, stop, delete): end the process if
	// it was forked, else give up at once, wherever start is blocked.
	term := make(chan os.Signal, 1)
	signal.Notify(term, unix.SIGTERM)
	go func() {
		<-term
		forked.Lock() // not in the middle of forking it
		if forked.pidfd >= 0 {
			_ = unix.PidfdSendSignal(forked.pidfd, unix.SIGKILL, nil, 0)
			forked.Unlock()
			return
		}
		os.Exit(128 + int(unix.SIGTERM))
	}()
	out := json.NewEncoder(os.NewFile(fdReport, "report"))
	var req Request
	if err := json.NewDecoder(io.LimitReader(os.NewFile(fdRequest, "request"), 16<<20)).Decode(&req); err != nil {
		_ = out.Encode(Report{Error: "read request: " + err.Error()})
		os.Exit(1)
	}
	pid, err := start(&req, out)
	if err != nil {
		var f finalError
		var r refusedError
		_ = out.Encode(Report{Error: err.Error(), Final: errors.As(err, &f), Refused: errors.As(err, &r),
			NotFound: errors.Is(err, errNoExecutable) || errors.Is(err, fs.ErrNotExist)})
		os.Exit(1)
	}
	if err := out.Encode(Report{Pid: pid}); err != nil {
		// The shim is gone: the process stays, reaped by init.
		os.Exit(1)
	}
	var ws unix.WaitStatus
	for {
		_, err = unix.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	_ = out.Encode(Report{Exit: &code})
	os.Exit(0)
}

// Descriptors the helper gets besides stdio: the request, the report
// pipe, the init's pidfd, then one per Request.Namespaces entry.
const (
	fdRequest = 3 + iota
	fdReport
	fdPidfd
	fdNamespaces
)

// start enters the container and forks the process; nothing of it has run
// when it fails.
func start(req *Request, out *json.Encoder) (int, error) {
	p := req.Process
	if why := ProcessUnsupported(p); why != "" {
		return 0, fmt.Errorf("unsupported: %s", why)
	}
	// Until the exec, the child is this program: no process of the
	// container may open it through /proc (as runc keeps its init).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("dumpable: %w", err)
	}
	if err := closeExecFrom(3); err != nil {
		return 0, err
	}
	// The init as the shim pinned it: while its pidfd says it was not
	// reaped, its pid names it.
	alive := func() error {
		if err := unix.PidfdSendSignal(fdPidfd, 0, nil, 0); err != nil {
			return fmt.Errorf("%w (pid %d): %w", ErrInitGone, req.InitPid, err)
		}
		return nil
	}
	filter := req.Filter
	if req.Seccomp && len(filter) == 0 {
		var err error
		if filter, err = ReadFilter(req.InitPid, alive); err != nil {
			return 0, err
		}
		if err := out.Encode(Report{Filter: filter}); err != nil {
			return 0, err
		}
	}
	if err := joinCgroups(req.InitPid, req.CgroupMounts, alive); err != nil {
		return 0, refusedError{err}
	}
	for _, rl := range p.Rlimits {
		res, ok := rlimits[rl.Type]
		if !ok {
			return 0, fmt.Errorf("unknown rlimit %s", rl.Type)
		}
		// syscall's Setrlimit: the child keeps it (Go would restore its
		// own start-up RLIMIT_NOFILE otherwise).
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return 0, fmt.Errorf("rlimit %s: %w", rl.Type, err)
		}
	}
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
			return 0, fmt.Errorf("oom_score_adj: %w", err)
		}
	}

	// From here on only this thread changes: its own fs context first,
	// so that entering the mount namespace moves only it.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return 0, fmt.Errorf("unshare fs: %w", err)
	}
	// The namespaces the shim pinned when the container was created, not
	// those its init is in now.
	for i, name := range req.Namespaces {
		if err := unix.Setns(fdNamespaces+i, nsFlag(name)); err != nil {
			return 0, fmt.Errorf("enter %s namespace: %w", name, err)
		}
	}
	// A container's processes share its session keyring, not the shim's.
	if _, err := unix.KeyctlJoinSessionKeyring("_ses." + req.ContainerID); err != nil {
		return 0, fmt.Errorf("session keyring: %w", err)
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return 0, fmt.Errorf("no_new_privs: %w", err)
		}
	}
	// Without no_new_privs loading a filter takes CAP_SYS_ADMIN: before
	// the capabilities go. With it, as late as possible.
	if req.Seccomp && !p.NoNewPrivileges {
		if err := loadFilter(filter, req.SeccompFlags); err != nil {
			return 0, err
		}
	}
	if err := checkCaps(p.Capabilities); err != nil {
		return 0, err
	}
	if err := dropBounding(p.Capabilities); err != nil {
		return 0, refusedError{err}
	}
	env := withHome(p.Env, int(p.User.UID), req.DefaultHome)
	if err := setUser(p); err != nil {
		return 0, err
	}
	if p.Cwd != "" {
		// As the user: it must be allowed in.
		if err := unix.Chdir(p.Cwd); err != nil {
			return 0, fmt.Errorf("chdir to cwd (%q) set in config.json failed: %w", p.Cwd, err)
		}
	}
	if err := setCaps(p.Capabilities); err != nil {
		return 0, err
	}
	if req.Seccomp && p.NoNewPrivileges {
		if err := loadFilter(filter, req.SeccompFlags); err != nil {
			return 0, err
		}
	}
	path, err := lookPath(p.Args[0], env)
	if err != nil {
		return 0, finalError{err}
	}
	forked.Lock()
	defer forked.Unlock()
	pidfd := -1
	pid, err := syscall.ForkExec(path, p.Args, &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{PidFD: &pidfd}})
	if err != nil {
		return 0, finalError{fmt.Errorf("exec %q: %w", p.Args[0], err)}
	}
	forked.pidfd = pidfd
	return pid, nil
}

// forked is the process's pidfd (taken by the fork itself), once forked.
var forked = struct {
	sync.Mutex
	pidfd int
}{pidfd: -1}

// refusedError is a check that failed: the container is not as it was
// created, and the runtime's exec must not be tried instead either.
type refusedError struct{ error }

func (e refusedError) Unwrap() error { return e.error }

// finalError is a failure of the command itself (missing, not
// executable): the runtime's exec would fail the same way.
type finalError struct{ error }

func (e finalError) Unwrap() error { return e.error }

func nsFlag(name string) int {
	switch name {
	case "ipc":
		return unix.CLONE_NEWIPC
	case "uts":
		return unix.CLONE_NEWUTS
	case "net":
		return unix.CLONE_NEWNET
	case "pid":
		return unix.CLONE_NEWPID
	case "cgroup":
		return unix.CLONE_NEWCGROUP
	case "mnt":
		return unix.CLONE_NEWNS
	}
	return 0
}

var rlimits = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

// closeExecFrom marks every descriptor from min on close-on-exec.
func closeExecFrom(min int) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= min {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// setUser sets the calling thread's groups, gid and uid (raw system calls:
// per thread, where glibc and Go would change every thread), keeping the
// capabilities across the change for setCaps to set.
func setUser(p *specs.Process) error {
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	gids := make([]uint32, len(p.User.AdditionalGids))
	copy(gids, p.User.AdditionalGids)
	var ptr uintptr
	if len(gids) > 0 {
		ptr = uintptr(unsafePointer(&gids[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(gids)), ptr, 0); e != 0 {
		return fmt.Errorf("setgroups: %w", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(p.User.GID), uintptr(p.User.GID), uintptr(p.User.GID)); e != 0 {
		return fmt.Errorf("setgid %d: %w", p.User.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(p.User.UID), uintptr(p.User.UID), uintptr(p.User.UID)); e != 0 {
		return fmt.Errorf("setuid %d: %w", p.User.UID, e)
	}
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	}
	return unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0)
}

// withHome adds HOME from the container's /etc/passwd when env has none,
// as runtimes do (def when the user has no entry). The file is the
// container's: it is read only if it is a regular file (a FIFO would
// block, a device would be read by root) and only so far.
func withHome(env []string, uid int, def string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			return env
		}
	}
	home := def
	if f, err := openRegular("/etc/passwd"); err == nil {
		defer func() { _ = f.Close() }()
		sc := bufio.NewScanner(io.LimitReader(f, maxPasswd))
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) >= 6 && fields[2] == strconv.Itoa(uid) {
				if fields[5] != "" {
					home = fields[5]
				}
				break
			}
		}
	}
	if home == "" {
		return env
	}
	return append(env[:len(env):len(env)], "HOME="+home)
}

// maxPasswd bounds what is read of a container's /etc/passwd.
const maxPasswd = 4 << 20

// openRegular opens path for reading without blocking, and only if it is
// a regular file.
func openRegular(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return f, nil
}

// lookPath finds file as the runtime's exec does: through PATH in the
// process's environment when it has no slash, and it must be an
// executable file.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, err)
		}
		return file, nil
	}
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: %w", file, errNoExecutable)
}

// errNoExecutable: no PATH entry holds the command (the message is
// os/exec's, as the runtime's is).
var errNoExecutable = errors.New("executable file not found in $PATH")

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if m := fi.Mode(); m.IsDir() || m&0o111 == 0 {
		return os.ErrPermission
	}
	return nil
}
