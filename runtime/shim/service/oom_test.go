package service

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestOOMWatchSeesAKillBeforeTheCgroupGoes: the kill is recorded when
// memory.events changes, and stays known after the cgroup is removed
// (a systemd scope goes with its last process).
func TestOOMWatchSeesAKillBeforeTheCgroupGoes(t *testing.T) {
	dir := t.TempDir()
	events := filepath.Join(dir, "memory.events")
	if err := os.WriteFile(events, []byte("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w := watchOOM(dir)
	if w == nil {
		t.Fatal("no watch")
	}
	if err := os.WriteFile(events, []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !w.killed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the kill was not seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Remove(events); err != nil {
		t.Fatal(err)
	}
	if !w.stop() {
		t.Error("stop forgot the kill")
	}

	// No kill: stop ends the watch and says so.
	if err := os.WriteFile(events, []byte("oom_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w = watchOOM(dir)
	if w.stop() {
		t.Error("a kill without one")
	}
	if watchOOM(filepath.Join(dir, "missing")) != nil {
		t.Error("a watch of a cgroup that is not there")
	}
}
