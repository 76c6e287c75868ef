package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/logctx"
)

func TestToStatus(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   codes.Code
		prefix string
	}{
		{errdefs.NotFound("pod %q", "x"), codes.NotFound, ""},
		{fmt.Errorf("wrapped: %w", errdefs.InvalidArgument("bad")), codes.InvalidArgument, ""},
		{errdefs.AlreadyExists("name"), codes.AlreadyExists, ""},
		{errdefs.FailedPrecondition("not ready"), codes.FailedPrecondition, ""},
		{fmt.Errorf("pull: %w: dial", errdefs.ErrRegistryUnavailable), codes.Unknown, "RegistryUnavailable: "},
		{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{fmt.Errorf("shim: %w", status.Error(codes.NotFound, "gone")), codes.NotFound, ""},
		{errors.New("plain"), codes.Unknown, "plain"},
	} {
		st := status.Convert(toStatus(tc.err))
		if st.Code() != tc.code || !strings.HasPrefix(st.Message(), tc.prefix) {
			t.Errorf("%v -> %s %q, want %s prefix %q", tc.err, st.Code(), st.Message(), tc.code, tc.prefix)
		}
	}
	if toStatus(nil) != nil {
		t.Error("nil error mapped to a status")
	}
}

func TestInterceptorLogsAndRecovers(t *testing.T) {
	var buf bytes.Buffer
	ic := Interceptors{Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/RunPodSandbox"}
	var sawLogger bool
	_, err := ic.Unary(context.Background(), nil, info, func(ctx context.Context, req any) (any, error) {
		logctx.From(ctx, nil).Info("inside")
		sawLogger = logctx.From(ctx, nil) != nil
		return nil, errdefs.NotFound("pod x")
	})
	if status.Code(err) != codes.NotFound || !sawLogger {
		t.Errorf("err %v, logger in context %v", err, sawLogger)
	}
	out := buf.String()
	if !strings.Contains(out, "method=RunPodSandbox") || !strings.Contains(out, "req=") || !strings.Contains(out, "msg=inside") {
		t.Errorf("log lacks request id/method:\n%s", out)
	}
	_, err = ic.Unary(context.Background(), nil, info, func(ctx context.Context, req any) (any, error) { panic("boom") })
	if status.Code(err) != codes.Internal || !strings.Contains(buf.String(), "panic") {
		t.Errorf("panic became %v", err)
	}
	buf.Reset()
	listInfo := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/ListContainers"}
	_, _ = ic.Unary(context.Background(), nil, listInfo, func(ctx context.Context, req any) (any, error) { return nil, nil })
	if !strings.Contains(buf.String(), "level=DEBUG") {
		t.Errorf("a read is logged above Debug: %s", buf.String())
	}
}

// fakeImages is an in-memory image store.
type fakeImages struct {
	imgs   map[string]*image.Image
	cfg    map[string]*v1.ConfigFile
	pulled []string
}

func (f *fakeImages) Pull(ctx context.Context, ref string, auth *image.Auth) (*image.Image, error) {
	f.pulled = append(f.pulled, ref)
	if img, ok := f.imgs[ref]; ok {
		return img, nil
	}
	return nil, errdefs.NotFound("image %s", ref)
}

func (f *fakeImages) Get(ref string) (*image.Image, error) {
	if img, ok := f.imgs[ref]; ok {
		return img, nil
	}
	return nil, errdefs.NotFound("image %s", ref)
}

func (f *fakeImages) List() ([]image.Image, error) {
	var out []image.Image
	for k, v := range f.imgs {
		if strings.HasPrefix(k, "sha256:") {
			out = append(out, *v)
		}
	}
	return out, nil
}

func (f *fakeImages) Remove(ref string) error { delete(f.imgs, ref); return nil }
func (f *fakeImages) Usage() (image.FsUsage, error) {
	return image.FsUsage{Mountpoint: "/x", Bytes: 10, Inodes: 2}, nil
}
func (f *fakeImages) Config(id string) (*v1.ConfigFile, error) { return f.cfg[id], nil }
func (f *fakeImages) IsPinned(img *image.Image) bool           { return img.ID == "sha256:pause" }

func TestImageService(t *testing.T) {
	app := &image.Image{ID: "sha256:app", RepoTags: []string{"docker.io/library/app:1"}, Size: 42, Chain: []string{"sha256:c"}}
	pause := &image.Image{ID: "sha256:pause", RepoTags: []string{"registry.k8s.io/pause:3.10"}, Chain: []string{"sha256:p"}}
	f := &fakeImages{
		imgs: map[string]*image.Image{"app:1": app, "sha256:app": app, "sha256:pause": pause},
		cfg:  map[string]*v1.ConfigFile{"sha256:app": {Config: v1.Config{User: "1003:1004"}}, "sha256:pause": {Config: v1.Config{User: "www-data"}}},
	}
	s := &ImageService{Images: f, Log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()

	if _, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{}); status.Code(toStatus(err)) != codes.InvalidArgument {
		t.Errorf("pull without image: %v", err)
	}
	resp, err := s.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "app:1"}})
	if err != nil || resp.ImageRef != "sha256:app" {
		t.Errorf("pull = %v, %v", resp, err)
	}
	st, err := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "app:1"}, Verbose: true})
	if err != nil || st.Image.Uid.GetValue() != 1003 || st.Image.Username != "" || st.Image.Size != 42 || st.Info["info"] == "" {
		t.Errorf("status = %+v, %v", st, err)
	}
	st, err = s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "missing"}})
	if err != nil || st.Image != nil {
		t.Errorf("status of a missing image must be empty, not an error: %+v %v", st, err)
	}
	ps, _ := s.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "sha256:pause"}})
	if !ps.Image.Pinned || ps.Image.Username != "www-data" || ps.Image.Uid != nil {
		t.Errorf("pause status = %+v", ps.Image)
	}
	l, _ := s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "app:1"}}})
	if len(l.Images) != 1 || l.Images[0].Id != "sha256:app" {
		t.Errorf("filtered list = %v", l.Images)
	}
	l, _ = s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "nope"}}})
	if len(l.Images) != 0 {
		t.Errorf("filter on a missing image = %v", l.Images)
	}
	fs, err := s.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || fs.ImageFilesystems[0].UsedBytes.Value != 10 || fs.ImageFilesystems[0].Timestamp == 0 {
		t.Errorf("fsinfo = %+v %v", fs, err)
	}
	if _, err := s.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ""}}); status.Code(toStatus(err)) != codes.InvalidArgument {
		t.Errorf("remove without image: %v", err)
	}
}

func TestImageUser(t *testing.T) {
	for in, want := range map[string]string{"": "<nil>/", "1000": "1000/", "1003:1004": "1003/", "www-data": "<nil>/www-data", "www-data:50": "<nil>/www-data"} {
		uid, name := imageUser(in)
		got := "<nil>"
		if uid != nil {
			got = fmt.Sprint(*uid)
		}
		if got+"/"+name != want {
			t.Errorf("imageUser(%q) = %s/%s, want %s", in, got, name, want)
		}
	}
}
