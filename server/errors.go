package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	crierrors "k8s.io/cri-api/pkg/errors"

	"github.com/berthrt/berth/runtime/errdefs"
)

// codeOf maps berth's sentinel errors to gRPC codes. This is the only
// place where that happens.
var codeOf = []struct {
	err  error
	code codes.Code
}{
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrAlreadyExists, codes.AlreadyExists},
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrDeadlineExceeded, codes.DeadlineExceeded},
	{errdefs.ErrResourceExhausted, codes.ResourceExhausted},
	{errdefs.ErrUnimplemented, codes.Unimplemented},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// toStatus converts err into a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	// The kubelet recognises an unavailable registry by this message
	// prefix, and strips the status only for code Unknown.
	if errors.Is(err, errdefs.ErrRegistryUnavailable) {
		return status.Error(codes.Unknown, crierrors.ErrRegistryUnavailable.Error()+": "+err.Error())
	}
	for _, m := range codeOf {
		if errors.Is(err, m.err) {
			return status.Error(m.code, err.Error())
		}
	}
	// Statuses from below (a shim's answer) keep their code.
	if s, ok := status.FromError(err); ok {
		return s.Err()
	}
	return status.Error(codes.Unknown, err.Error())
}
