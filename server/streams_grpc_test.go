package server

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamServer serves listStreams' StreamContainers, and its List twin,
// on a real gRPC server capped as berthd's is. hold makes the first Send
// wait until the client is gone.
type streamServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	l        listStreams
	hold     bool
	returned chan error
}

func (s *streamServer) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.l.pods.ListContainers(ctx, req.GetFilter())}, nil
}

func (s *streamServer) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	if s.hold {
		stream = &holdingStream{RuntimeService_StreamContainersServer: stream}
	}
	err := s.l.StreamContainers(req, stream)
	s.returned <- err
	return err
}

type holdingStream struct {
	runtimeapi.RuntimeService_StreamContainersServer
	sent int
}

func (h *holdingStream) Send(m *runtimeapi.StreamContainersResponse) error {
	err := h.RuntimeService_StreamContainersServer.Send(m)
	if h.sent++; h.sent == 1 {
		<-h.Context().Done()
	}
	return err
}

func dialStreamServer(t *testing.T, srv *streamServer) runtimeapi.RuntimeServiceClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(grpcCap), grpc.MaxSendMsgSize(grpcCap))
	runtimeapi.RegisterRuntimeServiceServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///berth", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// TestStreamOverTheCap: over a real gRPC connection, 5,000 containers
// whose list exceeds the 16 MiB cap fail to list but stream whole, to a
// client with gRPC's default 4 MiB receive limit.
func TestStreamOverTheCap(t *testing.T) {
	ctrs := kubeletContainers(5000)
	for _, c := range ctrs {
		c.Annotations["example.com/config"] = strings.Repeat("x", 3<<10)
	}
	srv := &streamServer{l: listStreams{&fakePods{containers: ctrs}}, returned: make(chan error, 1)}
	client := dialStreamServer(t, srv)
	ctx := context.Background()
	if size := proto.Size(&runtimeapi.ListContainersResponse{Containers: ctrs}); size <= grpcCap {
		t.Fatalf("the list is %d bytes, not over the cap", size)
	}
	if _, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{}, grpc.MaxCallRecvMsgSize(grpcCap)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("ListContainers over the cap: %v", err)
	}
	stream, err := client.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*runtimeapi.Container
	pages := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d pages: %v", pages, err)
		}
		pages++
		got = append(got, resp.Containers...)
	}
	sameItems(t, "streamed over gRPC", msgs(got), msgs(ctrs))
	if err := <-srv.returned; err != nil || pages < 8 {
		t.Errorf("the stream returned %v after %d pages", err, pages)
	}
}

// TestStreamStopsWhenGRPCClientGoes: a client that cancels mid-stream
// ends the server's stream, which sends nothing more.
func TestStreamStopsWhenGRPCClientGoes(t *testing.T) {
	srv := &streamServer{l: listStreams{&fakePods{containers: kubeletContainers(5000)}}, hold: true, returned: make(chan error, 1)}
	client := dialStreamServer(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.StreamContainers(ctx, &runtimeapi.StreamContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-srv.returned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the stream ended with %v, want the context's cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream goes on after its client left")
	}
}
