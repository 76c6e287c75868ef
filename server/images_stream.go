package server

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StreamImages streams what ListImages lists, in pages. It asks ListImages
// itself, so the filter and each image's fields cannot drift apart
// between the two.
func (s *ImageService) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	ctx := stream.Context()
	list, err := s.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: req.GetFilter()})
	if err != nil {
		return err
	}
	return sendPages(ctx, list.GetImages(), func(page []*runtimeapi.Image) error {
		return stream.Send(&runtimeapi.StreamImagesResponse{Images: page})
	})
}
