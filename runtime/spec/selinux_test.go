package spec

import (
	"fmt"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestSELinuxLabels(t *testing.T) {
	lvl := podLevel("pod1")
	for _, tc := range []struct {
		name           string
		pod, ctr       *runtimeapi.SELinuxOption
		privileged     bool
		process, mount string
		class          error
		naming         string
	}{
		{
			name:    "nothing asked: the defaults, the pod's categories",
			process: "system_u:system_r:container_t:" + lvl, mount: "system_u:object_r:container_file_t:" + lvl,
		},
		{
			name: "every part given",
			ctr:  &runtimeapi.SELinuxOption{User: "user_u", Role: "user_r", Type: "spc_t", Level: "s0:c1,c2"},
			// The mount label keeps container_file_t: only user and
			// level follow.
			process: "user_u:user_r:spc_t:s0:c1,c2", mount: "user_u:object_r:container_file_t:s0:c1,c2",
		},
		{
			name: "parts missing come from the pod, then the defaults",
			pod:  &runtimeapi.SELinuxOption{Level: "s0:c5,c6", Type: "pod_t"},
			ctr:  &runtimeapi.SELinuxOption{Type: "ctr_t"},
			// Containers of a pod share its level, hence its files.
			process: "system_u:system_r:ctr_t:s0:c5,c6", mount: "system_u:object_r:container_file_t:s0:c5,c6",
		},
		{
			name: "the pod's options alone", pod: &runtimeapi.SELinuxOption{Level: "s0-s0:c0.c1023"},
			process: "system_u:system_r:container_t:s0-s0:c0.c1023", mount: "system_u:object_r:container_file_t:s0-s0:c0.c1023",
		},
		{
			name: "privileged: the runtime's process label, the pod's files", privileged: true,
			process: "", mount: "system_u:object_r:container_file_t:" + lvl,
		},
		{name: "malformed level", ctr: &runtimeapi.SELinuxOption{Level: "s0:c1;c2"}, class: errdefs.ErrInvalidArgument, naming: "LinuxContainerSecurityContext.selinux_options"},
		{name: "a part that would shift the others", ctr: &runtimeapi.SELinuxOption{Type: "spc_t:s0"}, class: errdefs.ErrInvalidArgument, naming: "LinuxContainerSecurityContext.selinux_options"},
		{name: "the pod's malformed", pod: &runtimeapi.SELinuxOption{User: "a b"}, class: errdefs.ErrInvalidArgument, naming: "LinuxSandboxSecurityContext.selinux_options"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.h.SELinux = true
			f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: tc.pod, Privileged: tc.privileged}
			s, _, err := f.container(t, &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{
				SecurityContext: &runtimeapi.LinuxContainerSecurityContext{SelinuxOptions: tc.ctr, Privileged: tc.privileged},
			}})
			wantErr(t, err, tc.class, tc.naming)
			if err != nil {
				return
			}
			if s.Process.SelinuxLabel != tc.process || s.Linux.MountLabel != tc.mount {
				t.Errorf("labels %q, %q; want %q, %q", s.Process.SelinuxLabel, s.Linux.MountLabel, tc.process, tc.mount)
			}
		})
	}
}

func TestSELinuxSandbox(t *testing.T) {
	f := newFixture(t)
	f.h.SELinux = true
	f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: &runtimeapi.SELinuxOption{Type: "pod_t"}}
	s, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	lvl := podLevel("pod1")
	if s.Process.SelinuxLabel != "system_u:system_r:pod_t:"+lvl || s.Linux.MountLabel != "system_u:object_r:container_file_t:"+lvl {
		t.Errorf("sandbox labels %q, %q", s.Process.SelinuxLabel, s.Linux.MountLabel)
	}
	// The pod's containers get the same level.
	c, _, err := f.container(t, &runtimeapi.ContainerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Linux.MountLabel != s.Linux.MountLabel {
		t.Errorf("container mount label %q, pod's %q", c.Linux.MountLabel, s.Linux.MountLabel)
	}
}

// TestSELinuxOffIgnored: with SELinux off (enable_selinux unset, or a
// host without it), options are accepted and nothing is labeled, as
// containerd does; malformed ones are still refused.
func TestSELinuxOffIgnored(t *testing.T) {
	f := newFixture(t)
	opts := &runtimeapi.SELinuxOption{User: "system_u", Role: "system_r", Type: "spc_t", Level: "s0:c1,c2"}
	f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: opts}
	cfg := &runtimeapi.ContainerConfig{
		Linux:  &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{SelinuxOptions: opts}},
		Mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: t.TempDir(), SelinuxRelabel: true}},
	}
	s, _, err := f.container(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.SelinuxLabel != "" || s.Linux.MountLabel != "" {
		t.Errorf("labels %q, %q with SELinux off", s.Process.SelinuxLabel, s.Linux.MountLabel)
	}
	if r := Relabels(f.h, f.pod, cfg, s); r != nil {
		t.Errorf("relabels %v with SELinux off", r)
	}
	sb, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs")
	if err != nil || sb.Process.SelinuxLabel != "" || sb.Linux.MountLabel != "" {
		t.Errorf("sandbox: %v", err)
	}
	if err := CheckSandboxSecurity(f.h, f.pod.Config); err != nil {
		t.Error(err)
	}
	f.pod.Config.Linux.SecurityContext.SelinuxOptions = &runtimeapi.SELinuxOption{Level: "secret"}
	wantErr(t, CheckSandboxSecurity(f.h, f.pod.Config), errdefs.ErrInvalidArgument, "LinuxSandboxSecurityContext.selinux_options")
}

func TestSELinuxRelabels(t *testing.T) {
	f := newFixture(t)
	f.h.SELinux = true
	asked, notAsked := t.TempDir(), t.TempDir()
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/data/", HostPath: asked, SelinuxRelabel: true},
		{ContainerPath: "/other", HostPath: notAsked},
	}}
	s, _, err := f.container(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := Relabels(f.h, f.pod, cfg, s)
	// The pod's files too, as containerd relabels them.
	want := []string{asked, "/pod/hostname", "/pod/hosts", "/pod/resolv.conf", "/pod/shm"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("relabels %v, want %v", got, want)
	}
}

func TestPodLevel(t *testing.T) {
	seen := map[string]bool{}
	for i := range 200 {
		id := fmt.Sprintf("pod-%d", i)
		l := podLevel(id)
		if l != podLevel(id) {
			t.Fatalf("%s: level not stable", id)
		}
		var a, b int
		if _, err := fmt.Sscanf(l, "s0:c%d,c%d", &a, &b); err != nil || a >= b || b > 1023 || !selinuxLevel.MatchString(l) {
			t.Errorf("%s: level %q, want s0:cA,cB with A < B <= 1023", id, l)
		}
		seen[l] = true
	}
	if len(seen) < 195 {
		t.Errorf("%d distinct levels for 200 pods", len(seen))
	}
}
