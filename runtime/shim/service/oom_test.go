package service

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeEvents(t *testing.T, dir, oomKill string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill "+oomKill+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOOMWatchSeesAKillBeforeTheCgroupGoes: the kill is recorded when
// memory.events changes, and stays known after the cgroup is removed.
func TestOOMWatchSeesAKillBeforeTheCgroupGoes(t *testing.T) {
	pod := t.TempDir()
	ctr := filepath.Join(pod, "ctr")
	writeEvents(t, pod, "0")
	writeEvents(t, ctr, "0")
	var ledger oomLedger
	w := watchOOM(ctr, &ledger)
	if w == nil {
		t.Fatal("no watch")
	}
	writeEvents(t, ctr, "1")
	deadline := time.Now().Add(5 * time.Second)
	for !w.killed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the kill was not seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.RemoveAll(ctr); err != nil {
		t.Fatal(err)
	}
	if !w.stop() {
		t.Error("stop forgot the kill")
	}
	if watchOOM(filepath.Join(pod, "missing"), &ledger) != nil {
		t.Error("a watch of a cgroup that is not there")
	}
}

// TestOOMLedgerExplainsThePodsKills: a container whose cgroup went before
// its kill was read is OOM-killed when its pod's count rose, once; a
// container killed by SIGKILL after a sibling's kill was read is not.
func TestOOMLedgerExplainsThePodsKills(t *testing.T) {
	pod := t.TempDir()
	writeEvents(t, pod, "4") // kills before the shim: not its containers'
	s := &Service{}
	newCtr := func(name string) *container {
		dir := filepath.Join(pod, name)
		writeEvents(t, dir, "0")
		c := &container{memCgroup: dir}
		c.oomWatch = watchOOM(dir, &s.ooms)
		return c
	}
	const sigkill = 128 + 9

	// a is OOM-killed; systemd removes its cgroup before the shim reads it.
	a := newCtr("a")
	if err := os.RemoveAll(a.memCgroup); err != nil {
		t.Fatal(err)
	}
	writeEvents(t, pod, "5")
	if !s.exitOOM(a, sigkill) {
		t.Error("a: the pod's kill is not a's")
	}

	// b's kill is read in its cgroup; c, killed by SIGKILL (a stop), is
	// not OOM-killed though the pod counts a kill more.
	b, c := newCtr("b"), newCtr("c")
	writeEvents(t, b.memCgroup, "1")
	writeEvents(t, pod, "6")
	if !s.exitOOM(b, sigkill) {
		t.Error("b: its own kill")
	}
	if err := os.RemoveAll(c.memCgroup); err != nil {
		t.Fatal(err)
	}
	if s.exitOOM(c, sigkill) {
		t.Error("c: b's kill taken for c's")
	}

	// An exit that is not SIGKILL is never an OOM kill.
	d := newCtr("d")
	if err := os.RemoveAll(d.memCgroup); err != nil {
		t.Fatal(err)
	}
	writeEvents(t, pod, "7")
	if s.exitOOM(d, 1) {
		t.Error("d: exit 1 taken for a kill")
	}
	e := newCtr("e")
	if err := os.RemoveAll(e.memCgroup); err != nil {
		t.Fatal(err)
	}
	if s.exitOOM(e, sigkill) {
		t.Error("e: a kill of the pod's before it, explained, taken for e's")
	}
}
