package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berthrt/berth/runtime/logctx"
)

// Observer receives the outcome of every call (metrics hang here).
type Observer interface {
	Observe(method string, code codes.Code, d time.Duration)
}

// Interceptors are the unary and stream interceptors every CRI call passes:
// a request id and a logger in the context, one log line per call
// (mutations at Info, reads at Debug), panics turned into Internal errors,
// and errors converted to gRPC codes.
type Interceptors struct {
	Log      *slog.Logger
	Observer Observer
}

// Unary is the unary interceptor.
func (i Interceptors) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	method := shortMethod(info.FullMethod)
	log := i.Log.With("req", newRequestID(), "method", method)
	ctx = logctx.With(ctx, log)
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic", "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s: %v", method, r)
		}
		i.done(ctx, log, method, err, time.Since(start))
	}()
	resp, err = handler(ctx, req)
	return resp, toStatus(err)
}

// Stream is the stream interceptor.
func (i Interceptors) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	method := shortMethod(info.FullMethod)
	log := i.Log.With("req", newRequestID(), "method", method)
	ctx := logctx.With(ss.Context(), log)
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic", "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "internal error in %s: %v", method, r)
		}
		i.done(ctx, log, method, err, time.Since(start))
	}()
	return toStatus(handler(srv, &ctxStream{ServerStream: ss, ctx: ctx}))
}

func (i Interceptors) done(ctx context.Context, log *slog.Logger, method string, err error, d time.Duration) {
	code := status.Code(err)
	if i.Observer != nil {
		i.Observer.Observe(method, code, d)
	}
	level := slog.LevelDebug
	if isMutation(method) {
		level = slog.LevelInfo
	}
	if err != nil && code != codes.NotFound {
		// An error is logged once, here, at the boundary.
		level = max(level, slog.LevelInfo)
		if code == codes.Unknown || code == codes.Internal {
			level = slog.LevelError
		}
		log.Log(ctx, level, "call failed", "code", code.String(), "err", status.Convert(err).Message(), "duration", d.Round(time.Microsecond))
		return
	}
	log.Log(ctx, level, "call", "code", code.String(), "duration", d.Round(time.Microsecond))
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func shortMethod(full string) string { return full[strings.LastIndex(full, "/")+1:] }

// isMutation tells calls that change state (logged at Info) from reads and
// probes (Debug: the kubelet makes them every few seconds).
func isMutation(method string) bool {
	for _, p := range []string{"List", "Stream", "Version", "Status", "ImageFsInfo", "ContainerStats", "PodSandboxStats", "RuntimeConfig", "ExecSync", "GetContainerEvents"} {
		if strings.HasPrefix(method, p) {
			return false
		}
	}
	return !strings.HasSuffix(method, "Status") && !strings.HasSuffix(method, "Stats")
}

func newRequestID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprint(time.Now().UnixNano())
	}
	return hex.EncodeToString(b[:])
}
