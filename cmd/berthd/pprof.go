//go:build berthpprof

package main

// Profiling for development, only in builds with -tags berthpprof (never
// in a release): with BERTH_PPROF_SOCKET set, berthd serves net/http/pprof
// on that unix socket (root only), block and mutex profiles included.
//
//	go build -tags berthpprof -o /tmp/pprof-bin/ ./cmd/...
//	curl --unix-socket $BERTH_PPROF_SOCKET http://x/debug/pprof/profile?seconds=10 > cpu.pprof

import (
	"net"
	"net/http"
	_ "net/http/pprof" //nolint:gosec // only in -tags berthpprof builds, on a root-only unix socket
	"os"
	"runtime"
	"time"
)

func init() {
	path := os.Getenv("BERTH_PPROF_SOCKET")
	if path == "" {
		return
	}
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	runtime.SetMutexProfileFraction(5)
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return
	}
	_ = os.Chmod(path, 0o600)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
}
