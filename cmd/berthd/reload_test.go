package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/oci"
)

type fakeRegistries struct{ got []image.Registries }

func (f *fakeRegistries) SetRegistries(r image.Registries) { f.got = append(f.got, r) }

type fakeHandlerSet struct{ added []string }

func (f *fakeHandlerSet) Add(ctx context.Context, name string, rc config.Handler) (*oci.Handler, error) {
	f.added = append(f.added, name)
	return &oci.Handler{Runtime: &oci.Runtime{Name: name, Path: rc.Path}}, nil
}

// TestReload: SIGHUP applies the log level, the registries and a handler
// added; it names every other change as needing a restart and applies
// none of them; a bad file changes nothing.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	base := "[runtimes.runc]\npath = \"/usr/sbin/runc\"\n"
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, true)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	level := new(slog.LevelVar)
	regs, hs := &fakeRegistries{}, &fakeHandlerSet{}
	r := &reloader{path: path, explicit: true, cfg: cfg, level: level, images: regs, handlers: hs, log: slog.New(slog.NewTextHandler(&logs, nil))}

	next := "log_level = \"debug\"\ncgroup_driver = \"systemd\"\n" + base + "[runtimes.crun]\npath = \"/usr/bin/crun\"\n[image.mirrors]\n\"docker.io\" = [\"http://127.0.0.1:5000\"]\n[streaming]\naddress = \"127.0.0.1:1234\"\n"
	if err := os.WriteFile(path, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reload(context.Background())
	if level.Level() != slog.LevelDebug {
		t.Errorf("log level %v, want debug", level.Level())
	}
	if len(regs.got) != 1 || regs.got[0].Mirrors["docker.io"][0] != "http://127.0.0.1:5000" {
		t.Errorf("registries applied: %+v", regs.got)
	}
	if !slices.Equal(hs.added, []string{"crun"}) {
		t.Errorf("handlers added: %v, want crun", hs.added)
	}
	out := logs.String()
	for _, key := range []string{"cgroup_driver", "streaming.address"} {
		if !strings.Contains(out, key) {
			t.Errorf("the log does not name %s as needing a restart:\n%s", key, out)
		}
	}
	if strings.Contains(out, "image.mirrors,") || cfg.CgroupDriver != "cgroupfs" {
		t.Errorf("reload applied or misreported a restart-only change: driver %q\n%s", cfg.CgroupDriver, out)
	}

	// A second reload of the same file adds nothing again.
	r.reload(context.Background())
	if len(hs.added) != 1 {
		t.Errorf("handlers added twice: %v", hs.added)
	}
	if err := os.WriteFile(path, []byte("bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	r.reload(context.Background())
	if !strings.Contains(logs.String(), "nothing changed") || level.Level() != slog.LevelDebug {
		t.Errorf("a bad file: %s", logs.String())
	}
}
