package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/shim/service"
)

// fakeShim answers State with err; nothing else is called.
type fakeShim struct {
	shimv1.ShimServiceService
	err error
}

func (f *fakeShim) State(context.Context, *shimv1.IDRequest) (*shimv1.ContainerState, error) {
	return nil, f.err
}

// Errors from a shim arrive as the classes it returned, with their messages.
func TestNativeErrors(t *testing.T) {
	fake := &fakeShim{}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(service.UnaryServerInterceptor))
	if err != nil {
		t.Fatal(err)
	}
	shimv1.RegisterShimServiceService(srv, fake)
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), l) }()
	defer srv.Close()
	c, err := Connect(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		err   error
		class error
		code  codes.Code
	}{
		{errdefs.Errorf(errdefs.ErrNotFound, "container %q not found in shim", "x"), errdefs.ErrNotFound, codes.NotFound},
		{errdefs.Errorf(errdefs.ErrFailedPrecondition, "container x is not running"), errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
		{errdefs.Errorf(errdefs.ErrAlreadyExists, "container %q exists", "x"), errdefs.ErrAlreadyExists, codes.AlreadyExists},
		{errdefs.Errorf(errdefs.ErrInvalidArgument, "process: bad"), errdefs.ErrInvalidArgument, codes.InvalidArgument},
		{errdefs.Errorf(errdefs.ErrDeadlineExceeded, "did not exit"), context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("runc kill: %w", oci.Classify("container does not exist")), errdefs.ErrNotFound, codes.NotFound},
		{errors.New("runc create: cannot create"), errdefs.ErrUnknown, codes.Unknown},
		// No errdefs class: ttrpc gives the code, which berthd still reads.
		{&os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, cerrdefs.ErrPermissionDenied, codes.PermissionDenied},
	} {
		fake.err = tc.err
		_, err := c.State(context.Background(), &shimv1.IDRequest{Id: "x"})
		if !errors.Is(err, tc.class) {
			t.Errorf("%v arrived as %v (%T), not %v", tc.err, err, err, tc.class)
		}
		if err.Error() != tc.err.Error() {
			t.Errorf("%v arrived saying %q", tc.err, err)
		}
		// Its status too, for what reads codes.
		if st, _ := status.FromError(err); st.Message() != tc.err.Error() || st.Code() != tc.code {
			t.Errorf("%v arrived as status %v", tc.err, st)
		}
	}
}
