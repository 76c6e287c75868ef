// Package shim is berthd's side of the per-pod shim: it starts berth-shim
// detached from berthd and talks to it over ttrpc.
package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
)

// Client is a connection to one pod's shim.
type Client struct {
	shimv1.ShimServiceClient
	done   chan struct{}
	client *ttrpc.Client
	Socket string
}

// SpawnOptions start a shim.
type SpawnOptions struct {
	Binary   string
	PodID    string
	StateDir string
	Socket   string
	Runtime  *oci.Runtime
	LogLevel string
}

// Spawn starts berth-shim in its own session and returns a client once it
// serves. The shim is not tied to berthd: it keeps running when berthd
// exits or crashes.
func Spawn(ctx context.Context, o SpawnOptions) (*Client, error) {
	args := []string{
		"--pod-id", o.PodID, "--state-dir", o.StateDir, "--socket", o.Socket,
		"--handler", o.Runtime.Name, "--runtime", o.Runtime.Path, "--runtime-root", o.Runtime.Root,
		"--log-level", o.LogLevel, "--ready-fd", "3",
	}
	// Only a kind the binary's name would not give: a berth-shim older
	// than the flag still starts where it is not needed.
	if guess, _ := oci.ParseKind("", o.Runtime.Path); o.Runtime.Kind != "" && o.Runtime.Kind != guess {
		args = append(args, "--kind", string(o.Runtime.Kind))
	}
	for _, a := range o.Runtime.Args {
		args = append(args, "--runtime-arg", a)
	}
	if o.Runtime.DirectExec {
		args = append(args, "--direct-exec")
	}
	if o.Runtime.DirectStart {
		args = append(args, "--direct-start")
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = readyR.Close() }()
	exe, err := sealedBinary(o.Binary)
	if err != nil {
		_ = readyW.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	// Not CommandContext: the shim must outlive the request that made it.
	// It runs from the sealed copy, passed as sealedFD.
	cmd := exec.Command(fmt.Sprintf("/proc/self/fd/%d", sealedFD), args...) //nolint:noctx // a shim outlives every context
	cmd.Args[0] = o.Binary
	cmd.ExtraFiles = []*os.File{readyW, exe}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		_ = readyW.Close()
		return nil, fmt.Errorf("start shim: %w", err)
	}
	_ = readyW.Close()
	// Reap the shim if it exits while this berthd runs; after a berthd
	// restart its new parent does.
	exited := reapWhenExited(cmd)

	ready := make(chan error, 1)
	go func() {
		b := make([]byte, 2)
		_, err := io.ReadFull(readyR, b)
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, fmt.Errorf("shim for pod %s did not start (see %s/shim.log): %w", o.PodID, o.StateDir, err)
		}
	case err := <-exited:
		return nil, fmt.Errorf("shim for pod %s exited at start: %w", o.PodID, err)
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return nil, ctx.Err()
	}
	c, err := Connect(ctx, o.Socket)
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	return c, nil
}

// Connect connects to a running shim's socket.
func Connect(ctx context.Context, socket string) (*Client, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("connect shim %s: %w", socket, errors.Join(errdefs.ErrUnavailable, err))
	}
	done := make(chan struct{})
	tc := ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { close(done) }), ttrpc.WithUnaryClientInterceptor(nativeErrors))
	return &Client{ShimServiceClient: shimv1.NewShimServiceClient(tc), done: done, client: tc, Socket: socket}, nil
}

// nativeErrors turns the status of a failed call back into the error
// class the shim returned (errgrpc.ToNative, the other half of the shim's
// service.UnaryServerInterceptor): berthd asks errdefs.IsNotFound & co.,
// never a gRPC code. Errors of the connection itself (not a status) stay
// as they are.
func nativeErrors(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, _ *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	if err := invoke(ctx, req, resp); err != nil {
		return toNative(err)
	}
	// The call's own failure comes as the response's status.
	if resp.Status != nil && resp.Status.Code != int32(codes.OK) {
		return toNative(status.ErrorProto(resp.Status))
	}
	return nil
}

func toNative(err error) error {
	st, ok := status.FromError(err)
	if !ok || st == nil {
		return err
	}
	return &nativeError{native: errgrpc.ToNative(err), st: st}
}

// nativeError is a shim's error as its class (errgrpc.ToNative: errors.Is
// and errdefs.IsNotFound & co. see it) that says the shim's message and
// still answers GRPCStatus with the status it came as, so that a class
// errdefs has no sentinel for keeps its code on its way to the kubelet.
type nativeError struct {
	native error
	st     *status.Status
}

func (e *nativeError) Error() string              { return e.st.Message() }
func (e *nativeError) Unwrap() error              { return e.native }
func (e *nativeError) GRPCStatus() *status.Status { return e.st }

// Events subscribes to the shim's exit events; a status ending the
// stream is converted as a call's is.
func (c *Client) Events(ctx context.Context, req *shimv1.Empty) (shimv1.ShimService_EventsClient, error) {
	stream, err := c.ShimServiceClient.Events(ctx, req)
	if err != nil {
		return nil, toNative(err)
	}
	return nativeStream{stream}, nil
}

type nativeStream struct {
	shimv1.ShimService_EventsClient
}

func (s nativeStream) Recv() (*shimv1.Event, error) {
	ev, err := s.ShimService_EventsClient.Recv()
	return ev, toNative(err)
}

// Close closes the connection (the shim keeps running).
func (c *Client) Close() error { return c.client.Close() }

// Done is closed when the connection is gone: closed, or the shim died.
func (c *Client) Done() <-chan struct{} { return c.done }
