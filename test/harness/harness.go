// Package harness starts a real berthd for end-to-end tests, critest runs
// and benchmarks: on a temporary root, with a config written for the test
// (registry mirrors on loopback, its own CNI directory), and runs crictl
// against it.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RequireRoot skips t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: berthd mounts, creates namespaces and runs containers")
	}
}

type build struct {
	once sync.Once
	dir  string
	err  error
}

var builds = map[bool]*build{false: {}, true: {}}

// Binaries returns the directory holding berthd and berth-shim: $BERTH_BIN
// if set (the Makefile builds there), else a fresh build of this checkout.
func Binaries(t testing.TB) string { return binaries(t, false) }

// binaries builds with the race detector when race is set (always a fresh
// build then).
func binaries(t testing.TB, race bool) string {
	t.Helper()
	b := builds[race]
	b.once.Do(func() {
		if d := os.Getenv("BERTH_BIN"); d != "" && !race {
			b.dir = d
			return
		}
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			b.err = err
			return
		}
		mod := filepath.Dir(strings.TrimSpace(string(out)))
		if b.dir, b.err = os.MkdirTemp("", "berth-bin-"); b.err != nil {
			return
		}
		args := []string{"build", "-o", b.dir + "/"}
		if race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/...")...)
		cmd.Dir = mod
		if !race { // the race detector needs cgo
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir
}

// Tool finds a test tool (crictl, critest) in $PATH or $(go env GOPATH)/bin.
func Tool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("%s not found in $PATH or $(go env GOPATH)/bin: run `make test-deps`", name)
	return ""
}

// Options shapes a berthd instance.
type Options struct {
	// Mirrors maps registry hosts to mirror endpoints.
	Mirrors map[string][]string
	// DefaultRuntime names the default handler ("" keeps berthd's choice).
	DefaultRuntime string
	// Extra is appended to the generated config file.
	Extra string
	// Args are extra berthd flags.
	Args []string
	// Race runs berthd and berth-shim built with the race detector.
	Race bool
	// RootSize, when set, puts the root directory on a tmpfs of this size
	// (e.g. "16m"), to run out of disk on purpose.
	RootSize string
	// Bin, when set, is the directory of the berthd and berth-shim to run
	// (another build, to compare).
	Bin string
	// NRI enables NRI, its socket (Berthd.NRISocket) in the state
	// directory and no pre-installed plugins.
	NRI bool
	// CNIConfList, when set, is written into berthd's CNI conf dir before
	// it starts, as 10-test.conflist: the pods' network instead of the
	// default one berthd writes into an empty directory.
	CNIConfList string
}

// Berthd is a running berthd.
type Berthd struct {
	Root, State, Socket, ConfigPath string
	Bin                             string
	cmd                             *exec.Cmd
	log                             *bytes.Buffer
	logMu                           *sync.Mutex
	done                            chan error
	t                               testing.TB
	opts                            Options

	// NRISocket is where NRI plugins connect (with Options.NRI).
	NRISocket string
}

// Start writes a config under a temporary directory and starts berthd;
// it is stopped (SIGTERM) when the test ends.
func Start(t testing.TB, opts Options) *Berthd {
	t.Helper()
	RequireRoot(t)
	bin := opts.Bin
	if bin == "" {
		bin = binaries(t, opts.Race)
	}
	// Short paths: unix socket paths are limited to 108 bytes.
	base, err := os.MkdirTemp("", "berth-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// As /run is: the root of a pod with a user namespace passes through
	// to its containers' bundles.
	if err := os.Chmod(base, 0o711); err != nil { //nolint:gosec // search only
		t.Fatal(err)
	}
	b := &Berthd{
		Root:   filepath.Join(base, "root"),
		State:  filepath.Join(base, "state"),
		Socket: filepath.Join(base, "state", "berth.sock"),
		Bin:    bin,
		t:      t,
		opts:   opts,
	}
	b.ConfigPath = filepath.Join(base, "config.toml")
	b.NRISocket = filepath.Join(b.State, "nri.sock")
	if err := os.WriteFile(b.ConfigPath, []byte(b.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	if opts.CNIConfList != "" {
		cni := filepath.Join(base, "cni")
		if err := os.MkdirAll(cni, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cni, "10-test.conflist"), []byte(opts.CNIConfList), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	crictlConf := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\n", b.Socket, b.Socket)
	if err := os.WriteFile(filepath.Join(base, "crictl.yaml"), []byte(crictlConf), 0o644); err != nil {
		t.Fatal(err)
	}
	if opts.RootSize != "" {
		if err := os.MkdirAll(b.Root, 0o711); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+opts.RootSize, "berth-root", b.Root).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs root: %v %s", err, out)
		}
	}
	t.Cleanup(func() {
		// Pods a test left (it failed, or it did not care) go first: their
		// shims and containers would outlive the test.
		if b.cmd != nil {
			_, _ = b.TryCrictl(t, "rmp", "-a", "-f")
		}
		b.Stop(t)
		if opts.RootSize != "" {
			_ = exec.Command("umount", "-l", b.Root).Run()
		}
		if !t.Failed() {
			_ = os.RemoveAll(base)
		}
	})
	b.Restart(t)
	return b
}

func (b *Berthd) config() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "root = %q\nstate = %q\nsocket = %q\nshim_path = %q\n", b.Root, b.State, b.Socket, filepath.Join(b.Bin, "berth-shim"))
	if b.opts.DefaultRuntime != "" {
		fmt.Fprintf(&sb, "default_runtime = %q\n", b.opts.DefaultRuntime)
	}
	// The whole suite runs on either driver (test/vm runs it on both).
	if d := os.Getenv("BERTH_CGROUP_DRIVER"); d != "" {
		fmt.Fprintf(&sb, "cgroup_driver = %q\n", d)
	}
	fmt.Fprintf(&sb, "[cni]\nconf_dir = %q\ncache_dir = %q\n", filepath.Join(filepath.Dir(b.Root), "cni"), filepath.Join(b.Root, "cni-cache"))
	sb.WriteString("[image.mirrors]\n")
	for host, eps := range b.opts.Mirrors {
		q, _ := json.Marshal(eps)
		fmt.Fprintf(&sb, "%q = %s\n", host, q)
	}
	if b.opts.NRI {
		// Plugins that hold an event on purpose (critest's) hold it for
		// seconds: the library's 2s default would drop them.
		fmt.Fprintf(&sb, "[nri]\nenable = true\nsocket_path = %q\nplugin_path = %q\nplugin_config_path = %q\nplugin_request_timeout = \"30s\"\n",
			b.NRISocket, filepath.Join(filepath.Dir(b.Root), "nri-plugins"), filepath.Join(filepath.Dir(b.Root), "nri-conf.d"))
	}
	sb.WriteString(b.opts.Extra)
	return sb.String()
}

// Restart starts berthd again (after Stop or Kill) on the same root.
func (b *Berthd) Restart(t testing.TB) {
	t.Helper()
	b.log, b.logMu = &bytes.Buffer{}, &sync.Mutex{}
	args := append([]string{"--config", b.ConfigPath, "--log-level", "debug"}, b.opts.Args...)
	b.cmd = exec.Command(filepath.Join(b.Bin, "berthd"), args...)
	w := &lockedWriter{mu: b.logMu, w: b.log}
	b.cmd.Stdout, b.cmd.Stderr = w, w
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(b.cmd, b.done)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", b.Socket); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-b.done:
			t.Fatalf("berthd exited at start: %v\n%s", err, b.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("berthd did not listen on %s\n%s", b.Socket, b.Log())
		}
	}
}

// Pid is the running berthd's process id (0 when stopped).
func (b *Berthd) Pid() int {
	if b.cmd == nil || b.cmd.Process == nil {
		return 0
	}
	return b.cmd.Process.Pid
}

// Log returns what berthd logged so far.
func (b *Berthd) Log() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.log.String()
}

// Stop sends SIGTERM and waits for exit; it returns berthd's exit error.
func (b *Berthd) Stop(t testing.TB) error {
	if b.cmd == nil || b.cmd.Process == nil {
		return nil
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	defer func() { b.cmd = nil }()
	select {
	case err := <-b.done:
		return err
	case <-time.After(30 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
		return fmt.Errorf("berthd ignored SIGTERM for 30s")
	}
}

// Kill sends SIGKILL, as a crash would.
func (b *Berthd) Kill(t testing.TB) {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.done
	b.cmd = nil
}

// Crictl runs crictl against this berthd and returns stdout; a failure
// fails the test.
func (b *Berthd) Crictl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := b.TryCrictl(t, args...)
	if err != nil {
		t.Fatalf("crictl %s: %v\n%s\n--- berthd log ---\n%s", strings.Join(args, " "), err, out, tail(b.Log(), 60))
	}
	return out
}

// TryCrictl runs crictl and returns its combined output and error.
func (b *Berthd) TryCrictl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--config", filepath.Join(filepath.Dir(b.ConfigPath), "crictl.yaml"),
		"--runtime-endpoint", "unix://" + b.Socket, "--image-endpoint", "unix://" + b.Socket, "--timeout", "60s"}, args...)
	cmd := exec.CommandContext(ctx, Tool(t, "crictl"), full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// CrictlProto runs crictl with -o json appended and decodes its output,
// the protojson form of a CRI message (crictl images, pods, ps, stats,
// statsp print their response so), into m.
func (b *Berthd) CrictlProto(t testing.TB, m proto.Message, args ...string) {
	t.Helper()
	full := append([]string{args[0], "-o", "json"}, args[1:]...)
	out := b.Crictl(t, full...)
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("crictl %v output is not a %T: %v\n%s", args, m, err, out)
	}
}

// CrictlStatus runs one of crictl's status commands (inspecti, info,
// imagefsinfo) with -o json appended. crictl prints {"status": S, "info":
// I}: S, the protojson form of a CRI message, is decoded into status; I,
// the runtime's verbose JSON that crictl unfolds, into info (nil skips it).
func (b *Berthd) CrictlStatus(t testing.TB, status proto.Message, info any, args ...string) {
	t.Helper()
	full := append([]string{args[0], "-o", "json"}, args[1:]...)
	out := b.Crictl(t, full...)
	var v struct {
		Status json.RawMessage `json:"status"`
		Info   json.RawMessage `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("crictl %v output is not JSON: %v\n%s", args, err, out)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(v.Status, status); err != nil {
		t.Fatalf("crictl %v status is not a %T: %v\n%s", args, status, err, out)
	}
	if info != nil {
		if err := json.Unmarshal(v.Info, info); err != nil {
			t.Fatalf("crictl %v info: %v\n%s", args, err, out)
		}
	}
}

// call runs f with a runtime and an image client on a connection of its
// own (closed after: a test polls, and berthd restarts under it), bounded
// like crictl's calls.
func (b *Berthd) call(t testing.TB, f func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, img runtimeapi.ImageServiceClient) error) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+b.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := f(ctx, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)); err != nil {
		t.Fatalf("%v\n--- berthd log ---\n%s", err, tail(b.Log(), 60))
	}
}

// ContainerStatus is the verbose CRI status of container id; info, when
// not nil, receives the runtime's verbose JSON (Info["info"]).
func (b *Berthd) ContainerStatus(t testing.TB, id string, info any) *runtimeapi.ContainerStatus {
	t.Helper()
	var resp *runtimeapi.ContainerStatusResponse
	b.call(t, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient) (err error) {
		resp, err = rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
		if err != nil {
			return fmt.Errorf("ContainerStatus %s: %w", id, err)
		}
		return nil
	})
	VerboseInfo(t, resp.GetInfo(), info)
	return resp.GetStatus()
}

// PodSandboxStatus is the verbose CRI status of pod id; info, when not
// nil, receives the runtime's verbose JSON (Info["info"]).
func (b *Berthd) PodSandboxStatus(t testing.TB, id string, info any) *runtimeapi.PodSandboxStatus {
	t.Helper()
	var resp *runtimeapi.PodSandboxStatusResponse
	b.call(t, func(ctx context.Context, rt runtimeapi.RuntimeServiceClient, _ runtimeapi.ImageServiceClient) (err error) {
		resp, err = rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
		if err != nil {
			return fmt.Errorf("PodSandboxStatus %s: %w", id, err)
		}
		return nil
	})
	VerboseInfo(t, resp.GetInfo(), info)
	return resp.GetStatus()
}

// VerboseInfo decodes the JSON berthd puts under "info" in a verbose
// status into v (a nil v skips it); its absence fails the test.
func VerboseInfo(t testing.TB, info map[string]string, v any) {
	t.Helper()
	if v == nil {
		return
	}
	raw, ok := info["info"]
	if !ok {
		t.Fatalf("verbose status has no \"info\": %v", info)
	}
	if err := json.Unmarshal([]byte(raw), v); err != nil {
		t.Fatalf("verbose info is not a %T: %v\n%s", v, err, raw)
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Client returns a CRI runtime client on this berthd's socket, for the
// checks where crictl's output is too coarse (ExecSync exit codes).
func (b *Berthd) Client(t testing.TB) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+b.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// ImageClient returns a CRI image client on this berthd's socket.
func (b *Berthd) ImageClient(t testing.TB) runtimeapi.ImageServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+b.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewImageServiceClient(conn)
}

// Leaks counts what pods hold on the host, to compare before and after.
type Leaks struct {
	Mounts, NetNS, Veths, Cgroups, Shims int
	// Units are berth's scopes and slices systemd knows (systemd driver).
	Units int
	// NATRules are the default network's iptables rules; IPs its
	// host-local reservations.
	NATRules, IPs int
}

// CountLeaks takes the count for this berthd.
func (b *Berthd) CountLeaks(t testing.TB) Leaks {
	t.Helper()
	var l Leaks
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && (strings.HasPrefix(f[4], b.Root+"/") || strings.HasPrefix(f[4], b.State+"/")) {
				l.Mounts++
			}
		}
	}
	if ents, err := os.ReadDir(filepath.Join(b.State, "netns")); err == nil {
		l.NetNS = len(ents)
	}
	if out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output(); err == nil {
		l.Veths = strings.Count(string(out), "\n")
	}
	// A few v1 hierarchies, the unified one of a hybrid host, a v2 host's
	// only one, and the slices of pods without a parent (systemd driver).
	for _, dir := range []string{"memory/berth", "pids/berth", "cpu/berth", "unified/berth", "berth", "berth.slice"} {
		if ents, err := os.ReadDir(filepath.Join("/sys/fs/cgroup", dir)); err == nil {
			for _, e := range ents {
				if e.IsDir() {
					l.Cgroups++
				}
			}
		}
	}
	if SystemdBooted() {
		if units, err := systemdUnits("berth-*.scope", "berth-*.slice"); err == nil {
			l.Units = len(units)
		}
	}
	if out, err := exec.Command("iptables", "-t", "nat", "-S").Output(); err == nil {
		l.NATRules = strings.Count(string(out), `name: \"berth\"`)
	}
	if ents, err := os.ReadDir("/var/lib/cni/networks/berth"); err == nil {
		for _, e := range ents {
			if net.ParseIP(e.Name()) != nil {
				l.IPs++
			}
		}
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline")); err == nil &&
			strings.Contains(string(cmd), "berth-shim") && strings.Contains(string(cmd), b.State) {
			l.Shims++
		}
	}
	return l
}
