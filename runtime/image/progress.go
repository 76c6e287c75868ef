package image

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// progress tracks bytes received by one pull.
type progress struct {
	done, total atomic.Int64
	last        atomic.Int64 // unix nanos of the last byte
}

func (p *progress) touch() { p.last.Store(time.Now().UnixNano()) }

// watch cancels the pull when no byte arrived for timeout, and reports
// progress every few seconds.
func (p *progress) watch(ctx context.Context, cancel context.CancelCauseFunc, timeout time.Duration, report func(done, total int64)) {
	tick := time.NewTicker(min(time.Second, timeout/4+time.Millisecond))
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.Sub(time.Unix(0, p.last.Load())) > timeout {
				cancel(errStalled)
				return
			}
			if now.Sub(lastReport) >= 5*time.Second {
				lastReport = now
				report(p.done.Load(), p.total.Load())
			}
		}
	}
}

type countingReader struct {
	r    io.Reader
	prog *progress
	n    int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		hook("mid-layer")
		c.n += int64(n)
		c.prog.done.Add(int64(n))
		c.prog.touch()
	}
	return n, err
}
