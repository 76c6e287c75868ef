package pod

import (
	"errors"
	"maps"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/oci"
	"github.com/berthrt/berth/runtime/pinns"
)

// TestPlanSysctls: berth sets network sysctls after CNI ADD with its
// defaults under the pod's own, and the IPC and UTS ones where it pins
// those namespaces; the sandbox container's runtime sets the rest, and
// gVisor all of them, without Linux's defaults. In a pod with a user
// namespace the group range is the pod's groups, in host gids.
func TestPlanSysctls(t *testing.T) {
	e := newEnv(t)
	e.cfg.Security.UnprivilegedPorts, e.cfg.Security.UnprivilegedICMP = true, true
	split := map[pinns.Kind]map[string]string{
		pinns.Net: {"net.ipv4.ip_unprivileged_port_start": "1024", "net.ipv4.conf.eth0.rp_filter": "1"},
		pinns.IPC: {"kernel.shm_rmid_forced": "1"},
	}
	runc, runsc := e.hs.byName["runc"], e.hs.byName["runsc"]
	cfg := podConfig("p")
	plan := func(h *oci.Handler, pins bool, u *userNS, split map[pinns.Kind]map[string]string) sysctlPlan {
		t.Helper()
		p, err := e.m.planSysctls(h, cfg, pins, u, split)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	p := plan(runc, true, nil, split)
	wantNet := map[string]string{"net.ipv4.ip_unprivileged_port_start": "1024", "net.ipv4.conf.eth0.rp_filter": "1", "net.ipv4.ping_group_range": "0 2147483647"}
	if !maps.Equal(p.net, wantNet) || p.pinned[pinns.IPC]["kernel.shm_rmid_forced"] != "1" || len(p.sandbox) != 0 {
		t.Errorf("pinned runc pod: %+v", p)
	}
	u := &userNS{GIDs: []specs.LinuxIDMapping{{HostID: 100000, Size: 65536}}}
	if p = plan(runc, true, u, nil); p.net["net.ipv4.ping_group_range"] != "100000 165535" {
		t.Errorf("pod with a user namespace: ping range %q, want its own groups on the host", p.net["net.ipv4.ping_group_range"])
	}
	own := map[pinns.Kind]map[string]string{pinns.Net: {"net.ipv4.ping_group_range": "1 1000"}}
	if p = plan(runc, true, u, own); p.net["net.ipv4.ping_group_range"] != "100001 101000" {
		t.Errorf("pod's own range in a user namespace: %q, want it in host gids", p.net["net.ipv4.ping_group_range"])
	}
	for _, bad := range []string{"0 65536", "5 1", "x", "1"} {
		own[pinns.Net]["net.ipv4.ping_group_range"] = bad
		if _, err := e.m.planSysctls(runc, cfg, true, u, own); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ping range %q in a user namespace: %v, want InvalidArgument", bad, err)
		}
	}
	p = plan(runc, false, nil, split)
	if !maps.Equal(p.net, wantNet) || p.pinned != nil || !maps.Equal(p.sandbox, map[string]string{"kernel.shm_rmid_forced": "1"}) {
		t.Errorf("runc pod with a sandbox container: %+v", p)
	}
	p = plan(runsc, false, nil, split)
	if len(p.net) != 0 || len(p.sandbox) != 3 || p.sandbox["net.ipv4.ping_group_range"] != "" {
		t.Errorf("gVisor pod: %+v", p)
	}
	e.cfg.Security.UnprivilegedPorts, e.cfg.Security.UnprivilegedICMP = false, false
	if p = plan(runc, true, nil, nil); len(p.net) != 0 {
		t.Errorf("defaults switched off: %+v", p.net)
	}
	cfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	e.cfg.Security.UnprivilegedPorts = true
	if p = plan(runc, true, nil, nil); len(p.net) != 0 {
		t.Errorf("host-network pod: %+v", p.net)
	}
}
