package oci

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestCheckpointCommands: runc checkpoints a container with CRIU's
// options; runsc checkpoints and restores the sandbox with its own
// command line, which has neither --file-locks nor a work path.
func TestCheckpointCommands(t *testing.T) {
	ctx := context.Background()
	runc := &Runtime{Path: "/usr/bin/runc", Kind: KindRunc}
	runsc := &Runtime{Path: "/usr/local/bin/runsc", Kind: KindRunsc}
	for name, tc := range map[string]struct {
		args      []string
		want, not []string
	}{
		"runc checkpoint": {runc.Checkpoint(ctx, "c", CheckpointOpts{ImagePath: "/i", WorkPath: "/w"}).Args,
			[]string{"checkpoint", "--image-path /i", "--work-path /w", "--leave-running", "--file-locks"}, nil},
		"runsc checkpoint": {runsc.Checkpoint(ctx, "pod", CheckpointOpts{ImagePath: "/i", WorkPath: "/w"}).Args,
			[]string{"checkpoint", "--image-path /i", "--leave-running", "pod"}, []string{"--file-locks", "--work-path"}},
		"runc restore": {runc.Restore(ctx, "c", RestoreOpts{Bundle: "/b", PidFile: "/p", ImagePath: "/i", WorkPath: "/w"}).Args,
			[]string{"restore", "--detach", "--bundle /b", "--pid-file /p", "--image-path /i", "--work-path /w", "--file-locks"}, nil},
		"runsc restore": {runsc.Restore(ctx, "c", RestoreOpts{Bundle: "/b", PidFile: "/p", ImagePath: "/i"}).Args,
			[]string{"restore", "--detach", "--bundle /b", "--pid-file /p", "--image-path /i"}, []string{"--file-locks", "--work-path"}},
	} {
		line := strings.Join(tc.args, " ")
		for _, w := range tc.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: %q lacks %q", name, line, w)
			}
		}
		for _, n := range tc.not {
			if slices.Contains(tc.args, n) {
				t.Errorf("%s: %q has %q", name, line, n)
			}
		}
	}
}

// TestPodCheckpointUnsupported: whole pods checkpoint on runc (CRIU) and
// on runsc (gVisor's sandbox image); single containers on runc only.
func TestPodCheckpointUnsupported(t *testing.T) {
	for k, pod := range map[Kind]bool{KindRunc: true, KindRunsc: true, KindCrun: false, KindOCI: false} {
		if got := k.PodCheckpointUnsupported() == ""; got != pod {
			t.Errorf("%s: pod checkpoint supported = %v, want %v", k, got, pod)
		}
	}
	if KindRunsc.CheckpointUnsupported() == "" {
		t.Error("runsc claims to checkpoint single containers")
	}
}
