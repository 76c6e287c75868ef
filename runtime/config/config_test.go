package config

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// withRuntimes makes Default() see exactly the given binaries in $PATH.
func withRuntimes(t *testing.T, names ...string) {
	t.Helper()
	old := LookPath
	t.Cleanup(func() { LookPath = old })
	LookPath = func(name string) (string, error) {
		for _, n := range names {
			if n == name {
				return "/usr/bin/" + name, nil
			}
		}
		return "", exec.ErrNotFound
	}
}

func TestDefaultRoundTrips(t *testing.T) {
	withRuntimes(t, "runc", "crun", "runsc")
	def := Default()
	if err := def.Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
	text := Render(def)
	got, err := Parse(text)
	if err != nil {
		t.Fatalf("parse rendered default: %v\n%s", err, text)
	}
	// Render prints every field, so equal renderings mean equal configs
	// (up to nil versus empty lists, which TOML cannot tell apart).
	if again := Render(got); again != text {
		t.Fatalf("round trip differs:\n got %s\nwant %s", again, text)
	}
	for _, want := range []string{"[runtimes.runc]", "[runtimes.crun]", "[runtimes.runsc]", `args = ["--oci-seccomp"]`, `default_runtime = "runc"`, "# "} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered default lacks %q", want)
		}
	}
}

func TestDefaultPicksInstalledRuntimes(t *testing.T) {
	withRuntimes(t, "crun")
	c := Default()
	if c.DefaultRuntime != "crun" || len(c.Runtimes) != 1 {
		t.Fatalf("want only crun as default, got %q %v", c.DefaultRuntime, c.RuntimeNames())
	}
}

func TestParseOverrides(t *testing.T) {
	withRuntimes(t, "runc")
	c, err := Parse(`
root = "/tmp/b"
default_runtime = "fast"
[runtimes.fast]
path = "/opt/crun"
args = ["--debug"]
start = "runtime"
[runtimes.fast.annotations]
"x" = "y"
[image]
progress_timeout = "5s"
max_concurrent_downloads = 8
[image.mirrors]
"registry.k8s.io" = ["http://127.0.0.1:5000"]
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Root != "/tmp/b" || c.Image.ProgressTimeout.Duration != 5*time.Second || c.Image.MaxConcurrentDownloads != 8 {
		t.Errorf("overrides not applied: %+v", c)
	}
	if _, ok := c.Runtimes["runc"]; ok {
		t.Errorf("a file listing runtimes must replace the detected ones, got %v", c.RuntimeNames())
	}
	if rt := c.Runtimes["fast"]; rt.Path != "/opt/crun" || rt.Annotations["x"] != "y" || rt.Args[0] != "--debug" || rt.Start != ModeRuntime || rt.Exec != ModeDirect {
		t.Errorf("runtime fast = %+v", rt)
	}
	if c.Image.Mirrors["registry.k8s.io"][0] != "http://127.0.0.1:5000" {
		t.Errorf("mirrors = %v", c.Image.Mirrors)
	}
	// Untouched keys keep their defaults.
	if c.State != "/run/berth" || c.CgroupDriver != "cgroupfs" {
		t.Errorf("defaults lost: %+v", c)
	}
}

func TestParseReportsAllProblemsByKey(t *testing.T) {
	withRuntimes(t, "runc")
	_, err := Parse(`
rooot = "/x"
cgroup_driver = "weird"
default_runtime = "nope"
[image]
max_concurrent_downloads = "three"
progress_timeout = "soon"
[image.mirrors]
"docker.io" = ["ftp://x"]
[runtimes.runc]
path = "/usr/bin/runc"
bogus = 1
[streaming]
address = "nohostport"
`)
	if err == nil {
		t.Fatal("want error")
	}
	// Type errors come first (a mistyped file is not validated further).
	for _, want := range []string{"rooot: unknown key", "image.max_concurrent_downloads: want an integer", "image.progress_timeout: invalid value", "runtimes.runc.bogus: unknown key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = Parse(`
cgroup_driver = "weird"
default_runtime = "nope"
[image.mirrors]
"docker.io" = ["ftp://x"]
[runtimes.runc]
path = "/usr/bin/runc"
kind = "kata"
exec = "fast"
start = "soon"
[streaming]
address = "nohostport"
`)
	for _, want := range []string{"runtimes.runc.exec: must be \"direct\" or \"runtime\", got \"fast\"", `runtimes.runc.kind: must be one of runc, crun, runsc, oci, got "kata"`, "runtimes.runc.start: must be", "cgroup_driver: must be", `default_runtime: "nope" is not a configured handler (have runc)`, `image.mirrors."docker.io"[0]`, "streaming.address"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestParseSyntaxError(t *testing.T) {
	if _, err := Parse("root = "); err == nil {
		t.Fatal("want syntax error")
	}
}

func TestNoRuntimeInstalled(t *testing.T) {
	withRuntimes(t)
	err := Default().Validate()
	if err == nil || !strings.Contains(err.Error(), "no OCI runtime configured") {
		t.Fatalf("want a clear error, got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	withRuntimes(t, "runc")
	if _, err := Load("/nonexistent/berth.toml", false); err != nil {
		t.Errorf("implicit missing config must fall back to defaults: %v", err)
	}
	if _, err := Load("/nonexistent/berth.toml", true); err == nil {
		t.Error("explicit missing config must fail")
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]Endpoint{
		"http://127.0.0.1:5000": {Host: "127.0.0.1:5000", PlainHTTP: true},
		"https://mirror.gcr.io": {Host: "mirror.gcr.io"},
		"mirror.example:443":    {Host: "mirror.example:443"},
	} {
		got, err := ParseEndpoint(in)
		if err != nil || got != want {
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"ftp://x", "http://", "http://host/path"} {
		if _, err := ParseEndpoint(in); err == nil {
			t.Errorf("ParseEndpoint(%q) accepted", in)
		}
	}
	_ = errors.New
}

func TestRuntimeRootFollowsState(t *testing.T) {
	withRuntimes(t, "runc")
	c, err := Parse("state = \"/tmp/s\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Runtimes["runc"].Root; got != "/tmp/s/runtime/runc" {
		t.Errorf("runc root = %q, want it under the configured state dir", got)
	}
	c, err = Parse("default_runtime = \"x\"\n[runtimes.x]\npath = \"/bin/x\"\n[runtimes.y]\npath = \"/bin/y\"\nroot = \"/y\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtimes["x"].Root != "/run/berth/runtime/x" || c.Runtimes["y"].Root != "/y" {
		t.Errorf("roots = %+v", c.Runtimes)
	}
}

func TestParseAnnotationAllowLists(t *testing.T) {
	withRuntimes(t, "runc", "crun")
	c := Default()
	if rt := c.Runtimes["crun"]; len(rt.PodAnnotations) != 0 || len(rt.ContainerAnnotations) != 0 {
		t.Errorf("default allow-lists = %v %v, want none", rt.PodAnnotations, rt.ContainerAnnotations)
	}
	c, err := Parse(`
default_runtime = "crun"
[runtimes.crun]
path = "/usr/bin/crun"
pod_annotations = ["run.oci.keep_original_groups"]
container_annotations = ["run.oci.*", "example.com/[a-z]*"]
`)
	if err != nil {
		t.Fatal(err)
	}
	rt := c.Runtimes["crun"]
	if !slices.Equal(rt.PodAnnotations, []string{"run.oci.keep_original_groups"}) || !slices.Equal(rt.ContainerAnnotations, []string{"run.oci.*", "example.com/[a-z]*"}) {
		t.Errorf("allow-lists = %v %v", rt.PodAnnotations, rt.ContainerAnnotations)
	}
	if again, err := Parse(Render(c)); err != nil || !slices.Equal(again.Runtimes["crun"].ContainerAnnotations, rt.ContainerAnnotations) {
		t.Errorf("rendered allow-lists do not parse back: %v %v", again, err)
	}
	_, err = Parse(`
default_runtime = "crun"
[runtimes.crun]
path = "/usr/bin/crun"
pod_annotations = ["run.oci.[", ""]
container_annotations = "run.oci.*"
`)
	for _, want := range []string{"runtimes.crun.container_annotations: want an array"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = Parse(`
default_runtime = "crun"
[runtimes.crun]
path = "/usr/bin/crun"
pod_annotations = ["run.oci.[", ""]
`)
	for _, want := range []string{"runtimes.crun.pod_annotations[0]: invalid pattern", "runtimes.crun.pod_annotations[1]: an empty pattern"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
