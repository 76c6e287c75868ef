package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
)

// classify turns the failures of every endpoint into one error: not found
// when the registry said so, registry-unavailable when none could be
// reached, the registry's own answer otherwise.
func classify(ref Ref, errs []error) error {
	all := errors.Join(errs...)
	unavailable := len(errs) > 0
	for _, err := range errs {
		if !isUnavailable(err) {
			unavailable = false
		}
	}
	if unavailable {
		return fmt.Errorf("pull %s: %w: %w", ref, errdefs.ErrRegistryUnavailable, all)
	}
	// The last endpoint is the registry itself: its answer decides.
	last := errs[len(errs)-1]
	if isNotFound(last) {
		return errdefs.NotFound("image %s: %v", ref, all)
	}
	if errors.Is(last, errNoPlatform) {
		return errdefs.NotFound("image %s has no manifest for linux/%s: %v", ref, runtime.GOARCH, all)
	}
	return fmt.Errorf("pull %s: %w", ref, all)
}

func isNotFound(err error) bool {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return false
	}
	if terr.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range terr.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

// errStalled cancels a pull that made no progress for the progress timeout.
var errStalled = errors.New("no progress")

func isUnavailable(err error) bool {
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		return false
	}
	if errors.Is(err, errStalled) || errors.Is(err, errdefs.ErrRegistryUnavailable) {
		return true
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return terr.StatusCode >= 500 || terr.StatusCode == http.StatusTooManyRequests
	}
	var nerr net.Error
	var operr *net.OpError
	return errors.As(err, &nerr) || errors.As(err, &operr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ECONNRESET)
}

// fetchErr classifies a failure after the manifest was found.
func (s *Store) fetchErr(ctx context.Context, ref Ref, err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("pull %s: %w: %w", ref, errdefs.ErrResourceExhausted, err)
	}
	if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
		return fmt.Errorf("pull %s: %w: no data for %s", ref, errdefs.ErrRegistryUnavailable, s.opts.ProgressTimeout)
	}
	if isUnavailable(err) {
		return fmt.Errorf("pull %s: %w: %w", ref, errdefs.ErrRegistryUnavailable, err)
	}
	return fmt.Errorf("pull %s: %w", ref, err)
}
