package shim

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func threads(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// TestReapWhenExited: many watched processes hold no thread each, and each
// watch reports its process's end as cmd.Wait does, and reaps it.
func TestReapWhenExited(t *testing.T) {
	const n = 40
	before := threads(t)
	cmds := make([]*exec.Cmd, n)
	watches := make([]<-chan error, n)
	for i := range cmds {
		cmds[i] = exec.Command("sleep", "60")
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
		watches[i] = reapWhenExited(cmds[i])
	}
	time.Sleep(200 * time.Millisecond) // let every watch block
	if after := threads(t); after > before+n/4 {
		t.Errorf("%d watched processes: %d threads, %d before", n, after, before)
	}
	for _, c := range cmds {
		_ = c.Process.Kill()
	}
	for i, w := range watches {
		select {
		case err := <-w:
			if err == nil || err.Error() != "signal: killed" {
				t.Errorf("watch %d: %v, want signal: killed", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watch %d: no exit reported", i)
		}
		if data, err := os.ReadFile("/proc/" + strconv.Itoa(cmds[i].Process.Pid) + "/stat"); err == nil && strings.Contains(string(data), ") Z ") {
			t.Errorf("process %d left a zombie", cmds[i].Process.Pid)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{{[]string{"true"}, ""}, {[]string{"sh", "-c", "exit 3"}, "exit status 3"}} {
		c := exec.Command(tc.args[0], tc.args[1:]...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		got := ""
		if err := <-reapWhenExited(c); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%v: %q, want %q", tc.args, got, tc.want)
		}
	}
}
