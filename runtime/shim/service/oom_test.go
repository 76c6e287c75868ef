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
	// Rewritten in place, never truncated: a watch reading it meanwhile
	// sees the old counts or the new ones, as with the kernel's file.
	f, err := os.OpenFile(filepath.Join(dir, "memory.events"), os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("low 0\nhigh 0\nmax 3\noom 1\noom_kill "+oomKill+"\n"), 0); err != nil {
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

// TestOOMWatchExplainsKillsAfterTheFirst: a container whose process was
// OOM-killed goes on explaining the pod's kills (its child killed again),
// so a sibling stopped by SIGKILL, its cgroup gone unread, is not taken
// for OOM-killed.
func TestOOMWatchExplainsKillsAfterTheFirst(t *testing.T) {
	pod := t.TempDir()
	writeEvents(t, pod, "0")
	s := &Service{}
	x, y := filepath.Join(pod, "x"), filepath.Join(pod, "y")
	writeEvents(t, x, "0")
	writeEvents(t, y, "0")
	cx := &container{memCgroup: x, oomWatch: watchOOM(x, &s.ooms)}
	cy := &container{memCgroup: y, oomWatch: watchOOM(y, &s.ooms)}
	explained := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.ooms.mu.Lock()
			got := s.ooms.explained[pod]
			s.ooms.mu.Unlock()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the pod's kills explained: %d, want %d", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Two kills in x, each counted by the pod after x (the kernel's order).
	for i, n := range []string{"1", "2"} {
		writeEvents(t, x, n)
		writeEvents(t, pod, n)
		// An event of x's after the counts, as the kernel's next one.
		writeEvents(t, x, n)
		explained(uint64(i + 1))
	}
	if err := os.RemoveAll(y); err != nil {
		t.Fatal(err)
	}
	if s.exitOOM(cy, 128+9) {
		t.Error("y, stopped by SIGKILL, taken for OOM-killed by x's second kill")
	}
	if !s.exitOOM(cx, 0) {
		t.Error("x's kills forgotten")
	}
}
