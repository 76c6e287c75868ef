package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

var (
	profileDir   = flag.String("profile-dir", "", "TestProfileBurst: directory for the profiles of berthd (needs a -tags berthpprof build in -profile-bin; none without)")
	profileBin   = flag.String("profile-bin", "", "TestProfileBurst: directory of the berthd and berth-shim to time (and profile)")
	profileNet   = flag.String("profile-net", "shared", "TestProfileBurst: default or shared network")
	profileBurst = flag.Int("profile-bursts", 5, "TestProfileBurst: bursts of -scale-burst RunPodSandbox calls at once")
)

// TestProfileBurst profiles berthd (CPU, blocking, mutexes, goroutines
// mid-burst) while it takes bursts of RunPodSandbox calls at once, after
// timing the same calls one by one: what concurrency costs.
//
//	go build -tags berthpprof -o /tmp/pprof-bin/ ./cmd/...
//	go test -run TestProfileBurst ./test/bench/ -args -profile-bin /tmp/pprof-bin -profile-dir /tmp/prof
func TestProfileBurst(t *testing.T) {
	if *profileBin == "" {
		t.Skip("no -profile-bin")
	}
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	sock := ""
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			t.Fatal(err)
		}
		sock = filepath.Join(*profileDir, "pprof.sock")
		t.Setenv("BERTH_PPROF_SOCKET", sock)
	}
	opts := harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc", Bin: *profileBin,
		Extra: fmt.Sprintf("[runtimes.runc]\npath = %q\n", *runtimePath), Args: []string{"--log-level", "info"}}
	if *profileNet == "shared" {
		bridge := "benchsprof"
		t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
		opts.CNIConfList = string(sharedConf(bridge, "bench-prof", "10.204.0.0/16", filepath.Join(t.TempDir(), "ipam")))
	}
	b := harness.Start(t, opts)
	rt := b.Client(t)
	ctx := context.Background()
	dir := t.TempDir()
	_, err := b.ImageClient(t).PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:1.36"}})
	must(t, "pull", err)
	u := runtimeUnderTest{name: "berth", rt: rt}
	t.Cleanup(func() { removeEverything(u) })
	var seq []time.Duration
	var ids []string
	for i := range 11 {
		var id string
		d, err := timed(func() error {
			r, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(fmt.Sprintf("seq-%d", i), dir)})
			if err == nil {
				id = r.PodSandboxId
			}
			return err
		})
		must(t, "RunPodSandbox", err)
		if i > 0 { // the first pulls the pause image, if any
			seq = append(seq, d)
		}
		ids = append(ids, id)
	}
	removeAll(t, u, ids)
	t.Logf("sequential RunPodSandbox p50 %s p90 %s", ms(percentile(seq, 0.5)), ms(percentile(seq, 0.9)))

	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	fetch := func(name, path string) {
		if sock == "" {
			return
		}
		resp, err := client.Get("http://berthd" + path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(*profileDir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, _ = io.Copy(f, resp.Body)
	}
	secs := *profileBurst * 4
	var pwg sync.WaitGroup
	for _, p := range []struct{ name, path string }{
		{"cpu.pprof", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)},
		{"block.pprof", fmt.Sprintf("/debug/pprof/block?seconds=%d", secs)},
		{"mutex.pprof", fmt.Sprintf("/debug/pprof/mutex?seconds=%d", secs)},
	} {
		pwg.Add(1)
		go func() { defer pwg.Done(); fetch(p.name, p.path) }()
	}
	time.Sleep(300 * time.Millisecond)
	var all []time.Duration
	var walls []time.Duration
	for round := range *profileBurst {
		ids := make([]string, *scaleBurst)
		lat := make([]time.Duration, *scaleBurst)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := time.Now()
				r, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(fmt.Sprintf("burst-%d-%d", round, i), dir)})
				if err != nil {
					t.Errorf("burst RunPodSandbox: %v", err)
					return
				}
				lat[i] = time.Since(s)
				ids[i] = r.PodSandboxId
			}()
		}
		if round == 0 {
			time.Sleep(300 * time.Millisecond)
			fetch("goroutines.txt", "/debug/pprof/goroutine?debug=2")
		}
		wg.Wait()
		walls = append(walls, time.Since(start))
		all = append(all, lat...)
		removeAll(t, u, ids)
		time.Sleep(500 * time.Millisecond)
	}
	pwg.Wait()
	t.Logf("%d at once: wall %v; RunPodSandbox p50 %s p90 %s max %s", *scaleBurst, walls, ms(percentile(all, 0.5)), ms(percentile(all, 0.9)), ms(percentile(all, 1)))
	if *profileDir != "" {
		_ = os.WriteFile(filepath.Join(*profileDir, "berthd.log"), []byte(b.Log()), 0o644)
	}
}
