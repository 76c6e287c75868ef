package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/image"
)

// sortedImages lists fakeImages in one order every time (a map's is
// random), so a stream and its List can be compared item by item; err
// makes List fail.
type sortedImages struct {
	*fakeImages
	err error
}

func (s sortedImages) List() ([]image.Image, error) {
	if s.err != nil {
		return nil, s.err
	}
	l, _ := s.fakeImages.List()
	sort.Slice(l, func(i, j int) bool { return l[i].ID < l[j].ID })
	return l, nil
}

// manyImages is a store of n images, each with a tag, a digest and a user.
func manyImages(n int) *fakeImages {
	f := &fakeImages{imgs: map[string]*image.Image{}, cfg: map[string]*v1.ConfigFile{}}
	for i := range n {
		id := "sha256:" + hexID("", i)
		tag := fmt.Sprintf("registry.example.com/team/service-%d:v1.%d.0", i, i%7)
		img := &image.Image{ID: id, RepoTags: []string{tag},
			RepoDigests: []string{fmt.Sprintf("registry.example.com/team/service-%d@sha256:%s", i, hexID("", i+1))},
			Size:        int64(1000 * i), Chain: []string{"sha256:c"}}
		f.imgs[id], f.imgs[tag] = img, img
		f.cfg[id] = &v1.ConfigFile{Config: v1.Config{User: fmt.Sprint(1000 + i%3)}}
	}
	f.imgs["sha256:pause"] = &image.Image{ID: "sha256:pause", RepoTags: []string{"registry.k8s.io/pause:3.10"}, Chain: []string{"sha256:p"}}
	f.cfg["sha256:pause"] = &v1.ConfigFile{Config: v1.Config{User: "65535"}}
	return f
}

func streamImages(t *testing.T, s *ImageService, flt *runtimeapi.ImageFilter) ([]*runtimeapi.StreamImagesResponse, error) {
	t.Helper()
	st := &fakeStream[runtimeapi.StreamImagesResponse]{ctx: context.Background()}
	err := s.StreamImages(&runtimeapi.StreamImagesRequest{Filter: flt}, st)
	return st.sent, err
}

// TestStreamImagesEqualsListImages: the same images as ListImages for the
// same filter, in its order, in pages; none for a filter that matches
// nothing; List's error is the stream's.
func TestStreamImagesEqualsListImages(t *testing.T) {
	s := &ImageService{Images: sortedImages{fakeImages: manyImages(3000)}, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	for _, ref := range []string{"", "registry.example.com/team/service-42:v1.0.0", "sha256:pause", "missing:1"} {
		var flt *runtimeapi.ImageFilter
		if ref != "" {
			flt = &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: ref}}
		}
		list, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: flt})
		if err != nil {
			t.Fatal(err)
		}
		pages, err := streamImages(t, s, flt)
		if err != nil {
			t.Fatal(err)
		}
		var got []*runtimeapi.Image
		for _, p := range pages {
			if len(p.Images) == 0 {
				t.Errorf("filter %q: a response without images", ref)
			}
			got = append(got, p.Images...)
		}
		sameItems(t, fmt.Sprintf("images, filter %q", ref), msgs(got), msgs(list.Images))
		switch {
		case ref == "" && len(pages) < 3:
			t.Errorf("3,001 images came in %d responses", len(pages))
		case ref == "missing:1" && len(pages) != 0:
			t.Errorf("no image matches, yet %d responses", len(pages))
		case ref != "" && ref != "missing:1" && len(got) != 1:
			t.Errorf("filter %q streamed %d images", ref, len(got))
		}
	}

	broken := &ImageService{Images: sortedImages{fakeImages: manyImages(1), err: errors.New("store unreadable")}, Log: slog.New(slog.DiscardHandler)}
	if pages, err := streamImages(t, broken, nil); err == nil || len(pages) != 0 {
		t.Errorf("a failing list streamed %d pages, err %v", len(pages), err)
	}
}

// TestStreamImagesStopsWhenClientCancels: no page goes to a client gone.
func TestStreamImagesStopsWhenClientCancels(t *testing.T) {
	s := &ImageService{Images: sortedImages{fakeImages: manyImages(3000)}, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	st := &fakeStream[runtimeapi.StreamImagesResponse]{ctx: ctx, afterSend: cancel}
	if err := s.StreamImages(&runtimeapi.StreamImagesRequest{}, st); !errors.Is(err, context.Canceled) || len(st.sent) != 1 {
		t.Errorf("cancelled after the first page: err %v, %d pages", err, len(st.sent))
	}
}
