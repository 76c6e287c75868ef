package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthrt/berth/test/harness"
)

var cniLimits = flag.String("cni-limits", "", "TestCNIConcurrency: CNI ADDs (and DELs) allowed at once, e.g. 1,2,4,20: -scale-burst pods added through the shared configuration at each limit")

// TestCNIConcurrency times the shared CNI configuration alone (bridge with
// ipMasq, host-local, portmap; no runtime): -scale-burst pods added at once
// with at most L plugins chains running at a time, for each L. It tells
// what a runtime's RunPodSandbox burst owes the plugins.
func TestCNIConcurrency(t *testing.T) {
	if *cniLimits == "" {
		t.Skip("no -cni-limits")
	}
	harness.RequireRoot(t)
	dir := t.TempDir()
	bridge := "benchscni"
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
	list, err := libcni.NetworkConfFromBytes(sharedConf(bridge, "bench-cni", "10.205.0.0/16", filepath.Join(dir, "ipam")))
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{"/usr/lib/cni"}, filepath.Join(dir, "cache"), nil)
	n := *scaleBurst
	ctx := context.Background()
	for _, ls := range strings.Split(*cniLimits, ",") {
		limit, err := strconv.Atoi(ls)
		if err != nil || limit < 1 {
			t.Fatalf("-cni-limits %q", *cniLimits)
		}
		for round := range 3 {
			rts := make([]*libcni.RuntimeConf, n)
			for i := range rts {
				ns := fmt.Sprintf("benchcni%d", i)
				if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
					t.Fatalf("ip netns add: %v %s", err, out)
				}
				rts[i] = &libcni.RuntimeConf{ContainerID: fmt.Sprintf("benchcni-%d-%d-%d", limit, round, i), NetNS: "/run/netns/" + ns, IfName: "eth0"}
			}
			run := func(f func(rt *libcni.RuntimeConf) error) time.Duration {
				sem := make(chan struct{}, limit)
				var wg sync.WaitGroup
				start := time.Now()
				for _, rt := range rts {
					wg.Add(1)
					go func() {
						defer wg.Done()
						sem <- struct{}{}
						defer func() { <-sem }()
						if err := f(rt); err != nil {
							t.Errorf("%v", err)
						}
					}()
				}
				wg.Wait()
				return time.Since(start)
			}
			add := run(func(rt *libcni.RuntimeConf) error { _, err := cni.AddNetworkList(ctx, list, rt); return err })
			del := run(func(rt *libcni.RuntimeConf) error { return cni.DelNetworkList(ctx, list, rt) })
			for i := range rts {
				_ = exec.Command("ip", "netns", "del", fmt.Sprintf("benchcni%d", i)).Run()
			}
			t.Logf("%d pods, at most %d at a time: ADD %v, DEL %v", n, limit, add.Round(time.Millisecond), del.Round(time.Millisecond))
		}
	}
	_ = os.RemoveAll(dir)
}
