// Package nodeconformance runs Kubernetes' own e2e suite focused on
// [NodeConformance] (how upstream judges containerd and CRI-O) against a
// one-node cluster on this machine: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler on loopback, a kubelet on a
// fresh berthd (or, for the comparison, containerd 2.4.2 on the same
// runc), the images the specs pull built from Debian packages and served
// through the runtime's registry mirrors under their real names. It writes
// a summary and fails when a spec of expected.txt does not pass on berth.
//
//	make node-conformance                       # berth
//	make node-conformance RUNTIME=containerd    # the comparison
package nodeconformance

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

var (
	runtimeName = flag.String("runtime", "berth", "the node's CRI runtime: berth or containerd")
	k8sBin      = flag.String("k8s-bin", "/var/cache/berth-k8s/k8s-v1.37.2/bin", "e2e.test, ginkgo, the control plane, the kubelet and agnhost (build.sh)")
	ctrdBin     = flag.String("containerd-bin", "/var/cache/berth-k8s/containerd-v2.4.2/bin", "containerd and containerd-shim-runc-v2 (build.sh containerd)")
	focus       = flag.String("focus", `\[NodeConformance\]`, "ginkgo focus")
	skip        = flag.String("skip", `\[Serial\]|\[Flaky\]|\[Slow\]|\[Disruptive\]|\[Feature:`, "ginkgo skip, node-e2e CI's")
	procs       = flag.Int("procs", 8, "specs run in parallel (they mostly wait on pods: 8 on 2 cores keep them busy)")
	results     = flag.String("results", "results", "directory for the summary and logs")
)

// runcPath is the OCI runtime both runtimes use: deps.sh's runc v1.5.2,
// which berthd's defaults pick as the runc handler.
const runcPath = "/usr/local/sbin/runc"

func TestNodeConformance(t *testing.T) {
	harness.RequireRoot(t)
	for _, b := range []string{"e2e.test", "ginkgo", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "agnhost"} {
		if _, err := os.Stat(filepath.Join(*k8sBin, b)); err != nil {
			t.Fatalf("%v: run test/nodeconformance/build.sh (make node-conformance does)", err)
		}
	}
	resultsDir, err := filepath.Abs(*results)
	if err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(resultsDir, *runtimeName+".logs")
	if err := os.RemoveAll(logDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e2eTest := filepath.Join(*k8sBin, "e2e.test")

	porterDir := filepath.Join(*k8sBin, "porter")
	reg, missing := e2eRegistry(t, e2eImages(t, e2eTest), imageBuilders(filepath.Join(*k8sBin, "agnhost"), porterDir))
	t.Logf("images not built (specs pulling them fail): %s", strings.Join(missing, " "))

	var socket string
	switch *runtimeName {
	case "berth":
		b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc"})
		t.Cleanup(func() { _ = os.WriteFile(filepath.Join(logDir, "berthd.log"), []byte(b.Log()), 0o644) })
		socket = b.Socket
	case "containerd":
		socket = startContainerd(t, *ctrdBin, logDir, reg.Host, runcPath)
		// The pods the kubelet left, before containerd stops (cleanups
		// run last-registered first).
		t.Cleanup(func() { removeAllPods(t, socket) })
	default:
		t.Fatalf("-runtime %q: berth or containerd", *runtimeName)
	}

	nodeName, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	nodeName = strings.ToLower(nodeName)
	start := time.Now()
	cp := startControlPlane(t, *k8sBin, dir, logDir, nodeName)
	k := startKubelet(t, *k8sBin, dir, logDir, socket, nodeName, cp)
	t.Logf("cluster up in %s", time.Since(start).Round(time.Second))

	report := filepath.Join(resultsDir, *runtimeName+".junit.xml")
	_ = os.Remove(report)
	start = time.Now()
	runErr := runE2E(t, e2eTest, cp.kubeconfig, socket, k.rootDir, report, filepath.Join(resultsDir, *runtimeName+".log"))
	elapsed := time.Since(start)
	got, err := readReport(report)
	if err != nil {
		t.Fatalf("e2e.test produced no report (%v): %v; see %s.log", runErr, err, *runtimeName)
	}
	got = selected(got)
	title := fmt.Sprintf("Kubernetes v1.37.2 e2e [NodeConformance] on %s", *runtimeName)
	if *runtimeName == "containerd" {
		title += " 2.4.2"
	}
	summary := summarize(title, got, elapsed)
	if err := os.WriteFile(filepath.Join(resultsDir, *runtimeName+".md"), []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + summary)
	compareRuntimes(t, resultsDir)
	if *runtimeName == "berth" {
		checkExpected(t, got)
	}
}

// runE2E runs e2e.test under ginkgo's CLI (for parallel specs), its
// output in logPath.
func runE2E(t *testing.T, e2eTest, kubeconfig, socket, kubeletRoot, report, logPath string) error {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := []string{
		"--procs=" + strconv.Itoa(*procs), "--focus=" + *focus, "--skip=" + *skip,
		"--junit-report=" + report, "--no-color", "--timeout=3h", "--poll-progress-after=10m",
		e2eTest, "--",
		"--kubeconfig=" + kubeconfig, "--provider=local",
		"--container-runtime-endpoint=unix://" + socket, "--kubelet-root-dir=" + kubeletRoot,
		// No cloud or node logs to collect, no SSH to the node.
		"--disable-log-dump", "--e2e-output-dir=" + filepath.Dir(logPath),
	}
	// A ^C or SIGTERM ends the suite, not the test: the cleanups then
	// stop the kubelet, the control plane and the runtime, and remove
	// the pods, instead of leaving them to the next run.
	ctx, stop := signal.NotifyContext(t.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := exec.CommandContext(ctx, filepath.Join(*k8sBin, "ginkgo"), args...)
	// Interrupted as a terminal's ^C does, the whole group (ginkgo and its
	// parallel e2e.test processes, which handle it), the specs run their
	// cleanups and stop; ginkgo alone ignores it, and killed it would
	// leave the e2e.test processes running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 2 * time.Minute
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = t.TempDir()
	return cmd.Run()
}

// checkExpected fails for each spec of expected.txt that did not pass.
func checkExpected(t *testing.T, got map[string]outcome) {
	t.Helper()
	expected, err := readList("expected.txt")
	if err != nil {
		t.Fatal(err)
	}
	f := regexp.MustCompile(*focus)
	for _, spec := range expected {
		if !f.MatchString(spec) {
			continue // a narrower focus left it out
		}
		if o := got[spec]; o.status != "passed" {
			status := o.status
			if status == "" {
				status = "not run"
			}
			t.Errorf("expected to pass, got %s: %s\n    %s", status, spec, firstLine(o.message))
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
		t.Logf("passes but is not in expected.txt (add it: the list only grows): %s", spec)
	}
}

// compareRuntimes, when both runtimes' reports are in dir, writes the
// table of both (compare.md) and, in berth's run, fails for each spec
// that passed on containerd and not on berth. Only specs both runs
// selected count: a narrower FOCUS in one run compares what it ran.
func compareRuntimes(t *testing.T, dir string) {
	t.Helper()
	b, errB := readReport(filepath.Join(dir, "berth.junit.xml"))
	c, errC := readReport(filepath.Join(dir, "containerd.junit.xml"))
	if errB != nil || errC != nil {
		return
	}
	b, c = selected(b), selected(c)
	var worse []string
	for spec, o := range c {
		if bo, ran := b[spec]; ran && o.status == "passed" && bo.status != "passed" {
			worse = append(worse, spec)
		}
	}
	sort.Strings(worse)
	cb, cc := count(b), count(c)
	var sb strings.Builder
	sb.WriteString("| Kubernetes v1.37.2 [NodeConformance] | berth (runc) | containerd 2.4.2 (runc) |\n|---|---|---|\n")
	fmt.Fprintf(&sb, "| passed | %d | %d |\n| failed | %d | %d |\n| skipped | %d | %d |\n", cb.passed, cc.passed, cb.failed, cc.failed, cb.skipped, cc.skipped)
	if len(worse) > 0 {
		sb.WriteString("\nPass on containerd, not on berth:\n\n- " + strings.Join(worse, "\n- ") + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "compare.md"), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range worse {
		msg := fmt.Sprintf("passes on containerd, not on berth (%s): %s", b[spec].status, spec)
		if *runtimeName == "berth" {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// removeAllPods removes every pod sandbox through the CRI socket.
func removeAllPods(t *testing.T, socket string) {
	ep := "unix://" + socket
	out, err := exec.Command(harness.Tool(t, "crictl"), "--runtime-endpoint", ep, "--image-endpoint", ep, "rmp", "-a", "-f").CombinedOutput()
	if err != nil {
		t.Logf("crictl rmp -a -f: %v\n%s", err, out)
	}
}
