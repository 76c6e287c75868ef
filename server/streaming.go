package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	remotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/berthrt/berth/runtime/errdefs"
)

// Streams is what the streaming server needs of the pod manager.
type Streams interface {
	CheckStreamable(containerID string) error
	CheckPortForward(podID string) error
	ExecStream(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
	AttachStream(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
	PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error
}

// StreamingOptions configure the exec/attach/port-forward server.
type StreamingOptions struct {
	// Addr is host:port; port 0 picks one.
	Addr        string
	TLS         *tls.Config
	IdleTimeout time.Duration
}

// Streaming serves exec, attach and port-forward over the one-time URLs
// the CRI calls hand out (k8s.io/cri-streaming).
type Streaming struct {
	server streaming.Server
	http   *http.Server
	lis    net.Listener
}

// NewStreaming listens on opts.Addr and prepares the server; Serve runs it.
func NewStreaming(opts StreamingOptions, s Streams) (*Streaming, error) {
	lis, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	scheme := "http"
	if opts.TLS != nil {
		scheme = "https"
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = lis.Addr().String()
	// The real port (the configured one may be 0) goes into every URL.
	cfg.BaseURL = &url.URL{Scheme: scheme, Host: lis.Addr().String()}
	cfg.TLSConfig = opts.TLS
	if opts.IdleTimeout > 0 {
		cfg.StreamIdleTimeout = opts.IdleTimeout
	}
	srv, err := streaming.NewServer(cfg, streamRuntime{s})
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	return &Streaming{server: srv, http: &http.Server{Handler: srv, TLSConfig: opts.TLS, ReadHeaderTimeout: 30 * time.Second}, lis: lis}, nil
}

// Addr is where the server listens.
func (s *Streaming) Addr() string { return s.lis.Addr().String() }

// Serve serves until Close.
func (s *Streaming) Serve(log *slog.Logger) {
	var err error
	if s.http.TLSConfig != nil {
		err = s.http.ServeTLS(s.lis, "", "")
	} else {
		err = s.http.Serve(s.lis)
	}
	if err != nil && err != http.ErrServerClosed {
		log.Error("streaming server", "err", err)
	}
}

// Close stops the server and every stream.
func (s *Streaming) Close() error { return s.http.Close() }

// streamRuntime adapts the pod manager to cri-streaming's Runtime.
type streamRuntime struct{ s Streams }

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.s.ExecStream(ctx, id, cmd, in, out, errw, tty, resize)
}

func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return r.s.AttachStream(ctx, id, in, out, errw, tty, resize)
}

func (r streamRuntime) PortForward(ctx context.Context, podID string, port int32, stream io.ReadWriteCloser) error {
	return r.s.PortForward(ctx, podID, port, stream)
}

// Exec hands out a URL to run a command in a running container.
func (s *RuntimeService) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, errdefs.InvalidArgument("exec needs a command")
	}
	if err := s.Streams.CheckStreamable(req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.Streaming.server.GetExec(req)
}

// Attach hands out a URL to attach to a running container.
func (s *RuntimeService) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := s.Streams.CheckStreamable(req.GetContainerId()); err != nil {
		return nil, err
	}
	return s.Streaming.server.GetAttach(req)
}

// PortForward hands out a URL to forward ports of a ready pod.
func (s *RuntimeService) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if err := s.Streams.CheckPortForward(req.GetPodSandboxId()); err != nil {
		return nil, err
	}
	return s.Streaming.server.GetPortForward(req)
}
