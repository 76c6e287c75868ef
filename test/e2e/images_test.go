package e2e

import (
	"archive/tar"
	"os"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthrt/berth/test/harness"
	"github.com/berthrt/berth/test/registry"
)

// criImage is the part of crictl's JSON image that the tests read.
type criImage struct {
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags"`
	RepoDigests []string `json:"repoDigests"`
	Size        string   `json:"size"`
	UID         *struct {
		Value string `json:"value"`
	} `json:"uid"`
	Username string `json:"username"`
	Pinned   bool   `json:"pinned"`
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
	var list struct{ Images []criImage }
	b.CrictlJSON(t, &list, "images")
	if len(list.Images) != 2 {
		t.Fatalf("crictl images: %d images, want 2: %+v", len(list.Images), list.Images)
	}
	var appImg, pause criImage
	for _, img := range list.Images {
		switch {
		case slices.Contains(img.RepoTags, "docker.io/library/app:1.0"):
			appImg = img
		case slices.Contains(img.RepoTags, "registry.k8s.io/pause:3.10"):
			pause = img
		}
	}
	cfgName, _ := app.ConfigName()
	if appImg.ID != cfgName.String() {
		t.Errorf("app image id %q, want config digest %s", appImg.ID, cfgName)
	}
	if len(appImg.RepoDigests) != 1 || !strings.HasPrefix(appImg.RepoDigests[0], "docker.io/library/app@sha256:") {
		t.Errorf("app RepoDigests = %v", appImg.RepoDigests)
	}
	if appImg.UID == nil || appImg.UID.Value != "1002" {
		t.Errorf("app uid = %+v, want 1002 from USER", appImg.UID)
	}
	if appImg.Pinned || !pause.Pinned {
		t.Errorf("pinned: app %v pause %v; want only the pause image pinned", appImg.Pinned, pause.Pinned)
	}

	// inspecti finds the image by tag, by id and by digest, with verbose info.
	var status struct {
		Status criImage
		Info   map[string]any
	}
	for _, ref := range []string{"app:1.0", appImg.ID, appImg.RepoDigests[0]} {
		b.CrictlJSON(t, &status, "inspecti", ref)
		if status.Status.ID != appImg.ID {
			t.Errorf("inspecti %s: id %q", ref, status.Status.ID)
		}
	}
	// crictl unfolds the JSON under "info" into the top level.
	if info := status.Info; info["chainID"] == nil || info["imageSpec"] == nil {
		t.Errorf("inspecti info lacks chainID/imageSpec: %v", status.Info)
	}

	var fs struct {
		Status struct {
			ImageFilesystems []struct {
				UsedBytes  struct{ Value string } `json:"usedBytes"`
				InodesUsed struct{ Value string } `json:"inodesUsed"`
			} `json:"imageFilesystems"`
		}
	}
	b.CrictlJSON(t, &fs, "imagefsinfo")
	if ifs := fs.Status.ImageFilesystems; len(ifs) != 1 || ifs[0].UsedBytes.Value == "0" || ifs[0].InodesUsed.Value == "0" {
		t.Errorf("imagefsinfo = %+v", fs)
	}

	b.Crictl(t, "rmi", "app:1.0")
	b.CrictlJSON(t, &list, "images")
	if len(list.Images) != 1 || !slices.Contains(list.Images[0].RepoTags, "registry.k8s.io/pause:3.10") {
		t.Errorf("after rmi: %+v", list.Images)
	}

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
	var info struct {
		Status struct {
			Conditions []struct {
				Type   string
				Status bool
			}
		}
	}
	b.CrictlJSON(t, &info, "info")
	ready := map[string]bool{}
	for _, c := range info.Status.Conditions {
		ready[c.Type] = c.Status
	}
	if !ready["RuntimeReady"] || !ready["NetworkReady"] {
		t.Errorf("conditions = %+v, want RuntimeReady and NetworkReady", info.Status.Conditions)
	}
}
