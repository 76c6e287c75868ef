package service

import (
	"context"
	"errors"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
)

// UnaryServerInterceptor converts the error of every call to its gRPC
// status (errgrpc.ToGRPC), as containerd's shims do: the service returns
// errdefs classes (ErrNotFound, ErrFailedPrecondition, …) and berthd's
// client turns the status back into the same class (errgrpc.ToNative).
// An error of no class is left to ttrpc, which gives it the code it
// always had (Unknown, or that of an os error: NotFound for ENOENT, …).
func UnaryServerInterceptor(ctx context.Context, unmarshal ttrpc.Unmarshaler, _ *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	resp, err := method(ctx, unmarshal)
	if err == nil || errors.Is(cerrdefs.Resolve(err), cerrdefs.ErrUnknown) {
		return resp, err
	}
	return resp, errgrpc.ToGRPC(err)
}
