package spec

import (
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/host"
)

func TestCgroupParentPerDriver(t *testing.T) {
	pod := func(parent string) *Pod {
		return &Pod{ID: "p1", Config: &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: parent}}}
	}
	for _, c := range []struct {
		driver, parent, want string
		ownCgroup, ownSlice  bool
	}{
		{"cgroupfs", "", "/berth/p1", true, false},
		{"cgroupfs", "/kubepods/pod1", "/kubepods/pod1", false, false},
		{"systemd", "", "berth-p1.slice", false, true},
		{"systemd", "kubepods-burstable-pod1.slice", "kubepods-burstable-pod1.slice", false, false},
		// critest gives the slice's path.
		{"systemd", "/test.slice", "test.slice", false, false},
	} {
		p := pod(c.parent)
		if got := p.CgroupParent(c.driver); got != c.want {
			t.Errorf("%s %q: parent %q, want %q", c.driver, c.parent, got, c.want)
		}
		if p.OwnCgroup(c.driver) != c.ownCgroup || p.OwnSlice(c.driver) != c.ownSlice {
			t.Errorf("%s %q: own cgroup %v, own slice %v", c.driver, c.parent, p.OwnCgroup(c.driver), p.OwnSlice(c.driver))
		}
	}
	h := Host{CgroupDriver: "systemd", CgroupMode: host.CgroupV2}
	if got := CgroupsPath(h, pod(""), "c1"); got != "berth-p1.slice:berth:c1" {
		t.Errorf("systemd path of a pod without a parent: %q", got)
	}
	if d := MemoryCgroupDir(h, CgroupsPath(h, pod(""), "c1")); d != "/sys/fs/cgroup/berth.slice/berth-p1.slice/berth-c1.scope" {
		t.Errorf("its memory cgroup: %q", d)
	}
}

func TestCheckCgroupParent(t *testing.T) {
	for _, c := range []struct {
		driver, parent string
		ok             bool
	}{
		{"cgroupfs", "", true},
		{"cgroupfs", "/kubepods/burstable/pod1", true},
		{"cgroupfs", "kubepods-burstable-pod1.slice", false}, // a systemd kubelet
		{"cgroupfs", "kubepods/pod1", false},                 // relative: the runtime's to place
		{"systemd", "", true},
		{"systemd", "kubepods-burstable-pod1.slice", true},
		{"systemd", "/test.slice", true},
		{"systemd", "/kubepods/burstable/pod1", false}, // a cgroupfs kubelet
		{"systemd", ".slice", false},
	} {
		cfg := &runtimeapi.PodSandboxConfig{Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: c.parent}}
		err := CheckCgroupParent(Host{CgroupDriver: c.driver}, cfg)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
			t.Errorf("%s %q: %v", c.driver, c.parent, err)
		}
	}
}

// TestCrunSystemdSubgroup: crun's containers are their scope, as runc's.
func TestCrunSystemdSubgroup(t *testing.T) {
	p := &Pod{ID: "p1", Config: &runtimeapi.PodSandboxConfig{Annotations: map[string]string{crunSystemdSubgroup: "mine"}}}
	for _, c := range []struct {
		kind, driver string
		set          bool
	}{{"crun", "systemd", true}, {"crun", "cgroupfs", false}, {"runc", "systemd", false}} {
		// A tenant's value, let through, is overridden too.
		a := annotations(Target{Kind: c.kind, PodAnnotations: []string{"run.oci.*"}}, Host{CgroupDriver: c.driver}, p, ContainerTypeApp, nil)
		if v, ok := a[crunSystemdSubgroup]; c.set != (ok && v == "") {
			t.Errorf("%s %s: %s = %q, %v", c.kind, c.driver, crunSystemdSubgroup, v, ok)
		}
	}
}
