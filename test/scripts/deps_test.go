// Package scripts holds the machine setup scripts; its test checks that
// deps.sh installs everything the tests use from the host.
package scripts

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// hostProgram finds the host programs a test or fixture runs or copies:
// exec.Command("x"...), exec.LookPath("x"), harness.Tool("x"), a fixture's
// program("/x"), the program of a runAsHost* call, and constants naming a
// host binary (const bb = "/bin/busybox"). Paths inside containers
// ("/bin/vi" in a container's script) are none of these.
var hostProgram = regexp.MustCompile(`exec\.Command(?:Context)?\((?:ctx, )?"([^"]+)"|LookPath\("([^"]+)"\)|Tool\((?:t, )?"([^"]+)"\)|\.program\("([^"]+)"\)|runAsHost\w*\([^"\n]*"(/[^"]+)"|(?:const|var) \w+ = "(/(?:usr/)?s?bin/[A-Za-z0-9_.+-]+)"`)

// builtByDeps are programs deps.sh builds from the Go module proxy
// (named in the script), not installed from packages.
var builtByDeps = []string{"crictl", "critest", "runsc", "runc", "golangci-lint", "criu", "checkpointctl"}

// TestHostProgramsComeFromDeps: every program the tests and fixtures run
// or copy from the host comes from a package test/scripts/deps.sh
// installs, from a package every Debian system has (Essential or Priority
// required), or from a build deps.sh makes. A program a developer
// installed by hand would pass the suite on their machine and fail on a
// fresh one (nginx, copied into the critest fixtures, was one).
func TestHostProgramsComeFromDeps(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("not a Debian system: deps.sh is Debian's")
	}
	script, err := os.ReadFile("deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := aptPackages(string(script))
	if len(pkgs) == 0 {
		t.Fatal("no apt_pkgs list found in deps.sh")
	}
	progs := map[string]string{} // program -> a file naming it
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || d.Name() == "deps_test.go" {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range hostProgram.FindAllStringSubmatch(string(src), -1) {
			for _, p := range m[1:] {
				if p != "" && p != "go" {
					progs[p] = path
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/bin/busybox", "/usr/sbin/nginx", "gcc", "crictl"} {
		if _, ok := progs[name]; !ok {
			t.Errorf("the scan missed %s, which the tests use: the pattern is stale", name)
		}
	}
	for prog, where := range progs {
		if slices.Contains(builtByDeps, filepath.Base(prog)) {
			if !bytes.Contains(script, []byte(filepath.Base(prog))) {
				t.Errorf("%s (used in %s) is said to be built by deps.sh, which does not name it", prog, where)
			}
			continue
		}
		path, err := exec.LookPath(prog)
		if err != nil {
			t.Errorf("%s (used in %s) is not on this machine: %v", prog, where, err)
			continue
		}
		pkg, err := owner(path)
		if err != nil {
			t.Errorf("%s (used in %s, found at %s) belongs to no Debian package: install it from one in deps.sh", prog, where, path)
			continue
		}
		if slices.Contains(pkgs, pkg) || basePackage(pkg) {
			continue
		}
		t.Errorf("%s (used in %s) comes from package %s, which test/scripts/deps.sh does not install", prog, where, pkg)
	}
}

// aptPackages reads the packages of deps.sh's apt_pkgs=(...) and
// apt_pkgs+=(...) lines.
func aptPackages(script string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`apt_pkgs\+?=\(([^)]*)\)`).FindAllStringSubmatch(script, -1) {
		out = append(out, strings.Fields(m[1])...)
	}
	return out
}

// owner is the package that installed path (trying the other side of
// the /usr merge: dpkg knows files by the path their package ships).
func owner(path string) (string, error) {
	candidates := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil && real != path {
		candidates = append(candidates, real)
	}
	for _, p := range slices.Clone(candidates) {
		if rest, ok := strings.CutPrefix(p, "/usr"); ok {
			candidates = append(candidates, rest)
		} else {
			candidates = append(candidates, "/usr"+p)
		}
	}
	var lastErr error
	for _, p := range candidates {
		out, err := exec.Command("dpkg", "-S", p).Output()
		if err != nil {
			lastErr = err
			continue
		}
		// "diversion by linux-perf from: /usr/bin/perf" lines come
		// before the owner's "linux-perf: /usr/bin/perf".
		for _, line := range strings.Split(string(out), "\n") {
			pkg, _, _ := strings.Cut(line, ":")
			if pkg != "" && !strings.Contains(pkg, " ") {
				return pkg, nil
			}
		}
	}
	return "", lastErr
}

// basePackage: every Debian system has it (Essential, or Priority
// required), minimal ones included.
func basePackage(pkg string) bool {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Essential} ${Priority}", pkg).Output()
	if err != nil {
		return false
	}
	f := strings.Fields(string(out))
	return len(f) == 2 && (f[0] == "yes" || f[1] == "required")
}
