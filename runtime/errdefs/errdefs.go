// Package errdefs holds the sentinel errors that every room of berth wraps
// with %w. The server converts them to gRPC codes in exactly one place.
package errdefs

import (
	"errors"
	"fmt"
)

var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrDeadlineExceeded   = errors.New("deadline exceeded")
	ErrResourceExhausted  = errors.New("resource exhausted")
	ErrUnimplemented      = errors.New("not implemented")
	// ErrRegistryUnavailable marks pull failures caused by the registry
	// (network errors, 5xx). The server reports them with the cri-api
	// ErrRegistryUnavailable prefix and code Unknown, as the kubelet expects.
	ErrRegistryUnavailable = errors.New("registry unavailable")
)

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

// IsNotFound reports whether err wraps ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
