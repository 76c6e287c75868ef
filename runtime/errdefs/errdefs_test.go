package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The classes are containerd's: either package's checks recognise
// either package's errors.
func TestContainerdClasses(t *testing.T) {
	if !errors.Is(NotFound("pod %q", "x"), cerrdefs.ErrNotFound) || !cerrdefs.IsNotFound(NotFound("x")) {
		t.Error("berth's NotFound is not containerd's")
	}
	if !IsNotFound(fmt.Errorf("w: %w", cerrdefs.ErrNotFound.WithMessage("gone"))) {
		t.Error("containerd's NotFound is not berth's")
	}
	if !cerrdefs.IsDeadlineExceeded(ErrDeadlineExceeded) || !errors.Is(ErrDeadlineExceeded, context.DeadlineExceeded) {
		t.Error("ErrDeadlineExceeded is not containerd's deadline class")
	}
	if ErrDeadlineExceeded.Error() != "deadline exceeded" {
		t.Errorf("ErrDeadlineExceeded says %q", ErrDeadlineExceeded)
	}
}

// What the shim returns reaches berthd with its class and its message
// (errgrpc.ToGRPC in the shim, ToNative in the client).
func TestAcrossTheShim(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code codes.Code
	}{
		{Errorf(ErrNotFound, "container %q not found in shim", "x"), codes.NotFound},
		{Errorf(ErrAlreadyExists, "container %q exists", "x"), codes.AlreadyExists},
		{Errorf(ErrInvalidArgument, "id and bundle are required"), codes.InvalidArgument},
		{Errorf(ErrFailedPrecondition, "container %s is not running", "x"), codes.FailedPrecondition},
		{Errorf(ErrUnavailable, "later"), codes.Unavailable},
		{Errorf(ErrDeadlineExceeded, "container %s did not exit", "x"), codes.DeadlineExceeded},
		{fmt.Errorf("runc delete: %w", Errorf(ErrNotFound, "container does not exist")), codes.NotFound},
		{errors.New("plain"), codes.Unknown},
	} {
		wire := errgrpc.ToGRPC(tc.err)
		if status.Code(wire) != tc.code {
			t.Errorf("%v crosses as %v, want %v", tc.err, status.Code(wire), tc.code)
		}
		if tc.code == codes.Unknown {
			continue // ttrpc makes the status of an unclassified error
		}
		if msg := status.Convert(wire).Message(); msg != tc.err.Error() {
			t.Errorf("%v crosses as %q", tc.err, msg)
		}
		native := errgrpc.ToNative(wire)
		if errgrpc.ToGRPC(native) == nil || status.Code(errgrpc.ToGRPC(native)) != tc.code {
			t.Errorf("%v comes back as %v", tc.err, native)
		}
		if tc.code != codes.DeadlineExceeded && native.Error() != tc.err.Error() {
			t.Errorf("%v comes back saying %q", tc.err, native)
		}
	}
}
