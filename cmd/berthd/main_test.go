package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthrt/berth/runtime/config"
)

func TestListenReplacesOnlyStaleSockets(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "berth.sock")

	l, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, %v; want 0660", fi.Mode(), err)
	}
	// A live socket belongs to another berthd: leave it alone.
	if _, err := listen(path); err == nil || !strings.Contains(err.Error(), "another berthd") {
		t.Errorf("second listen on a live socket: %v", err)
	}
	// A dead one (berthd crashed, the file stayed) is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := listen(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l2.Close()

	// A regular file in the way is never deleted.
	file := filepath.Join(dir, "notasocket")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listen(file); err == nil {
		t.Error("listen replaced a regular file")
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("the file was touched")
	}
}

func TestSubcommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"config", "default"}, &out, &errOut); code != 0 {
		t.Fatalf("config default: exit %d: %s", code, errOut.String())
	}
	if _, err := config.Parse(out.String()); err != nil && !strings.Contains(err.Error(), "no OCI runtime") {
		t.Errorf("config default does not parse back: %v", err)
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "berthd ") {
		t.Errorf("version: %d %q", code, out.String())
	}
	if code := run([]string{"bogus"}, &out, &errOut); code != 2 {
		t.Errorf("unknown subcommand exit %d, want 2", code)
	}
	if code := run([]string{"--log-format", "xml", "version"}, &out, &errOut); code != 2 {
		t.Errorf("bad --log-format exit %d, want 2", code)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("nope = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := run([]string{"--config", bad, "check"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "nope: unknown key") {
		t.Errorf("bad config: exit %d: %s", code, errOut.String())
	}
}
