package e2e

import (
	"archive/tar"
	"os"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

// imageInfo is the part of berthd's verbose image info (which crictl
// inspecti unfolds under "info") the tests read.
type imageInfo struct {
	ID        string   `json:"id"`
	ChainID   string   `json:"chainID"`
	Chain     []string `json:"chain"`
	ImageSpec *struct {
		Config struct {
			User string `json:"User"`
		} `json:"config"`
	} `json:"imageSpec"`
}

func TestImagesWithCrictl(t *testing.T) {
	harness.RequireRoot(t)
	reg := registry.New(t, registry.Options{})
	app := registry.Image(t, v1.Config{User: "1002", Cmd: []string{"sh"}},
		registry.Layer(t, registry.File{Name: "bin/", Type: tar.TypeDir}, registry.File{Name: "bin/sh", Body: "sh", Mode: 0o755}))
	reg.Push(t, "library/app:1.0", app)
	reg.Push(t, "pause:3.10", registry.Image(t, v1.Config{Entrypoint: []string{"/pause"}},
		registry.Layer(t, registry.File{Name: "pause", Body: "pause", Mode: 0o755})))
	b := harness.Start(t, harness.Options{Mirrors: map[string][]string{
		"docker.io":       {"http://" + reg.Host},
		"registry.k8s.io": {"http://" + reg.Host},
	}})

	fi, err := os.Stat(b.Socket)
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, %v; want 0660", fi.Mode(), err)
	}

	// Short names are normalised the way the kubelet does, and served by
	// the mirror of docker.io.
	b.Crictl(t, "pull", "app:1.0")
	b.Crictl(t, "pull", "registry.k8s.io/pause:3.10")
	var list runtimeapi.ListImagesResponse
	b.CrictlProto(t, &list, "images")
	if len(list.GetImages()) != 2 {
		t.Fatalf("crictl images: %d images, want 2: %v", len(list.GetImages()), &list)
	}
	var appImg, pause *runtimeapi.Image
	for _, img := range list.GetImages() {
		switch {
		case slices.Contains(img.GetRepoTags(), "docker.io/library/app:1.0"):
			appImg = img
		case slices.Contains(img.GetRepoTags(), "registry.k8s.io/pause:3.10"):
			pause = img
		}
	}
	t.Run("images", func(t *testing.T) {
		cfgName, _ := app.ConfigName()
		if appImg.GetId() != cfgName.String() {
			t.Errorf("app image id %q, want config digest %s", appImg.GetId(), cfgName)
		}
		if len(appImg.GetRepoDigests()) != 1 || !strings.HasPrefix(appImg.GetRepoDigests()[0], "docker.io/library/app@sha256:") {
			t.Errorf("app RepoDigests = %v", appImg.GetRepoDigests())
		}
		if appImg.GetUid() == nil || appImg.GetUid().GetValue() != 1002 {
			t.Errorf("app uid = %v, want 1002 from USER", appImg.GetUid())
		}
		if appImg.GetPinned() || !pause.GetPinned() {
			t.Errorf("pinned: app %v pause %v; want only the pause image pinned", appImg.GetPinned(), pause.GetPinned())
		}
	})

	// inspecti finds the image by tag, by id and by digest, with verbose info.
	refs := [][2]string{{"tag", "app:1.0"}, {"id", appImg.GetId()}}
	if len(appImg.GetRepoDigests()) > 0 {
		refs = append(refs, [2]string{"digest", appImg.GetRepoDigests()[0]})
	}
	for _, r := range refs {
		ref := r[1]
		t.Run("inspecti by "+r[0], func(t *testing.T) {
			var status runtimeapi.Image
			var info imageInfo
			b.CrictlStatus(t, &status, &info, "inspecti", ref)
			if status.GetId() != appImg.GetId() {
				t.Errorf("inspecti %s: id %q", ref, status.GetId())
			}
			// crictl unfolds the JSON under "info" into the top level.
			if info.ChainID == "" || info.ImageSpec == nil {
				t.Errorf("inspecti info lacks chainID/imageSpec: %+v", info)
			}
		})
	}

	t.Run("imagefsinfo", func(t *testing.T) {
		var fs runtimeapi.ImageFsInfoResponse
		b.CrictlStatus(t, &fs, nil, "imagefsinfo")
		if ifs := fs.GetImageFilesystems(); len(ifs) != 1 || ifs[0].GetUsedBytes().GetValue() == 0 || ifs[0].GetInodesUsed().GetValue() == 0 {
			t.Errorf("imagefsinfo = %v", &fs)
		}
	})

	t.Run("rmi", func(t *testing.T) {
		b.Crictl(t, "rmi", "app:1.0")
		var list runtimeapi.ListImagesResponse
		b.CrictlProto(t, &list, "images")
		if len(list.GetImages()) != 1 || !slices.Contains(list.GetImages()[0].GetRepoTags(), "registry.k8s.io/pause:3.10") {
			t.Errorf("after rmi: %v", &list)
		}
	})

	// A pull from a registry that is not there reaches crictl as
	// RegistryUnavailable.
	out, err := b.TryCrictl(t, "pull", "127.0.0.1:1/nothing:1")
	if err == nil || !strings.Contains(out, "RegistryUnavailable") {
		t.Errorf("pull from a dead registry: %v\n%s", err, out)
	}

	if err := b.Stop(t); err != nil {
		t.Errorf("berthd did not exit 0 on SIGTERM: %v", err)
	}
}

func TestStatusAndVersion(t *testing.T) {
	b := harness.Start(t, harness.Options{})
	out := b.Crictl(t, "version")
	if !strings.Contains(out, "RuntimeName:  berth") || !strings.Contains(out, "RuntimeApiVersion:  v1") {
		t.Errorf("crictl version:\n%s", out)
	}
	var status runtimeapi.RuntimeStatus
	b.CrictlStatus(t, &status, nil, "info")
	ready := map[string]bool{}
	for _, c := range status.GetConditions() {
		ready[c.GetType()] = c.GetStatus()
	}
	if !ready["RuntimeReady"] || !ready["NetworkReady"] {
		t.Errorf("conditions = %v, want RuntimeReady and NetworkReady", status.GetConditions())
	}
}
