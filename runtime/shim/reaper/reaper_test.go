package reaper

import (
	"context"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

// A command made with a context and reaped here (never through
// exec.Cmd.Wait) used to keep one goroutine of os/exec for ever: a shim
// lost one per runtime call, that is per probe with exec = "runtime".
func TestRunLeavesNoGoroutine(t *testing.T) {
	r, err := Start(func(Exit) {})
	if err != nil {
		t.Skip("cannot become a child subreaper:", err)
	}
	run := func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		e, err := r.Run(exec.CommandContext(ctx, "/bin/sh", "-c", "exit 3"))
		if err != nil || e.Status != 3 {
			t.Fatalf("run: %+v, %v", e, err)
		}
	}
	run() // settle what the first run starts for good
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 30 {
		run()
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines: %d before 30 runs, %d after", before, after)
	}
}
