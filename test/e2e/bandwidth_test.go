package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/harness"
)

// netPod is a pod with one busybox container, and its address.
type netPod struct{ id, ctr, ip string }

// runNetPod runs a pod with annotations and a container running script,
// and waits for it to run.
func runNetPod(t *testing.T, b *harness.Berthd, dir, name string, annotations map[string]string, script string) netPod {
	t.Helper()
	cfg := podSpec(dir, name)
	cfg.Annotations = annotations
	podCfg := writeJSON(t, filepath.Join(dir, name+"-pod.json"), cfg)
	p := netPod{id: strings.TrimSpace(b.Crictl(t, "runp", podCfg))}
	p.ctr = strings.TrimSpace(b.Crictl(t, "create", p.id, ctrConfig(t, dir, name, script), podCfg))
	b.Crictl(t, "start", p.ctr)
	waitState(t, b, p.ctr, runtimeapi.ContainerState_CONTAINER_RUNNING)
	p.ip = b.PodSandboxStatus(t, p.id, nil).GetNetwork().GetIp()
	if p.ip == "" {
		t.Fatalf("pod %s has no IP", name)
	}
	return p
}

// fetch runs wget in from's container for url and returns how long the
// transfer took; it retries briefly while the server starts.
func fetch(t *testing.T, client runtimeapi.RuntimeServiceClient, from netPod, url string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		start := time.Now()
		resp, err := execSync(client, from.ctr, 60, "wget", "-q", "-O", "/dev/null", url)
		took := time.Since(start)
		if err == nil && resp.GetExitCode() == 0 {
			return took
		}
		if time.Now().After(deadline) {
			t.Fatalf("wget %s: %v %s", url, err, resp.GetStderr())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBandwidth: a pod annotated kubernetes.io/egress-bandwidth=1M sends
// at about 1 Mbit/s through the bandwidth plugin of berth's default
// network; an unannotated one at the bridge's speed. Each serves the
// same file over HTTP to a third pod, which times the download; a bad
// annotation is refused naming it.
func TestBandwidth(t *testing.T) {
	b := startBerthd(t, "runc")
	client := b.Client(t)
	dir := t.TempDir()
	b.Crictl(t, "pull", "busybox:1.36")

	// 384 KiB: three seconds at 1 Mbit/s, less the one-second burst.
	const size = 384 << 10
	serve := fmt.Sprintf("mkdir -p /www && echo ok > /www/index.html && dd if=/dev/zero of=/www/blob bs=1024 count=%d 2>/dev/null && exec httpd -f -p 80 -h /www", size>>10)
	limited := runNetPod(t, b, dir, "bw-limited", map[string]string{"kubernetes.io/egress-bandwidth": "1M"}, serve)
	free := runNetPod(t, b, dir, "bw-free", map[string]string{"team": "e2e"}, serve)
	sink := runNetPod(t, b, dir, "bw-sink", nil, "sleep 600")

	// A first small request each: the servers are up, the ARP entries made.
	for _, p := range []netPod{limited, free} {
		fetch(t, client, sink, "http://"+p.ip+"/")
	}
	rate := func(d time.Duration) float64 { return float64(size*8) / d.Seconds() }
	freeTook := fetch(t, client, sink, "http://"+free.ip+"/blob")
	limitedTook := fetch(t, client, sink, "http://"+limited.ip+"/blob")
	t.Logf("unlimited: %v (%.1f Mbit/s); egress 1M: %v (%.2f Mbit/s)", freeTook, rate(freeTook)/1e6, limitedTook, rate(limitedTook)/1e6)
	if rate(limitedTook) > 2e6 {
		t.Errorf("the 1M pod sent at %.2f Mbit/s", rate(limitedTook)/1e6)
	}
	if rate(limitedTook)*3 > rate(freeTook) {
		t.Errorf("the 1M pod (%v) is not clearly slower than the unlimited one (%v)", limitedTook, freeTook)
	}

	t.Run("bad annotation", func(t *testing.T) {
		cfg := podSpec(dir, "bw-bad")
		cfg.Annotations = map[string]string{"kubernetes.io/ingress-bandwidth": "10MB"}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := client.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "kubernetes.io/ingress-bandwidth") {
			t.Errorf("RunPodSandbox with ingress-bandwidth=10MB: %v", err)
		}
		if out := b.Crictl(t, "pods", "-q", "--name", "bw-bad"); strings.TrimSpace(out) != "" {
			t.Errorf("the refused pod is listed: %s", out)
		}
	})
}
