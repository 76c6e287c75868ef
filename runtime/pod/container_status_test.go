package pod

import (
	"context"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	shimv1 "github.com/berthrt/berth/proto/berth/shim/v1"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/store"
)

// registryImages is an image store as a node has it after the kubelet
// pulled "registry.example/app:1" and "docker.io/library/app:1" (one
// image under two names) and "plain" (no STOPSIGNAL): found by ID, by
// either name, with normalised tags and digests.
type registryImages struct{ *fakeImages }

// Image IDs are digests: hex.
var (
	appID   = "sha256:" + strings.Repeat("a1", 32)
	plainID = "sha256:" + strings.Repeat("b2", 32)
)

func (r registryImages) Get(ref string) (*image.Image, error) {
	switch ref {
	case appID, "app", "app:1", "docker.io/library/app:1", "registry.example/app:1":
		return &image.Image{ID: appID,
			RepoTags:    []string{"docker.io/library/app:1", "registry.example/app:1"},
			RepoDigests: []string{"docker.io/library/app@sha256:d1", "registry.example/app@sha256:d2"}}, nil
	case plainID, "plain":
		return &image.Image{ID: plainID, RepoDigests: []string{"docker.io/library/plain@sha256:d3"}}, nil
	}
	return nil, errdefs.NotFound("image %q", ref)
}

func (r registryImages) Config(id string) (*v1.ConfigFile, error) {
	cfg, err := r.fakeImages.Config(id)
	if err == nil && id == plainID {
		cfg.Config.StopSignal = ""
	}
	return cfg, err
}

func (e *env) createWith(podID string, mutate func(*runtimeapi.ContainerConfig)) string {
	e.t.Helper()
	cfg := ctrConfig("c")
	mutate(cfg)
	id, err := e.m.CreateContainer(context.Background(), podID, cfg)
	if err != nil {
		e.t.Fatalf("CreateContainer: %v", err)
	}
	return id
}

// TestContainerStatusImage: status and list report the image the kubelet
// asked for by name (its spec kept whole), its digest and its ID, though
// the kubelet creates containers by ID.
func TestContainerStatusImage(t *testing.T) {
	e := newEnv(t)
	e.m.images = registryImages{e.images}
	ctx := context.Background()
	podID := e.runPod("p")
	for _, tc := range []struct {
		name      string
		spec      *runtimeapi.ImageSpec
		wantImage string
		wantRef   string
	}{
		{"kubelet, user's name", &runtimeapi.ImageSpec{Image: appID, UserSpecifiedImage: "registry.example/app:1", RuntimeHandler: "runc", Annotations: map[string]string{"a": "b"}},
			"registry.example/app:1", "registry.example/app@sha256:d2"},
		{"kubelet, user's short name", &runtimeapi.ImageSpec{Image: appID, UserSpecifiedImage: "app:1"},
			"docker.io/library/app:1", "docker.io/library/app@sha256:d1"},
		{"kubelet, no user's name", &runtimeapi.ImageSpec{Image: appID}, "docker.io/library/app:1", "docker.io/library/app@sha256:d1"},
		{"kubelet, user's name of another image", &runtimeapi.ImageSpec{Image: appID, UserSpecifiedImage: "other:1"},
			"docker.io/library/app:1", "docker.io/library/app@sha256:d1"},
		{"by name, as given", &runtimeapi.ImageSpec{Image: "registry.example/app:1"}, "registry.example/app:1", "registry.example/app@sha256:d2"},
		{"short name, as given", &runtimeapi.ImageSpec{Image: "app:1"}, "app:1", "docker.io/library/app@sha256:d1"},
		{"untagged image by ID", &runtimeapi.ImageSpec{Image: plainID}, "docker.io/library/plain@sha256:d3", "docker.io/library/plain@sha256:d3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := e.createWith(podID, func(c *runtimeapi.ContainerConfig) {
				c.Metadata.Name = strings.ReplaceAll(tc.name, " ", "-")
				c.Image = tc.spec
			})
			st, _, err := e.m.ContainerStatus(ctx, id, false)
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, img *runtimeapi.ImageSpec, ref, imageID string) {
				t.Helper()
				wantID := appID
				if strings.Contains(tc.wantRef, "plain") {
					wantID = plainID
				}
				if img.GetImage() != tc.wantImage || ref != tc.wantRef || imageID != wantID {
					t.Errorf("%s: image %q ref %q id %q, want %q %q", what, img.GetImage(), ref, imageID, tc.wantImage, tc.wantRef)
				}
				if img.GetUserSpecifiedImage() != tc.spec.GetUserSpecifiedImage() || img.GetRuntimeHandler() != tc.spec.GetRuntimeHandler() || len(img.GetAnnotations()) != len(tc.spec.GetAnnotations()) {
					t.Errorf("%s: spec %v, want the given one's fields kept from %v", what, img, tc.spec)
				}
			}
			check("status", st.Image, st.ImageRef, st.ImageId)
			l := e.m.ListContainers(ctx, &runtimeapi.ContainerFilter{Id: id})
			if len(l) != 1 {
				t.Fatalf("list: %v", l)
			}
			check("list", l[0].Image, l[0].ImageRef, l[0].ImageId)
			if s := e.bundleSpec(id); s.Annotations["io.kubernetes.cri.image-name"] == "" || strings.HasPrefix(s.Annotations["io.kubernetes.cri.image-name"], "sha256:") {
				t.Errorf("image-name annotation %q", s.Annotations["io.kubernetes.cri.image-name"])
			}
		})
	}
}

// A container recorded by an earlier berth, with the kubelet's image ID
// as its image name and no digest, reads back with the names.
func TestContainerStatusImageOfOldRecord(t *testing.T) {
	e := newEnv(t)
	e.m.images = registryImages{e.images}
	ctx := context.Background()
	podID := e.runPod("p")
	id := e.createWith(podID, func(c *runtimeapi.ContainerConfig) {
		c.Image = &runtimeapi.ImageSpec{Image: appID, UserSpecifiedImage: "registry.example/app:1"}
	})
	c, err := e.m.getContainer(id)
	if err != nil {
		t.Fatal(err)
	}
	old := c.snapshot()
	old.ImageName, old.ImageRef = appID, appID
	if err := e.m.db.Update(func(tx *store.Tx) error { return tx.Put(bucketContainers, id, old) }); err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.m.images = registryImages{e.images}
	st, _, err := e.m.ContainerStatus(ctx, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if st.Image.GetImage() != "registry.example/app:1" || st.ImageRef != "registry.example/app@sha256:d2" || st.ImageId != appID {
		t.Errorf("old record: image %q ref %q id %q", st.Image.GetImage(), st.ImageRef, st.ImageId)
	}
	// The image gone: what the record says.
	e.restart()
	st, _, err = e.m.ContainerStatus(ctx, id, false)
	if err != nil || st.ImageId != appID {
		t.Errorf("old record, image gone: %v %v", st, err)
	}
}

// TestContainerStatusStopSignal: the signal StopContainer would send.
func TestContainerStatusStopSignal(t *testing.T) {
	e := newEnv(t)
	e.m.images = registryImages{e.images}
	ctx := context.Background()
	podID := e.runPod("p")
	for _, tc := range []struct {
		name  string
		image string
		req   runtimeapi.Signal
		want  runtimeapi.Signal
	}{
		{"image's", "app", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, runtimeapi.Signal_SIGNAL_SIGINT},
		{"request's", "app", runtimeapi.Signal_SIGNAL_SIGUSR1, runtimeapi.Signal_SIGNAL_SIGUSR1},
		{"request's real-time", "app", runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3, runtimeapi.Signal_SIGNAL_SIGRTMINPLUS3},
		{"default", "plain", runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, runtimeapi.Signal_SIGNAL_SIGTERM},
	} {
		id := e.createWith(podID, func(c *runtimeapi.ContainerConfig) {
			c.Metadata.Name = strings.ReplaceAll(tc.name, " ", "-")
			c.Image = &runtimeapi.ImageSpec{Image: tc.image}
			c.StopSignal = tc.req
		})
		if st, _, err := e.m.ContainerStatus(ctx, id, false); err != nil || st.StopSignal != tc.want {
			t.Errorf("%s: stop signal %v (%v), want %v", tc.name, st.GetStopSignal(), err, tc.want)
		}
	}
	// Records without a signal.
	if s := effectiveStopSignal(0, runtimeapi.Signal_SIGNAL_SIGHUP); s != runtimeapi.Signal_SIGNAL_SIGHUP {
		t.Errorf("no record, request's: %v", s)
	}
	if s := effectiveStopSignal(0, runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT); s != runtimeapi.Signal_SIGNAL_SIGTERM {
		t.Errorf("no record: %v", s)
	}
}

// TestUpdateResourcesByState: as containerd, a created or running
// container is updated live, an exited one in its spec and status only;
// each reports the new resources.
func TestUpdateResourcesByState(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	podID := e.runPod("p")
	shim := e.shimOf(podID)
	update := func(id string, shares int64) error {
		return e.m.UpdateContainerResources(ctx, id, &runtimeapi.LinuxContainerResources{CpuShares: shares, MemoryLimitInBytes: 64 << 20})
	}
	reported := func(what, id string, shares int64) {
		t.Helper()
		st, _, err := e.m.ContainerStatus(ctx, id, false)
		if err != nil || st.Resources.GetLinux().GetCpuShares() != shares {
			t.Errorf("%s: status resources %v (%v), want %d shares", what, st.GetResources(), err, shares)
		}
		s := e.bundleSpec(id)
		if got := s.Linux.Resources.CPU.Shares; got == nil || int64(*got) != shares || *s.Linux.Resources.Memory.Limit != 64<<20 || len(s.Linux.Resources.Devices) == 0 {
			t.Errorf("%s: spec resources %+v", what, s.Linux.Resources)
		}
	}

	created := e.createWith(podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "created" })
	if err := update(created, 300); err != nil {
		t.Fatalf("created: %v", err)
	}
	if n := shim.called("Update"); n != 1 {
		t.Errorf("created: %d live updates, want 1", n)
	}
	reported("created", created, 300)

	exited := e.createWith(podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "exited" })
	if err := e.m.StartContainer(ctx, exited); err != nil {
		t.Fatal(err)
	}
	if err := e.m.StopContainer(ctx, exited, 5); err != nil {
		t.Fatal(err)
	}
	if err := update(exited, 400); err != nil {
		t.Fatalf("exited: %v", err)
	}
	if n := shim.called("Update"); n != 1 {
		t.Errorf("exited: the runtime was asked (%d updates)", n)
	}
	reported("exited", exited, 400)

	// Running as berth last heard, exited in the runtime: the live update
	// fails, the exit is recorded and the update stands.
	gone := e.createWith(podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "gone" })
	if err := e.m.StartContainer(ctx, gone); err != nil {
		t.Fatal(err)
	}
	shim.set("Update", errInjected)
	shim.mu.Lock()
	shim.ctrs[gone].Status = shimv1.Status_STATUS_STOPPED
	shim.mu.Unlock()
	if err := update(gone, 500); err != nil {
		t.Fatalf("exited meanwhile: %v", err)
	}
	if st, _, _ := e.m.ContainerStatus(ctx, gone, false); st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("exited meanwhile: state %v", st.State)
	}
	reported("exited meanwhile", gone, 500)

	// Still running: the runtime's failure is the answer, nothing recorded.
	running := e.createWith(podID, func(c *runtimeapi.ContainerConfig) { c.Metadata.Name = "running" })
	if err := e.m.StartContainer(ctx, running); err != nil {
		t.Fatal(err)
	}
	if err := update(running, 600); !errors.Is(err, errInjected) {
		t.Errorf("failed live update: %v", err)
	}
	if st, _, _ := e.m.ContainerStatus(ctx, running, false); st.Resources.GetLinux().GetCpuShares() != 512 {
		t.Errorf("failed live update recorded: %v", st.Resources)
	}
	shim.set("Update", nil)

	if err := update("missing", 1); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing container: %v", err)
	}
}
