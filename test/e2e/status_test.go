package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/harness"
)

// statusHandlers are the handlers these tests run on: the ones that run
// containers in the node's kernel, with its devices and cgroups.
var statusHandlers = []string{"runc", "crun"}

// TestContainerStatusImageAndStopSignal: a container created as the
// kubelet creates it (by the image ID PullImage answered, with the name
// the user wrote) reports that name, its digest and its ID, in status and
// list; its stop signal is the request's, else the image's STOPSIGNAL,
// else SIGTERM, and it is the signal StopContainer sends.
func TestContainerStatusImageAndStopSignal(t *testing.T) {
	for _, handler := range statusHandlers {
		t.Run(handler, func(t *testing.T) {
			harness.RequireRoot(t)
			reg := fixtures.Registry(t)
			// A systemd-like image: it stops on SIGRTMIN+3 (signal 37).
			reg.Push(t, "library/stopper:1", fixtures.Busybox(t, v1.Config{StopSignal: "SIGRTMIN+3"}))
			b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: handler})
			ctx := context.Background()
			rt, img := b.Client(t), b.ImageClient(t)
			pull := func(name string) string {
				resp, err := img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: name}})
				if err != nil {
					t.Fatalf("PullImage %s: %v", name, err)
				}
				return resp.GetImageRef()
			}
			busyboxID, stopperID := pull("busybox:1.36"), pull("stopper:1")

			dir := t.TempDir()
			before := b.CountLeaks(t)
			podCfg := podSpec(dir, "status")
			podResp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
			if err != nil {
				t.Fatalf("RunPodSandbox: %v", err)
			}
			pod := podResp.GetPodSandboxId()
			defer waitNoLeaks(t, b, before)
			defer b.Crictl(t, "rmp", "-f", pod)
			// Each container traps every signal it may get and exits with
			// a code naming it.
			const script = `trap 'exit 10' USR1; trap 'exit 12' USR2; trap 'exit 37' 37; trap 'exit 15' TERM; while :; do sleep 0.1; done`
			create := func(name, imageID, user string, sig runtimeapi.Signal) string {
				cfg := ctrSpec(name, "sh", "-c", script)
				cfg.Image = &runtimeapi.ImageSpec{Image: imageID, UserSpecifiedImage: user}
				cfg.StopSignal = sig
				resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
				if err != nil {
					t.Fatalf("CreateContainer %s: %v\n%s", name, err, b.Log())
				}
				return resp.GetContainerId()
			}

			for _, tc := range []struct {
				name, imageID, user string
				sig                 runtimeapi.Signal
				wantImage, wantRepo string
				wantSig             runtimeapi.Signal
				wantExit            int32
			}{
				{"default", busyboxID, "busybox:1.36", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT,
					"docker.io/library/busybox:1.36", "docker.io/library/busybox", runtimeapi.Signal_SIGNAL_SIGTERM, 15},
				{"image", stopperID, "stopper:1", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT,
					"docker.io/library/stopper:1", "docker.io/library/stopper", runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3, 37},
				{"request", stopperID, "stopper:1", runtimeapi.Signal_SIGNAL_SIGUSR2,
					"docker.io/library/stopper:1", "docker.io/library/stopper", runtimeapi.Signal_SIGNAL_SIGUSR2, 12},
				{"no-user-name", busyboxID, "", runtimeapi.Signal_SIGNAL_SIGUSR1,
					"docker.io/library/busybox:1.36", "docker.io/library/busybox", runtimeapi.Signal_SIGNAL_SIGUSR1, 10},
			} {
				t.Run(tc.name, func(t *testing.T) {
					id := create(tc.name, tc.imageID, tc.user, tc.sig)
					st := b.ContainerStatus(t, id, nil)
					if st.GetImage().GetImage() != tc.wantImage || st.GetImage().GetUserSpecifiedImage() != tc.user {
						t.Errorf("status image %v, want %q (user's %q)", st.GetImage(), tc.wantImage, tc.user)
					}
					if !strings.HasPrefix(st.GetImageRef(), tc.wantRepo+"@sha256:") || st.GetImageId() != tc.imageID {
						t.Errorf("status image_ref %q image_id %q, want %s@sha256:... and %s", st.GetImageRef(), st.GetImageId(), tc.wantRepo, tc.imageID)
					}
					if st.GetStopSignal() != tc.wantSig {
						t.Errorf("status stop_signal %v, want %v", st.GetStopSignal(), tc.wantSig)
					}
					list, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
					if err != nil || len(list.GetContainers()) != 1 {
						t.Fatalf("ListContainers: %v %v", list, err)
					}
					if c := list.GetContainers()[0]; c.GetImage().GetImage() != tc.wantImage || c.GetImage().GetUserSpecifiedImage() != tc.user ||
						c.GetImageRef() != st.GetImageRef() || c.GetImageId() != tc.imageID {
						t.Errorf("listed image %v ref %q id %q, want status's", c.GetImage(), c.GetImageRef(), c.GetImageId())
					}
					if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
						t.Fatal(err)
					}
					waitState(t, b, id, runtimeapi.ContainerState_CONTAINER_RUNNING)
					// Give the shell a moment to set its traps.
					time.Sleep(300 * time.Millisecond)
					if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
						t.Fatal(err)
					}
					if st := waitState(t, b, id, runtimeapi.ContainerState_CONTAINER_EXITED).Status; st.GetExitCode() != tc.wantExit {
						t.Errorf("stopped with exit code %d, want %d (the trap of %v)", st.GetExitCode(), tc.wantExit, tc.wantSig)
					}
					// Exited, the container still reports them.
					if st := b.ContainerStatus(t, id, nil); st.GetStopSignal() != tc.wantSig || st.GetImage().GetImage() != tc.wantImage {
						t.Errorf("exited: stop_signal %v image %v", st.GetStopSignal(), st.GetImage())
					}
				})
			}

			t.Run("update exited", func(t *testing.T) {
				// As containerd: accepted, and reported.
				id := create("update-exited", busyboxID, "busybox:1.36", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT)
				if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
					t.Fatal(err)
				}
				if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10}); err != nil {
					t.Fatal(err)
				}
				res := &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 64 << 20}
				if _, err := rt.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id, Linux: res}); err != nil {
					t.Fatalf("UpdateContainerResources of an exited container: %v", err)
				}
				if st := b.ContainerStatus(t, id, nil); st.GetResources().GetLinux().GetMemoryLimitInBytes() != 64<<20 {
					t.Errorf("resources after the update: %v", st.GetResources())
				}
			})

			t.Run("stats", func(t *testing.T) {
				id := create("stats", busyboxID, "busybox:1.36", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT)
				if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
					t.Fatal(err)
				}
				waitState(t, b, id, runtimeapi.ContainerState_CONTAINER_RUNNING)
				resp, err := rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
				if err != nil {
					t.Fatal(err)
				}
				s := resp.GetStats()
				if memsw() && s.GetSwap().GetSwapUsageBytes() == nil {
					t.Errorf("the kernel accounts swap (memory.memsw), the stats have none: %v", s.GetSwap())
				}
				if cgroup2Pressure() && (s.GetCpu().GetPsi().GetSome() == nil || s.GetMemory().GetPsi() == nil || s.GetIo().GetPsi() == nil) {
					t.Errorf("the kernel keeps PSI in a cgroup2 tree, the stats have none: cpu %v memory %v io %v", s.GetCpu().GetPsi(), s.GetMemory().GetPsi(), s.GetIo())
				}
				ps, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod})
				if err != nil {
					t.Fatal(err)
				}
				if cgroup2Pressure() && ps.GetStats().GetLinux().GetIo().GetPsi() == nil {
					t.Errorf("pod stats without I/O pressure: %v", ps.GetStats().GetLinux().GetIo())
				}
			})
		})
	}
}

// memsw reports whether the node accounts swap in cgroup v1.
func memsw() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.usage_in_bytes")
	return err == nil
}

// cgroup2Pressure reports whether the node keeps PSI and has a cgroup2
// tree containers are put in (cgroup v2, or hybrid's unified).
func cgroup2Pressure() bool {
	if _, err := os.Stat("/proc/pressure/cpu"); err != nil {
		return false
	}
	for _, p := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return true
		}
	}
	return false
}

// TestDeviceDirectory: a device whose host path is a directory gives the
// container every device node below it, where it asked, and nothing a
// symlink in it points at; with device_ownership_from_security_context
// the nodes are the container user's (so a non-root container opens
// them), else the host's owner's.
func TestDeviceDirectory(t *testing.T) {
	for _, handler := range statusHandlers {
		t.Run(handler, func(t *testing.T) {
			harness.RequireRoot(t)
			devs := t.TempDir()
			mknod := func(rel string, major, minor uint32) {
				p := filepath.Join(devs, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mknod(p, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(p, 4321, 4321); err != nil {
					t.Fatal(err)
				}
			}
			mknod("a/null1", 1, 3)
			mknod("b/c/zero1", 1, 5)
			// Not to be followed: a link to the host's /dev and one to a
			// node outside the directory.
			if err := os.Symlink("/dev", filepath.Join(devs, "hostdev")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/full", filepath.Join(devs, "full")); err != nil {
				t.Fatal(err)
			}

			reg := fixtures.Registry(t)
			b := harness.Start(t, harness.Options{Mirrors: fixtures.Mirrors(reg), DefaultRuntime: handler,
				Extra: "[security]\ndevice_ownership_from_security_context = true\n"})
			b.Crictl(t, "pull", "busybox:1.36")
			dir := t.TempDir()
			before := b.CountLeaks(t)
			podCfg := podSpec(dir, "devdir")
			ctx := context.Background()
			rt := b.Client(t)
			podResp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
			if err != nil {
				t.Fatalf("RunPodSandbox: %v", err)
			}
			pod := podResp.GetPodSandboxId()
			defer waitNoLeaks(t, b, before)
			defer b.Crictl(t, "rmp", "-f", pod)

			const script = `cd /dev/berth && find . | sort | tr '\n' ' '; echo; stat -c '%n %u:%g %t:%T %F' a/null1 b/c/zero1; ` +
				`echo x > a/null1 && head -c 3 b/c/zero1 | od -An -tx1 | tr -d ' \n' && echo ' opened'`
			run := func(name string, uid *runtimeapi.Int64Value, gid *runtimeapi.Int64Value) string {
				cfg := ctrSpec(name, "sleep", "600")
				cfg.Devices = []*runtimeapi.Device{{HostPath: devs, ContainerPath: "/dev/berth", Permissions: "rw"}}
				cfg.Linux.SecurityContext.RunAsUser, cfg.Linux.SecurityContext.RunAsGroup = uid, gid
				resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, Config: cfg, SandboxConfig: podCfg})
				if err != nil {
					t.Fatalf("CreateContainer: %v\n%s", err, b.Log())
				}
				id := resp.GetContainerId()
				if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
					t.Fatal(err)
				}
				out, err := b.TryCrictl(t, "exec", "-s", id, "sh", "-c", script)
				if err != nil {
					t.Logf("exec: %v", err)
				}
				return out
			}
			const listing = ". ./a ./a/null1 ./b ./b/c ./b/c/zero1 \n"

			t.Run("security context owner", func(t *testing.T) {
				out := run("owned", &runtimeapi.Int64Value{Value: 1234}, &runtimeapi.Int64Value{Value: 5678})
				want := listing + "a/null1 1234:5678 1:3 character special file\nb/c/zero1 1234:5678 1:5 character special file\n000000 opened\n"
				if strings.TrimSpace(out) != strings.TrimSpace(want) {
					t.Errorf("in a container of user 1234:5678:\n%s\nwant\n%s", out, want)
				}
			})
			t.Run("host owner", func(t *testing.T) {
				// Root (no run_as_user): ownership is the host node's.
				out := run("root", nil, nil)
				want := listing + "a/null1 4321:4321 1:3 character special file\nb/c/zero1 4321:4321 1:5 character special file\n000000 opened\n"
				if strings.TrimSpace(out) != strings.TrimSpace(want) {
					t.Errorf("in a root container:\n%s\nwant\n%s", out, want)
				}
			})
		})
	}
}
