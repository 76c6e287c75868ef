package image

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berthrt/berth/runtime/errdefs"
)

// Manifests, indexes and configs are read whole into memory. containerd
// refuses manifests and indexes over 4 MiB (its MaxManifestSize); berth
// holds configs to the same bound.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 4 << 20
)

// transport is the HTTP transport for endpoint ep, whose host requests
// name as host.
func (s *Store) transport(ep endpoint, host string) http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	// A registry that accepts the connection and then says nothing is as
	// stalled as one that stops sending a layer.
	t.ResponseHeaderTimeout = s.opts.ProgressTimeout
	// What is counted and bounded must be what the registry sent: the
	// client must not inflate a gzip-encoded body on its own.
	t.DisableCompression = true
	rt := &registryTransport{host: host, plain: ep.plain || isLoopback(host), verified: t}
	if ep.insecure {
		u := t.Clone()
		u.TLSClientConfig = &tls.Config{}
		if t.TLSClientConfig != nil {
			u.TLSClientConfig = t.TLSClientConfig.Clone()
		}
		u.TLSClientConfig.InsecureSkipVerify = true
		rt.unverified = u
	}
	return rt
}

// registryTransport applies an endpoint's rules to the requests for its
// host: HTTPS without certificate checks only for an insecure registry,
// plain HTTP only where allowed (the registry client falls back to it on
// its own for private addresses), and manifests bounded in size. Other
// hosts (token servers, blob redirects) get the verifying transport.
type registryTransport struct {
	host       string
	plain      bool
	verified   http.RoundTripper
	unverified http.RoundTripper // nil unless the registry is insecure
}

func (t *registryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.verified
	if req.URL.Host == t.host {
		if req.URL.Scheme == "http" && !t.plain {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("%s: plain HTTP is used only for insecure registries, http:// mirrors and loopback", t.host)
		}
		if t.unverified != nil {
			rt = t.unverified
		}
	}
	resp, err := rt.RoundTrip(req)
	if err != nil || !isManifest(req) {
		return resp, err
	}
	return capBody(resp, maxManifestSize)
}

// isManifest reports whether req, or the request it was redirected from,
// is for a manifest: /v2/<name>/manifests/<reference>.
func isManifest(req *http.Request) bool {
	for ; req != nil; req = redirectedFrom(req) {
		if path.Base(path.Dir(req.URL.Path)) == "manifests" {
			return true
		}
	}
	return false
}

func redirectedFrom(req *http.Request) *http.Request {
	if req.Response == nil {
		return nil
	}
	return req.Response.Request
}

// capBody refuses a response announced larger than limit and fails the
// reading of one that turns out larger.
func capBody(resp *http.Response, limit int64) (*http.Response, error) {
	if resp.ContentLength > limit {
		_ = resp.Body.Close()
		return nil, tooLarge(resp.Request, limit)
	}
	resp.Body = &cappedBody{ReadCloser: resp.Body, req: resp.Request, limit: limit}
	return resp, nil
}

type cappedBody struct {
	io.ReadCloser
	req         *http.Request
	limit, read int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if left := b.limit - b.read + 1; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.ReadCloser.Read(p)
	if b.read += int64(n); b.read > b.limit {
		return n, tooLarge(b.req, b.limit)
	}
	return n, err
}

func tooLarge(req *http.Request, limit int64) error {
	return errdefs.InvalidArgument("%s %s: larger than the %d-byte limit", req.Method, req.URL.Redacted(), limit)
}

// isLoopback reports whether host is this machine, where plain HTTP is
// allowed as the registry client and containerd allow it.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
