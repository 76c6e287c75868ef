package pod

import (
	"context"
	"testing"
	"time"

	remotecommand "k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// TestFirstSize: an exec on a terminal starts at the size the client
// sends first; without one it starts anyway, after a short wait.
func TestFirstSize(t *testing.T) {
	ctx := context.Background()
	if b := firstSize(ctx, nil); b != nil {
		t.Errorf("no resize channel: %+v", b)
	}
	sizes := make(chan remotecommand.TerminalSize, 2)
	sizes <- remotecommand.TerminalSize{Width: 100, Height: 30}
	sizes <- remotecommand.TerminalSize{Width: 120, Height: 40}
	if b := firstSize(ctx, sizes); b == nil || b.Width != 100 || b.Height != 30 {
		t.Errorf("first size = %+v, want 100x30", b)
	}
	if len(sizes) != 1 {
		t.Errorf("later sizes are for the resize relay: %d left, want 1", len(sizes))
	}
	<-sizes
	sizes <- remotecommand.TerminalSize{}
	if b := firstSize(ctx, sizes); b != nil {
		t.Errorf("a 0x0 size: %+v, want none", b)
	}
	start := time.Now()
	if b := firstSize(ctx, make(chan remotecommand.TerminalSize)); b != nil || time.Since(start) > 2*time.Second {
		t.Errorf("no size sent: %+v after %v", b, time.Since(start))
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	start = time.Now()
	if b := firstSize(cancelled, make(chan remotecommand.TerminalSize)); b != nil || time.Since(start) > 100*time.Millisecond {
		t.Errorf("cancelled: %+v after %v", b, time.Since(start))
	}
}
