package crilog

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestCopyFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", MaxLine+10)
	in := "hello\nwindows\r\n\n" + long + "\nno newline"
	if err := l.Copy("stdout", strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	if err := l.Copy("stderr", strings.NewReader("oops\n")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	lines := readLines(t, path)
	want := []struct{ stream, tag, content string }{
		{"stdout", "F", "hello"},
		{"stdout", "F", "windows"},
		{"stdout", "F", ""},
		{"stdout", "P", long[:MaxLine]},
		{"stdout", "F", long[MaxLine:]},
		// The kubelet reads back exactly "no newline" (a full line
		// would gain one).
		{"stdout", "P", "no newline"},
		{"stderr", "F", "oops"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %q", len(lines), len(want), lines)
	}
	for i, w := range want {
		parts := strings.SplitN(lines[i], " ", 4)
		if len(parts) != 4 {
			t.Fatalf("line %d malformed: %q", i, lines[i])
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[0]); err != nil {
			t.Errorf("line %d timestamp: %v", i, err)
		}
		if parts[1] != w.stream || parts[2] != w.tag || parts[3] != w.content {
			t.Errorf("line %d = %q %q %.20q, want %q %q %.20q", i, parts[1], parts[2], parts[3], w.stream, w.tag, w.content)
		}
	}
}

func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_ = l.Copy("stdout", strings.NewReader("before\n"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	_ = l.Copy("stdout", strings.NewReader("after\n"))
	if old := readLines(t, path+".1"); len(old) != 1 || !strings.HasSuffix(old[0], " before") {
		t.Errorf("rotated file = %q", old)
	}
	if cur := readLines(t, path); len(cur) != 1 || !strings.HasSuffix(cur[0], " after") {
		t.Errorf("new file = %q", cur)
	}
}

func TestDiscard(t *testing.T) {
	l, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Copy("stdout", strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
}
