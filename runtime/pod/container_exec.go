package pod

import (
	"context"
	"fmt"
	"strings"
	"time"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
)

// ExecSync runs cmd in a running container and returns its output and
// exit code; a timeout (in seconds, 0 for none) kills it and is
// DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeoutSec int64) (stdout, stderr []byte, code int32, err error) {
	if timeoutSec < 0 {
		return nil, nil, 0, errdefs.InvalidArgument("timeout must not be negative")
	}
	timeout := time.Duration(timeoutSec) * time.Second
	if len(cmd) == 0 {
		return nil, nil, 0, errdefs.InvalidArgument("exec needs a command")
	}
	c, client, err := m.runningContainer(id)
	if err != nil {
		return nil, nil, 0, err
	}
	raw, err := execProcess(c, cmd, false, nil)
	if err != nil {
		return nil, nil, 0, err
	}
	resp, err := client.ExecSync(ctx, &shimv1.ExecSyncRequest{Id: c.rec.ID, Process: raw, TimeoutNs: int64(timeout), MaxOutput: 8 << 20})
	if err != nil {
		return nil, nil, 0, err
	}
	if resp.TimedOut {
		return resp.Stdout, resp.Stderr, resp.ExitCode, fmt.Errorf("command %q timed out after %s: %w", strings.Join(cmd, " "), timeout, errdefs.ErrDeadlineExceeded)
	}
	return resp.Stdout, resp.Stderr, resp.ExitCode, nil
}
