package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startWithMetrics starts berthd (runc by default) serving /metrics on
// the loopback port it returns.
func startWithMetrics(t *testing.T) (*harness.Berthd, int) {
	t.Helper()
	harness.RequireRoot(t)
	reg := fixtures.Registry(t)
	port := freePort(t)
	b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: "runc",
		Extra: fmt.Sprintf("[metrics]\naddress = \"127.0.0.1:%d\"\n", port)})
	return b, port
}

func TestPrometheusMetrics(t *testing.T) {
	b, port := startWithMetrics(t)
	dir := t.TempDir()
	pod, _ := podWithContainer(t, b, dir, "metered", "sleep 60")
	_, _ = b.TryCrictl(t, "inspect", "nonexistent-id")

	body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	for _, want := range []string{
		`berth_cri_requests_total{code="OK",method="RunPodSandbox"} 1`,
		`berth_cri_requests_total{code="NotFound",method="ContainerStatus"} 1`,
		`berth_cri_request_duration_seconds_count{method="StartContainer"} 1`,
		`berth_image_pulls_total{result="success"}`,
		`berth_pods{handler="runc"} 1`,
		`berth_containers{handler="runc",state="running"} 1`,
		`berth_shims 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	b.Crictl(t, "rmp", "-f", pod)
}
