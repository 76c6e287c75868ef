package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
)

// ExecSync runs a process in a running container and returns its output.
// The timeout covers the whole exec, from before the process starts.
func (s *Service) ExecSync(ctx context.Context, req *shimv1.ExecSyncRequest) (*shimv1.ExecSyncResponse, error) {
	c, err := s.get(req.Id)
	if err != nil {
		return nil, err
	}
	var timedOut func() bool
	if req.TimeoutNs > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, time.Duration(req.TimeoutNs), errExecTimeout)
		defer cancel()
	}
	timedOut = func() bool { return errors.Is(context.Cause(ctx), errExecTimeout) }
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer func() { _ = outR.Close() }()
	errR, errW, err := os.Pipe()
	if err != nil {
		_ = outW.Close()
		return nil, err
	}
	defer func() { _ = errR.Close() }()
	limit := req.MaxOutput
	if limit <= 0 {
		limit = 16 << 20
	}
	stdout, stderr := &cappedBuffer{limit: limit}, &cappedBuffer{limit: limit}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() { defer copies.Done(); _, _ = io.Copy(stdout, outR) }()
	go func() { defer copies.Done(); _, _ = io.Copy(stderr, errR) }()

	stdio := execStdio{out: outW, err: errW}
	p, err := s.startDirect(ctx, c, req.Process, stdio)
	if errors.Is(err, errUseRuntime) {
		p, err = s.startExec(ctx, c, req.Process, stdio)
	}
	_ = outW.Close()
	_ = errW.Close()
	if err != nil {
		if timedOut() {
			drain(&copies, outR, errR)
			return &shimv1.ExecSyncResponse{TimedOut: true, ExitCode: -1}, nil
		}
		return nil, err
	}
	defer p.cleanup()
	resp := &shimv1.ExecSyncResponse{}
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.kill()
		<-p.exited
		if !timedOut() {
			return nil, ctx.Err()
		}
		resp.TimedOut = true
	}
	resp.ExitCode = int32(p.code)
	drain(&copies, outR, errR)
	resp.Stdout, resp.Stderr = stdout.Bytes(), stderr.Bytes()
	return resp, nil
}

// errExecTimeout is the cause of an ExecSync's context that timed out.
var errExecTimeout = errors.New("exec timed out")

// cappedBuffer keeps the first limit bytes written and drops the rest.
type cappedBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.limit - int64(b.buf.Len()); room > 0 {
		b.buf.Write(p[:min(int64(len(p)), room)])
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}
