// Command berthd is berth's CRI server.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/network"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pod"
	"github.com/berthrt/berth/runtime/store"
	"github.com/berthrt/berth/server"
)

const usage = `berthd: a Kubernetes CRI runtime

Usage:
  berthd [flags]            serve CRI on the configured socket
  berthd config default     print the default configuration
  berthd check              check this node's prerequisites
  berthd version            print the version

Flags:
`

type flags struct {
	config     string
	logLevel   string
	logFormat  string
	configSet  bool
	stopWithin time.Duration
	// level is the logger's, which SIGHUP may change (config log_level).
	level *slog.LevelVar
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berthd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { _, _ = fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var f flags
	fs.StringVar(&f.config, "config", config.DefaultPath, "configuration file")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&f.stopWithin, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for in-flight calls")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	levelSet := false
	fs.Visit(func(fl *flag.Flag) {
		f.configSet = f.configSet || fl.Name == "config"
		levelSet = levelSet || fl.Name == "log-level"
	})
	f.level = new(slog.LevelVar)
	log, err := newLogger(stderr, f.logLevel, f.logFormat, f.level)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "berthd:", err)
		return 2
	}
	rest := fs.Args()
	switch {
	case len(rest) == 0:
	case len(rest) == 2 && rest[0] == "config" && rest[1] == "default":
		_, _ = fmt.Fprint(stdout, config.Render(config.Default()))
		return 0
	case len(rest) == 1 && rest[0] == "version":
		_, _ = fmt.Fprintln(stdout, "berthd", server.Version)
		return 0
	case len(rest) == 1 && rest[0] == "check":
		cfg, err := config.Load(f.config, f.configSet)
		if err != nil {
			_, _ = fmt.Fprintln(stderr, "berthd:", err)
			return 1
		}
		return check(cfg, stdout)
	default:
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(f.config, f.configSet)
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "berthd:", err)
		return 1
	}
	if cfg.LogLevel != "" && !levelSet {
		_ = f.level.UnmarshalText([]byte(cfg.LogLevel)) // validated by Load
	}
	if err := serve(cfg, f, log); err != nil {
		log.Error("berthd failed", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, level, format string, lv *slog.LevelVar) (*slog.Logger, error) {
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", format)
}

func serve(cfg *config.Config, f flags, log *slog.Logger) error {
	ctx := context.Background()
	if err := pod.PrivateDir(cfg.Root); err != nil {
		return err
	}
	for _, d := range []string{cfg.State} {
		if err := pod.SearchableDir(d); err != nil {
			return err
		}
	}
	db, err := store.Open(filepath.Join(cfg.Root, "meta.db"))
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	var metrics *server.Metrics
	imgOpts := image.OptionsFromConfig(cfg, log.With("component", "image"))
	if cfg.Metrics.Address != "" {
		metrics = server.NewMetrics()
		imgOpts.OnPull = metrics.ObservePull
	}
	images, err := image.New(db, imgOpts)
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	cni, err := network.New(ctx, network.Options{ConfDir: cfg.CNI.ConfDir, BinDirs: cfg.CNI.BinDirs, CacheDir: cfg.CNI.CacheDir,
		DefaultSubnet: cfg.CNI.DefaultSubnet, SubnetExplicit: cfg.CNI.DefaultSubnetSet, Log: log.With("component", "network")})
	if err != nil {
		return err
	}
	handlers := oci.NewHandlers(ctx, cfg)
	for _, h := range handlers.All() {
		if h.ProbeErr != nil {
			log.Warn("runtime handler unusable", "handler", h.Name, "err", h.ProbeErr)
		} else {
			log.Info("runtime handler", "handler", h.Name, "path", h.Path, "version", h.Info.Version, "oci", h.Info.SpecVersion)
		}
	}
	tlsCfg, err := streamingTLS(cfg)
	if err != nil {
		return err
	}
	shimBin, err := shimBinary(cfg)
	if err != nil {
		return err
	}
	nriRT, err := newNRI(cfg, log)
	if err != nil {
		return err
	}
	pods, err := pod.New(ctx, pod.Options{
		Config: cfg, DB: db, Images: images, Handlers: handlers, CNI: cni,
		Log: log.With("component", "pod"), ShimBinary: shimBin, LogLevel: f.logLevel,
		LSM: nodeLSM(cfg, log), NRI: nriRT.hooks(),
	})
	if err != nil {
		return err
	}
	// After recovery: plugins are synchronised with the pods recovered.
	if err := nriRT.start(pods); err != nil {
		return err
	}
	defer nriRT.stop()

	stream, err := server.NewStreaming(server.StreamingOptions{Addr: cfg.Streaming.Address, IdleTimeout: cfg.Streaming.IdleTimeout.Duration, TLS: tlsCfg}, pods)
	if err != nil {
		return err
	}
	defer func() { _ = stream.Close() }()
	go stream.Serve(log)
	log.Info("streaming server", "address", stream.Addr(), "tls", tlsCfg != nil)

	ic := server.Interceptors{Log: log}
	if metrics != nil {
		metrics.SetInventory(pods)
		ic.Observer = metrics
		mctx, stopMetrics := context.WithCancel(ctx)
		defer stopMetrics()
		addr, err := metrics.Serve(mctx, cfg.Metrics.Address)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		log.Info("metrics server", "address", addr.String())
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(ic.Unary),
		grpc.ChainStreamInterceptor(ic.Stream),
		grpc.MaxRecvMsgSize(16<<20), grpc.MaxSendMsgSize(16<<20),
	)
	runtimeapi.RegisterRuntimeServiceServer(srv, &server.RuntimeService{Pods: pods, Streams: pods, Streaming: stream, CgroupDriver: cfg.CgroupDriver, Log: log, PodCIDR: cni})
	runtimeapi.RegisterImageServiceServer(srv, &server.ImageService{Images: images, ContainerFS: pods, Handlers: pods, Log: log})

	lis, err := listen(cfg.Socket)
	if err != nil {
		return err
	}
	log.Info("berthd serving", "socket", cfg.Socket, "version", server.Version, "root", cfg.Root, "state", cfg.State)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	notifySystemd(log, daemon.SdNotifyReady)
	rl := &reloader{path: f.config, explicit: f.configSet, cfg: cfg, level: f.level, images: images, handlers: handlers, log: log}
wait:
	for {
		select {
		case err := <-served:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				notifySystemd(log, daemon.SdNotifyReloading)
				rl.reload(ctx)
				notifySystemd(log, daemon.SdNotifyReady)
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "timeout", f.stopWithin)
			notifySystemd(log, daemon.SdNotifyStopping)
			break wait
		}
	}
	// In-flight calls finish; new ones are refused. Pods keep running:
	// their shims do not depend on berthd.
	pods.CloseEvents()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(f.stopWithin):
		log.Warn("in-flight calls did not finish in time; stopping")
		srv.Stop()
	}
	log.Info("berthd stopped")
	return nil
}

// listen creates the CRI socket: parent dirs made, a stale socket from a
// dead berthd replaced, a live one (another berthd) left alone, mode 0660.
func listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil { //nolint:gosec // the socket's parent: CRI clients of its group must traverse it
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; not replacing it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%s is in use: is another berthd running?", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// The socket must never be reachable with wider permissions, not even
	// between bind and chmod.
	old := syscall.Umask(0o117)
	lis, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil { //nolint:gosec // the CRI socket: root and its group, by design
		_ = lis.Close()
		return nil, err
	}
	if err := os.Chown(path, 0, 0); err != nil && os.Geteuid() == 0 {
		_ = lis.Close()
		return nil, err
	}
	return lis, nil
}

// shimBinary finds berth-shim: as configured, next to berthd, or in $PATH.
func shimBinary(cfg *config.Config) (string, error) {
	if cfg.ShimPath != "" {
		return cfg.ShimPath, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berth-shim")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("berth-shim")
	if err != nil {
		return "", fmt.Errorf("berth-shim not found next to berthd or in $PATH (set shim_path): %w", err)
	}
	return p, nil
}

// streamingTLS loads the streaming server's certificate, if configured.
func streamingTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.Streaming.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.Streaming.TLSCert, cfg.Streaming.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("streaming TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
