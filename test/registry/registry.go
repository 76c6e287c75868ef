// Package registry runs go-containerregistry's in-process registry on
// loopback for berth's tests, builds images from file lists, and can count
// requests and inject faults (basic auth, stalls, dropped connections).
package registry

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options configures a Server.
type Options struct {
	// Username and Password, when set, require basic auth on every request.
	Username, Password string
}

// Server is a registry on loopback.
type Server struct {
	*httptest.Server
	// Host is "127.0.0.1:port".
	Host string

	mu     sync.Mutex
	blobs  map[string]int // GETs per blob digest
	fault  func(r *http.Request) Fault
	opts   Options
	handle http.Handler
}

// Fault is what to do to one request.
type Fault int

const (
	// None serves the request.
	None Fault = iota
	// Stall sends headers and a first chunk of the body, then nothing.
	Stall
	// Drop closes the connection halfway through the body.
	Drop
	// Unavailable answers 503.
	Unavailable
)

// New starts a registry; it stops with the test.
func New(t testing.TB, opts Options) *Server {
	s := &Server{blobs: map[string]int{}, opts: opts, handle: registry.New(registry.Logger(discardLogger()))}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	s.Host = strings.TrimPrefix(s.URL, "http://")
	t.Cleanup(s.Close)
	return s
}

// SetFault installs f, which decides per request; nil serves all.
func (s *Server) SetFault(f func(r *http.Request) Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// BlobGets returns how often the blob with digest was downloaded.
func (s *Server) BlobGets(digest string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blobs[digest]
}

// IsBlobGet reports whether r downloads a blob.
func IsBlobGet(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.opts.Username != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != s.opts.Username || p != s.opts.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
	}
	s.mu.Lock()
	if IsBlobGet(r) {
		s.blobs[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
	}
	fault := None
	if s.fault != nil {
		fault = s.fault(r)
	}
	s.mu.Unlock()
	switch fault {
	case Unavailable:
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	case Stall, Drop:
		rec := httptest.NewRecorder()
		s.handle.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		body := rec.Body.Bytes()
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		if fault == Stall {
			<-r.Context().Done()
			return
		}
		// Abort the response: the client sees a truncated body.
		panic(http.ErrAbortHandler)
	}
	s.handle.ServeHTTP(w, r)
}

// Push uploads img as host/repo:tag (ref without the host) and returns
// its manifest digest.
func (s *Server) Push(t testing.TB, ref string, img v1.Image) string {
	t.Helper()
	r, err := name.ParseReference(s.Host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, s.remoteOpts()...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// PushIndex uploads idx as host/repo:tag and returns its digest.
func (s *Server) PushIndex(t testing.TB, ref string, idx v1.ImageIndex) string {
	t.Helper()
	r, err := name.ParseReference(s.Host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, s.remoteOpts()...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func (s *Server) remoteOpts() []remote.Option {
	if s.opts.Username == "" {
		return nil
	}
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: s.opts.Username, Password: s.opts.Password})}
}

// File is one member of a test layer.
type File struct {
	Name string
	Body string
	// Type is a tar type flag; 0 means a regular file.
	Type byte
	Mode int64
	Link string
	Uid  int
	Gid  int
}

// Layer builds a gzip-compressed layer from files.
func Layer(t testing.TB, files ...File) v1.Layer {
	t.Helper()
	l, err := BuildLayer(files...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// BuildLayer is Layer for callers without a test (cached fixtures).
func BuildLayer(files ...File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.Name, Typeflag: f.Type, Mode: f.Mode, Linkname: f.Link, Uid: f.Uid, Gid: f.Gid,
			ModTime: time.Unix(1700000000, 0)}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(tw, f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// Image builds a linux/amd64 image (Docker schema 2 media types unless oci)
// from cfg and layers.
func Image(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(1700000000, 0).UTC()}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// OCI converts img to OCI media types.
func OCI(img v1.Image) v1.Image {
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	return mutate.ConfigMediaType(img, types.OCIConfigJSON)
}

// Platformed is an image for one platform of an index.
type Platformed struct {
	Platform v1.Platform
	Image    v1.Image
}

// Index builds an OCI index of images, each with its platform.
func Index(images ...Platformed) v1.ImageIndex {
	var adds []mutate.IndexAddendum
	for _, p := range images {
		adds = append(adds, mutate.IndexAddendum{Add: p.Image, Descriptor: v1.Descriptor{Platform: &p.Platform}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
