package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/image"
	"github.com/berthrt/berth/runtime/logctx"
)

// Images is what the ImageService needs of the image store.
type Images interface {
	Pull(ctx context.Context, ref string, auth *image.Auth) (*image.Image, error)
	Get(ref string) (*image.Image, error)
	List() ([]image.Image, error)
	Remove(ref string) error
	Usage() (image.FsUsage, error)
	Config(id string) (*v1.ConfigFile, error)
	IsPinned(img *image.Image) bool
}

// ContainerFS reports what containers' writable layers occupy.
type ContainerFS interface {
	ContainerUsage() (image.FsUsage, error)
}

// ImageService serves the CRI ImageService.
type ImageService struct {
	runtimeapi.UnimplementedImageServiceServer
	Images      Images
	ContainerFS ContainerFS // optional
	// Handlers are the runtime handlers a pull may name; without them,
	// a pull that names one is refused.
	Handlers RuntimeHandlers
	Log      *slog.Logger
}

// PullImage pulls an image; its ref is the image ID.
func (s *ImageService) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	if req.GetImage().GetImage() == "" {
		return nil, errdefs.InvalidArgument("image is required")
	}
	if err := checkImageHandler(ctx, s.Handlers, req.GetImage().GetRuntimeHandler()); err != nil {
		return nil, err
	}
	var auth *image.Auth
	if a := req.GetAuth(); a != nil {
		auth = &image.Auth{Username: a.Username, Password: a.Password, Auth: a.Auth,
			IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken, ServerAddress: a.ServerAddress}
	}
	logctx.From(ctx, s.Log).Info("pulling image", "image", req.Image.Image)
	img, err := s.Images.Pull(ctx, req.Image.Image, auth)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}

// ListImages lists images, or the one the filter names.
func (s *ImageService) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	var imgs []image.Image
	if ref := req.GetFilter().GetImage().GetImage(); ref != "" {
		img, err := s.Images.Get(ref)
		if errdefs.IsNotFound(err) {
			return &runtimeapi.ListImagesResponse{}, nil
		}
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, *img)
	} else {
		var err error
		if imgs, err = s.Images.List(); err != nil {
			return nil, err
		}
	}
	resp := &runtimeapi.ListImagesResponse{}
	for i := range imgs {
		resp.Images = append(resp.Images, s.toCRI(&imgs[i]))
	}
	return resp, nil
}

// ImageStatus returns an image, or no image (not an error) when missing.
func (s *ImageService) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, errdefs.InvalidArgument("image is required")
	}
	img, err := s.Images.Get(ref)
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: s.toCRI(img)}
	if req.Verbose {
		cf, err := s.Images.Config(img.ID)
		if err != nil {
			return nil, err
		}
		info, err := json.Marshal(map[string]any{
			"id": img.ID, "manifest": img.Manifest, "chainID": img.Chain[len(img.Chain)-1],
			"chain": img.Chain, "size": img.Size, "pulled": img.Pulled, "imageSpec": cf,
		})
		if err != nil {
			return nil, err
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// RemoveImage removes an image with all its names; missing is success.
func (s *ImageService) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, errdefs.InvalidArgument("image is required")
	}
	return &runtimeapi.RemoveImageResponse{}, s.Images.Remove(ref)
}

// ImageFsInfo reports what images (and containers' writable layers) use.
func (s *ImageService) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.Images.Usage()
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	resp := &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{fsUsage(u, now)}}
	if s.ContainerFS != nil {
		cu, err := s.ContainerFS.ContainerUsage()
		if err != nil {
			return nil, err
		}
		resp.ContainerFilesystems = []*runtimeapi.FilesystemUsage{fsUsage(cu, now)}
	}
	return resp, nil
}

func fsUsage(u image.FsUsage, now int64) *runtimeapi.FilesystemUsage {
	return &runtimeapi.FilesystemUsage{
		Timestamp:  now,
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: uint64(u.Bytes)},
		InodesUsed: &runtimeapi.UInt64Value{Value: uint64(u.Inodes)},
	}
}

func (s *ImageService) toCRI(img *image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
		Pinned:      s.Images.IsPinned(img),
	}
	if cf, err := s.Images.Config(img.ID); err == nil {
		uid, name := imageUser(cf.Config.User)
		if uid != nil {
			out.Uid = &runtimeapi.Int64Value{Value: *uid}
		}
		out.Username = name
	} else {
		s.Log.Warn("image config unreadable", "image", img.ID, "err", err)
	}
	return out
}

// imageUser splits an image USER ("1000", "www-data", "1003:1004") into a
// numeric uid or a name; the group part does not matter here.
func imageUser(user string) (*int64, string) {
	u, _, _ := strings.Cut(user, ":")
	if u == "" {
		return nil, ""
	}
	if n, err := strconv.ParseInt(u, 10, 64); err == nil {
		return &n, ""
	}
	return nil, u
}
