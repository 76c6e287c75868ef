// Package critest runs the CRI validation suite (critest, cri-tools
// v1.37.0) against a fresh berthd with one handler as default, its images
// built by test/fixtures and served from a loopback registry that berth's
// mirrors map registry.k8s.io, gcr.io and k8s.gcr.io to. It writes a
// summary and fails when a spec of the handler's expected-pass list does
// not pass.
//
//	make critest HANDLER=runc
package critest

import (
	"bufio"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

var (
	handler = flag.String("handler", "runc", "runtime handler to validate")
	focus   = flag.String("focus", "", "run only specs matching this regexp (ginkgo focus)")
	results = flag.String("results", "results", "directory for the summary and logs")
)

// junit is the part of ginkgo's JUnit report that matters here.
type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Skipped *struct {
				Message string `xml:"message,attr"`
			} `xml:"skipped"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
			Time float64 `xml:"time,attr"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// outcome of one spec.
type outcome struct {
	status, message string
}

func TestCritest(t *testing.T) {
	harness.RequireRoot(t)
	critest := harness.Tool(t, "critest")
	reg := fixtures.CritestRegistry(t)
	// NRI on: critest's NRI specs run only when given its socket.
	b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: *handler, NRI: true})

	// critest runs in a directory of its own: paths given to it are absolute.
	resultsDir, err := filepath.Abs(*results)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(resultsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(resultsDir, *handler+".junit.xml")
	logPath := filepath.Join(resultsDir, *handler+".log")
	args := []string{
		"--runtime-endpoint", "unix://" + b.Socket, "--image-endpoint", "unix://" + b.Socket, "-nri-socket=" + b.NRISocket,
		"-ginkgo.junit-report=" + report, "-ginkgo.no-color", "-ginkgo.timeout=80m",
	}
	if *focus != "" {
		args = append(args, "-ginkgo.focus="+*focus)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.CommandContext(t.Context(), critest, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// critest reads /etc/crictl.yaml and warns without one; give it none.
	cmd.Dir = t.TempDir()
	start := time.Now()
	runErr := cmd.Run()
	got, err := readReport(report)
	if err != nil {
		t.Fatalf("critest produced no report (%v): %v; see %s", runErr, err, logPath)
	}
	summary := summarize(*handler, got, time.Since(start))
	if err := os.WriteFile(filepath.Join(resultsDir, *handler+".md"), []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + summary)
	if err := os.WriteFile(filepath.Join(resultsDir, *handler+".berthd.log"), []byte(b.Log()), 0o644); err != nil {
		t.Fatal(err)
	}

	expected, err := readList(filepath.Join("expected", *handler+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	// A host that runs more adds its own list: the test VM (test/vm),
	// whose kernel has AppArmor.
	if dir := os.Getenv("BERTH_CRITEST_EXPECTED_MORE"); dir != "" {
		more, err := readList(filepath.Join(dir, *handler+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		expected = append(expected, more...)
	}
	for _, spec := range expected {
		if *focus != "" {
			// ginkgo reports the specs its focus left out as skipped.
			if _, ran := got[spec]; !ran || !regexp.MustCompile(*focus).MatchString(spec) {
				continue
			}
		}
		if o := got[spec]; o.status != "passed" {
			t.Errorf("expected to pass, got %s: %s\n    %s", orMissing(o.status), spec, firstLine(o.message))
		}
	}
	var newly []string
	for spec, o := range got {
		if o.status == "passed" && !contains(expected, spec) {
			newly = append(newly, spec)
		}
	}
	sort.Strings(newly)
	for _, spec := range newly {
		t.Logf("passes but is not in expected/%s.txt (add it: the list only grows): %s", *handler, spec)
	}
}

func orMissing(s string) string {
	if s == "" {
		return "not run"
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func readReport(path string) (map[string]outcome, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r junit
	if err := xml.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	out := map[string]outcome{}
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			name := specName(c.Name)
			if name == "" {
				continue // suite set-up and tear-down nodes
			}
			o := outcome{status: c.Status}
			switch {
			case c.Failure != nil:
				o.message = c.Failure.Message
			case c.Skipped != nil:
				o.message = c.Skipped.Message
			}
			out[name] = o
		}
	}
	return out, nil
}

// specName drops ginkgo's node-type prefix ("[It] ").
func specName(name string) string {
	if !strings.HasPrefix(name, "[It] ") {
		return ""
	}
	return strings.TrimPrefix(name, "[It] ")
}

// readList reads spec names, one per line; # starts a comment.
func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

func summarize(handler string, got map[string]outcome, d time.Duration) string {
	count := map[string]int{}
	byStatus := map[string][]string{}
	for spec, o := range got {
		count[o.status]++
		if o.status != "passed" {
			byStatus[o.status] = append(byStatus[o.status], fmt.Sprintf("- %s\n  %s", spec, firstLine(o.message)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# critest v1.37.0 on berth, handler %s\n\n", handler)
	fmt.Fprintf(&b, "%d passed, %d failed, %d skipped of %d (%s)\n", count["passed"], count["failed"], count["skipped"], len(got), d.Round(time.Second))
	for _, st := range []string{"failed", "skipped"} {
		if len(byStatus[st]) == 0 {
			continue
		}
		sort.Strings(byStatus[st])
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", st, strings.Join(byStatus[st], "\n"))
	}
	return b.String()
}
