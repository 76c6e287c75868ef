// Command berth-shim is the per-pod monitor berthd starts: it owns the
// pod's container processes (child subreaper), so that they outlive any
// restart of berthd. See runtime/shim/service.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/direct"
	"github.com/berthrt/berth/runtime/shim/service"
)

// version is set at build time.
var version = "0.1.0-dev"

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if len(os.Args) > 1 && os.Args[1] == direct.Arg {
		direct.Main() // the shim re-executed to start a process in a container
	}
	// The sealed copy this shim was started from (shim.Spawn): what the
	// shim starts must not inherit it.
	unix.CloseOnExec(4)
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "berth-shim:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		podID, stateDir, socket, level, kind string
		rt                                   oci.Runtime
		rtArgs                               listFlag
		readyFD                              int
	)
	flag.StringVar(&podID, "pod-id", "", "pod sandbox id")
	flag.StringVar(&stateDir, "state-dir", "", "the shim's state directory")
	flag.StringVar(&socket, "socket", "", "unix socket to serve the shim API on")
	flag.StringVar(&rt.Name, "handler", "", "runtime handler name")
	flag.StringVar(&rt.Path, "runtime", "", "OCI runtime binary")
	flag.StringVar(&kind, "kind", "", "the runtime's family (runc, crun, runsc, oci); empty guesses from its name")
	flag.StringVar(&rt.Root, "runtime-root", "", "OCI runtime --root")
	flag.Var(&rtArgs, "runtime-arg", "extra global runtime argument (repeatable)")
	flag.BoolVar(&rt.DirectExec, "direct-exec", false, "start exec'd processes in runc and crun containers without the runtime")
	flag.BoolVar(&rt.DirectStart, "direct-start", false, "start created runc containers through runc's exec fifo, without runc")
	flag.StringVar(&level, "log-level", "info", "log level")
	flag.IntVar(&readyFD, "ready-fd", -1, "fd to write 'ok' to once serving")
	flag.Parse()
	if podID == "" || stateDir == "" || socket == "" || rt.Path == "" {
		return errors.New("--pod-id, --state-dir, --socket and --runtime are required")
	}
	rt.Args = rtArgs
	k, err := oci.ParseKind(kind, rt.Path)
	if err != nil {
		return err
	}
	rt.Kind = k

	// A shim is small and long-lived: one P (it waits far more than it
	// computes, and every P has its own caches) and eager collection.
	runtime.GOMAXPROCS(1)
	debug.SetGCPercent(50)

	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(stateDir, "shim.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: lv})).With("pod", podID)

	// SIGPIPE from a closed log reader must not kill the shim; terminal
	// signals do not reach it (own session).
	signal.Ignore(unix.SIGPIPE, unix.SIGHUP)

	done := make(chan struct{})
	svc, err := service.New(service.Options{
		PodID: podID, Runtime: &rt, StateDir: stateDir, Log: log, Version: version,
		Exit: func() { close(done) },
	})
	if err != nil {
		return err
	}
	// Errors leave as gRPC statuses of their errdefs class (errgrpc.ToGRPC).
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(service.UnaryServerInterceptor))
	if err != nil {
		return err
	}
	shimv1.RegisterShimServiceService(srv, svc)
	_ = os.Remove(socket)
	l, err := net.Listen("unix", socket)
	if err != nil {
		return err
	}
	if err := os.Chmod(socket, 0o600); err != nil {
		return err
	}
	go func() {
		if err := srv.Serve(context.Background(), l); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) {
			log.Error("serve", "err", err)
		}
	}()
	if readyFD >= 0 {
		ready := os.NewFile(uintptr(readyFD), "ready")
		_, _ = ready.Write([]byte("ok"))
		_ = ready.Close()
	}
	log.Info("shim serving", "socket", socket, "runtime", rt.Path, "pid", os.Getpid())
	<-done
	log.Info("shim exiting")
	_ = srv.Close()
	_ = os.Remove(socket)
	return nil
}
