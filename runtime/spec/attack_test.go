package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// TestAttackLSMRequestsAreNotDropped: on a node without AppArmor, a pod
// or container that asks for a profile must be refused, naming the field,
// not run unconfined. (SELinux options, with SELinux off, are accepted
// and ignored as containerd does: TestSELinuxOffIgnored.)
func TestAttackLSMRequestsAreNotDropped(t *testing.T) {
	ctr := func(sc *runtimeapi.LinuxContainerSecurityContext) *runtimeapi.ContainerConfig {
		return &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: sc}}
	}
	for _, tc := range []struct {
		name, field string
		sc          *runtimeapi.LinuxContainerSecurityContext
	}{
		{"apparmor RuntimeDefault", "LinuxContainerSecurityContext.apparmor", &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}},
		{"apparmor Localhost", "LinuxContainerSecurityContext.apparmor", &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-deny-write"}}},
		{"apparmor_profile runtime/default", "LinuxContainerSecurityContext.apparmor_profile", &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}},
		{"apparmor_profile localhost", "LinuxContainerSecurityContext.apparmor_profile", &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-deny-write"}},
		{"privileged with a profile", "LinuxContainerSecurityContext.apparmor", &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: tc.sc.GetPrivileged()}
			_, _, err := f.container(t, ctr(tc.sc))
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(fmt.Sprint(err), tc.field) {
				t.Errorf("err = %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}

	// The pod's own requests: refused for its sandbox container and for
	// every container of the pod (whose labels default to the pod's).
	for _, tc := range []struct {
		name, field string
		sc          *runtimeapi.LinuxSandboxSecurityContext
	}{
		{"pod apparmor", "LinuxSandboxSecurityContext.apparmor", &runtimeapi.LinuxSandboxSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.pod.Config.Linux.SecurityContext = tc.sc
			if _, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(fmt.Sprint(err), tc.field) {
				t.Errorf("sandbox: err = %v, want InvalidArgument naming %s", err, tc.field)
			}
			if _, _, err := f.container(t, ctr(nil)); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(fmt.Sprint(err), tc.field) {
				t.Errorf("container: err = %v, want InvalidArgument naming %s", err, tc.field)
			}
		})
	}

	// Asking for nothing is fine.
	f := newFixture(t)
	f.pod.Config.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{SelinuxOptions: &runtimeapi.SELinuxOption{}, Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}
	if _, _, err := f.container(t, ctr(&runtimeapi.LinuxContainerSecurityContext{
		ApparmorProfile: "unconfined", Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, SelinuxOptions: &runtimeapi.SELinuxOption{},
	})); err != nil {
		t.Errorf("unconfined: %v", err)
	}
	if _, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs"); err != nil {
		t.Errorf("unconfined sandbox: %v", err)
	}
}

// TestAttackUnlistedAnnotationsDoNotReachRuntime: crun acts on run.oci.*
// annotations and runsc on dev.gvisor.*; a tenant's pod and container
// annotations reach the runtime only through the handler's allow-list,
// which is empty by default.
func TestAttackUnlistedAnnotationsDoNotReachRuntime(t *testing.T) {
	f := newFixture(t)
	tenant := map[string]string{
		"run.oci.keep_original_groups":  "1",
		"dev.gvisor.spec.mount.x.share": "shared",
		// What runsc groups containers by, and a path berth did not set.
		AnnContainerType: "tenant", AnnSandboxID: "other-pod", AnnSandboxLogDir: "/etc",
	}
	f.pod.Config.Annotations = tenant
	f.pod.Config.LogDirectory = ""
	s, _, err := f.container(t, &runtimeapi.ContainerConfig{Annotations: tenant})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Sandbox(f.rt, f.h, f.pod, &v1.ConfigFile{}, "/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]map[string]string{"container": s.Annotations, "sandbox": sb.Annotations} {
		for k, v := range tenant {
			if a[k] == v {
				t.Errorf("%s spec carries the tenant's annotation %s=%s", name, k, v)
			}
		}
		if a["handler/x"] != "1" || a[AnnSandboxID] != "pod1" {
			t.Errorf("%s spec lost berth's or the handler's annotations: %v", name, a)
		}
	}
}

// fifoPasswd makes a rootfs whose etc/passwd is a FIFO nobody writes.
func fifoPasswd(t *testing.T) (root, fifo string) {
	t.Helper()
	root = t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	fifo = filepath.Join(root, "etc", "passwd")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	return root, fifo
}

// resolveWithin runs ResolveUser and fails the test if it takes more than
// a few seconds; release unblocks what it may be stuck on.
func resolveWithin(t *testing.T, root string, req UserRequest, release func()) (*User, error) {
	t.Helper()
	type result struct {
		u   *User
		err error
	}
	done := make(chan result, 1)
	go func() {
		u, err := ResolveUser(root, req)
		done <- result{u, err}
	}()
	select {
	case r := <-done:
		return r.u, r.err
	case <-time.After(5 * time.Second):
		release()
		t.Fatal("ResolveUser hangs on the image's /etc/passwd")
		return nil, nil
	}
}

// TestAttackImagePasswdFIFO: an image whose /etc/passwd is a FIFO must not
// hang CreateContainer.
func TestAttackImagePasswdFIFO(t *testing.T) {
	root, fifo := fifoPasswd(t)
	_, err := resolveWithin(t, root, UserRequest{ImageUser: "alice"}, func() {
		if fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			unix.Close(fd)
		}
	})
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a FIFO as /etc/passwd: %v, want InvalidArgument", err)
	}
}

// TestAttackImagePasswdDevice: a device node as /etc/passwd is not opened
// and read by root.
func TestAttackImagePasswdDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a device node")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// /dev/null's numbers: harmless if it were opened, but opened it must not be.
	if err := unix.Mknod(filepath.Join(root, "etc", "passwd"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveWithin(t, root, UserRequest{}, func() {}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("a device as /etc/passwd: %v, want InvalidArgument", err)
	}
}

// TestAttackImagePasswdSymlinkToHost: a symlink out of the rootfs to a
// host file does not make berth read that file.
func TestAttackImagePasswdSymlinkToHost(t *testing.T) {
	host := filepath.Join(t.TempDir(), "host-passwd")
	if err := os.WriteFile(host, []byte("hostonly:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{host, "../../../../../../../../" + host} {
		root := t.TempDir()
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, "etc", "passwd")); err != nil {
			t.Fatal(err)
		}
		if u, err := resolveWithin(t, root, UserRequest{ImageUser: "hostonly"}, func() {}); err == nil {
			t.Errorf("symlink to %s: resolved the host's user: %+v", target, u)
		}
	}
}
