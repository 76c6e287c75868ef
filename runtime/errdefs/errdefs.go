// Package errdefs holds the error classes that every part of berth wraps
// with %w. The server converts them to gRPC codes in exactly one place.
//
// The classes are containerd's (github.com/containerd/errdefs): ErrNotFound
// here IS containerd's ErrNotFound, so errors.Is and containerd's
// errdefs.IsNotFound & co. agree, and errgrpc carries them across the
// shim's ttrpc boundary (ToGRPC in the shim, ToNative in berthd's client).
package errdefs

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

var (
	ErrNotFound           error = cerrdefs.ErrNotFound
	ErrAlreadyExists      error = cerrdefs.ErrAlreadyExists
	ErrInvalidArgument    error = cerrdefs.ErrInvalidArgument
	ErrFailedPrecondition error = cerrdefs.ErrFailedPrecondition
	ErrUnavailable        error = cerrdefs.ErrUnavailable
	ErrResourceExhausted  error = cerrdefs.ErrResourceExhausted
	ErrUnimplemented      error = cerrdefs.ErrNotImplemented
	ErrUnknown            error = cerrdefs.ErrUnknown
	// ErrDeadlineExceeded is containerd's deadline class (it has no
	// sentinel of its own: context.DeadlineExceeded is the class). It keeps
	// berth's message, "deadline exceeded", and errors.Is(err,
	// context.DeadlineExceeded) holds for it.
	ErrDeadlineExceeded error = deadlineExceeded{}
	// ErrRegistryUnavailable marks pull failures caused by the registry
	// (network errors, 5xx). The server reports them with the cri-api
	// ErrRegistryUnavailable prefix and code Unknown, as the kubelet expects.
	// It is berth's own: no class crosses the shim with it.
	ErrRegistryUnavailable = errors.New("registry unavailable")
)

// deadlineExceeded is ErrDeadlineExceeded: containerd's errdefs and
// errgrpc recognise it by its DeadlineExceeded method.
type deadlineExceeded struct{}

func (deadlineExceeded) Error() string        { return "deadline exceeded" }
func (deadlineExceeded) DeadlineExceeded()    {}
func (deadlineExceeded) Is(target error) bool { return target == context.DeadlineExceeded }

// NotFound returns an error wrapping ErrNotFound.
func NotFound(format string, args ...any) error { return wrap(ErrNotFound, format, args) }

// InvalidArgument returns an error wrapping ErrInvalidArgument.
func InvalidArgument(format string, args ...any) error {
	return wrap(ErrInvalidArgument, format, args)
}

// FailedPrecondition returns an error wrapping ErrFailedPrecondition.
func FailedPrecondition(format string, args ...any) error {
	return wrap(ErrFailedPrecondition, format, args)
}

// AlreadyExists returns an error wrapping ErrAlreadyExists.
func AlreadyExists(format string, args ...any) error {
	return wrap(ErrAlreadyExists, format, args)
}

// Unavailable returns an error wrapping ErrUnavailable.
func Unavailable(format string, args ...any) error { return wrap(ErrUnavailable, format, args) }

func wrap(sentinel error, format string, args []any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), sentinel)
}

// Errorf returns an error of class cls (one of the Err values) whose
// message is exactly the formatted text, without the class's name
// appended: errgrpc carries such an error across the shim boundary with
// the same message and class.
func Errorf(cls error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if wm, ok := cls.(interface{ WithMessage(string) error }); ok {
		return wm.WithMessage(msg)
	}
	return &classed{cls: cls, msg: msg}
}

// classed is Errorf's error for classes without WithMessage.
type classed struct {
	cls error
	msg string
}

func (e *classed) Error() string { return e.msg }
func (e *classed) Unwrap() error { return e.cls }

// IsNotFound reports whether err is of class ErrNotFound.
func IsNotFound(err error) bool { return cerrdefs.IsNotFound(err) }
