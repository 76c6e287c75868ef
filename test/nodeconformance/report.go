package nodeconformance

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
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
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// outcome of one spec: passed, failed, skipped (or pending, interrupted,
// timedout as ginkgo says).
type outcome struct {
	status, message string
}

// readReport maps spec names to their outcome. ginkgo lists every spec
// of the suite, those its focus left out as skipped.
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
			// Suite set-up and tear-down nodes have other prefixes.
			name, ok := strings.CutPrefix(c.Name, "[It] ")
			if !ok {
				continue
			}
			name = dropLabels(name)
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

// counts of a run: the specs the focus selected (ginkgo reports the rest
// as skipped "in dry run" or by focus; they are not counted).
type counts struct {
	passed, failed, skipped int
}

func (c counts) total() int { return c.passed + c.failed + c.skipped }

// dropLabels drops the list of ginkgo labels that ginkgo appends to a
// spec's name ("... [Conformance] [sig-node, Conformance]"): the e2e
// suite's tags are in the text already, and every spec has a sig- label,
// so the last bracket is the list when it names one.
func dropLabels(name string) string {
	i := strings.LastIndex(name, " [")
	if i < 0 || !strings.HasSuffix(name, "]") {
		return name
	}
	for _, l := range strings.Split(name[i+2:len(name)-1], ", ") {
		if strings.HasPrefix(l, "sig-") {
			return name[:i]
		}
	}
	return name
}

// selected drops the specs that the focus and skip expressions left out:
// ginkgo reports them as skipped with the bare message "skipped"; the
// suite's own skips (e2eskipper) say why.
func selected(got map[string]outcome) map[string]outcome {
	out := map[string]outcome{}
	for spec, o := range got {
		if o.status == "skipped" && o.message == "skipped" {
			continue
		}
		out[spec] = o
	}
	return out
}

func count(got map[string]outcome) counts {
	var c counts
	for _, o := range got {
		switch o.status {
		case "passed":
			c.passed++
		case "skipped":
			c.skipped++
		default:
			c.failed++
		}
	}
	return c
}

// summarize is the Markdown summary of a run: counts, then each spec that
// did not pass with the first line of why.
func summarize(title string, got map[string]outcome, d time.Duration) string {
	c := count(got)
	byStatus := map[string][]string{}
	for spec, o := range got {
		if o.status != "passed" {
			st := o.status
			if st != "skipped" {
				st = "failed"
			}
			byStatus[st] = append(byStatus[st], fmt.Sprintf("- %s\n  %s", spec, firstLine(o.message)))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "%d passed, %d failed, %d skipped of %d (%s)\n", c.passed, c.failed, c.skipped, c.total(), d.Round(time.Second))
	for _, st := range []string{"failed", "skipped"} {
		if len(byStatus[st]) == 0 {
			continue
		}
		sort.Strings(byStatus[st])
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", st, strings.Join(byStatus[st], "\n"))
	}
	return b.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}
