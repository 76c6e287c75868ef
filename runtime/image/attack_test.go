package image

// Attack tests: each one is an image or a registry that tries to harm the
// node or other images, and fails without the defence it names.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/test/registry"
)

// rawLayer is a layer of given compressed bytes whose declared diff ID is
// whatever the attacker says.
type rawLayer struct {
	compressed []byte
	diffID     v1.Hash
	mediaType  types.MediaType
}

func (l *rawLayer) Digest() (v1.Hash, error) { return sha(l.compressed), nil }
func (l *rawLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.compressed)), nil
}
func (l *rawLayer) Uncompressed() (io.ReadCloser, error) { return nil, errors.New("not used") }
func (l *rawLayer) Size() (int64, error)                 { return int64(len(l.compressed)), nil }
func (l *rawLayer) MediaType() (types.MediaType, error)  { return l.mediaType, nil }

func sha(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func tarOf(t testing.TB, files ...registry.File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.Name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.Body)), ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipped(t testing.TB, b []byte, level int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// proxy fronts reg; handle may answer a request itself by returning true.
func proxy(t *testing.T, reg *registry.Server, handle func(w http.ResponseWriter, r *http.Request) bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if handle == nil || !handle(w, r) {
			reg.Config.Handler.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func layerDigest(t *testing.T, l v1.Layer) string {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func readLayerFile(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// An image's config names its diff IDs, so the first layer's chain ID is
// the attacker's choice. A layer directory named after a prefix of it let
// a forged diff ID delete another image's layer, in use or not.
func TestAttackDiffIDPrefixCannotDeleteOtherLayers(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	reg.Push(t, "victim:1", registry.Image(t, v1.Config{}, registry.Layer(t, registry.File{Name: "victim", Body: "precious"})))
	e := newEnv(t, Options{})
	ctx := context.Background()
	victim, err := e.s.Pull(ctx, reg.Host+"/victim:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := e.s.Lease("ctr", victim.ID)
	if err != nil {
		t.Fatal(err)
	}

	prefix := strings.TrimPrefix(victim.Chain[0], "sha256:")[:16]
	forged := v1.Hash{Algorithm: "sha256", Hex: prefix + strings.Repeat("0", 48)}
	content := tarOf(t, registry.File{Name: "evil", Body: "x"})
	reg.Push(t, "attack:1", registry.Image(t, v1.Config{},
		&rawLayer{compressed: gzipped(t, content, gzip.DefaultCompression), diffID: forged, mediaType: types.DockerLayer}))
	if _, err := e.s.Pull(ctx, reg.Host+"/attack:1", nil); err == nil {
		t.Fatal("an image whose layer does not match its diff ID was pulled")
	} else {
		t.Logf("forged diff ID: %v", err)
	}
	if got := readLayerFile(dirs[0], "victim"); got != "precious" {
		t.Fatalf("the victim's layer was damaged by another image's pull: %s", got)
	}
	e.reopen(t)
	if got := readLayerFile(dirs[0], "victim"); got != "precious" {
		t.Fatalf("the victim's layer was collected after a restart: %s", got)
	}
}

// Two pulls share a layer. While the first has it unpacked but not yet
// committed, the second must neither remove nor replace it, whether it
// succeeds or fails.
func TestAttackConcurrentPullKeepsOtherPullsLayers(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	shared := registry.Layer(t, registry.File{Name: "shared", Body: "base"})
	xTop := registry.Layer(t, registry.File{Name: "x", Body: "x"})
	yTop := registry.Layer(t, registry.File{Name: "y", Body: "y"})
	reg.Push(t, "x:1", registry.Image(t, v1.Config{}, shared, xTop))
	reg.Push(t, "y:1", registry.Image(t, v1.Config{}, shared, yTop))
	sharedD, xTopD, yTopD := layerDigest(t, shared), layerDigest(t, xTop), layerDigest(t, yTop)

	release := make(chan struct{})
	var sharedGets atomic.Int32
	host := proxy(t, reg, func(w http.ResponseWriter, r *http.Request) bool {
		if !registry.IsBlobGet(r) {
			return false
		}
		switch {
		case strings.HasSuffix(r.URL.Path, xTopD):
			<-release // pull x waits here, its shared layer unpacked
		case strings.HasSuffix(r.URL.Path, sharedD) && sharedGets.Add(1) > 1,
			strings.HasSuffix(r.URL.Path, yTopD):
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return true
		}
		return false
	})
	e := newEnv(t, Options{})
	ctx := context.Background()
	xDone := make(chan error, 1)
	var x *Image
	go func() {
		var err error
		x, err = e.s.Pull(ctx, host+"/x:1", nil)
		xDone <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.layerDirs(t)) == 0 {
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("pull x never unpacked its shared layer")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.s.Pull(ctx, host+"/y:1", nil); err == nil {
		t.Error("pull y succeeded without its top layer")
	} else {
		t.Logf("pull y: %v", err)
	}
	close(release)
	if err := <-xDone; err != nil {
		t.Fatal(err)
	}
	dirs, err := e.s.Lease("ctr", x.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := readLayerFile(dirs[1], "shared"); got != "base" {
		t.Fatalf("x committed with its shared layer gone: %s", got)
	}
	if got := readLayerFile(dirs[0], "x"); got != "x" {
		t.Fatalf("x's top layer: %s", got)
	}
	if n := len(e.layerDirs(t)); n != 2 {
		t.Errorf("%d layer dirs, want x's 2", n)
	}
}

// configBomb serves a manifest whose config declares size bytes (0: its
// true size), and the config itself gzip-encoded whenever the client
// accepts that: 64 MiB of JSON that crosses the wire as 64 KiB.
func configBomb(t *testing.T, reg *registry.Server, size int64) (host string, configGets *atomic.Int32) {
	cfg := append([]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`), bytes.Repeat([]byte(" "), 64<<20)...)
	encoded := gzipped(t, cfg, gzip.BestCompression)
	if size == 0 {
		size = int64(len(cfg))
	}
	manifest := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[]}`,
		types.OCIManifestSchema1, types.OCIConfigJSON, sha(cfg), size)
	configGets = &atomic.Int32{}
	host = proxy(t, reg, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			_, _ = w.Write(manifest)
			return true
		case strings.Contains(r.URL.Path, "/blobs/"+sha(cfg).String()):
			configGets.Add(1)
			if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				w.Header().Set("Content-Encoding", "gzip")
				_, _ = w.Write(encoded)
			} else {
				_, _ = w.Write(cfg)
			}
			return true
		}
		return false
	})
	return host, configGets
}

// A config is read whole into memory: its declared size is bounded before
// anything is fetched.
func TestAttackOversizedConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
	}{{"declared", 0}, {"declared unknown", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := registry.New(t, registry.Options{})
			host, configGets := configBomb(t, reg, tc.size)
			e := newEnv(t, Options{})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := e.s.Pull(context.Background(), host+"/bomb:1", nil)
			runtime.ReadMemStats(&after)
			t.Logf("pull allocated %d MiB: %v", (after.TotalAlloc-before.TotalAlloc)>>20, err)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("pull of an image with a bomb config (%s) = %v, want InvalidArgument", tc.name, err)
			}
			if n := configGets.Load(); n != 0 {
				t.Errorf("the config was fetched %d times before its size was checked", n)
			}
		})
	}
}

// Manifests and indexes are read whole too: a registry that sends a huge
// one, announced or streamed, is refused.
func TestAttackOversizedManifest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		index   bool
		chunked bool
	}{{"manifest with length", false, false}, {"index streamed", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			reg := registry.New(t, registry.Options{})
			img := registry.OCI(busybox(t, "big"))
			var raw []byte
			var mt types.MediaType
			if tc.index {
				idx := registry.Index(registry.Platformed{Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, Image: img})
				reg.PushIndex(t, "big:real", idx)
				raw, _ = idx.RawManifest()
				mt = types.OCIImageIndex
			} else {
				reg.Push(t, "big:real", img)
				raw, _ = img.RawManifest()
				mt = types.OCIManifestSchema1
			}
			// Valid JSON: whitespace after the document.
			padded := append(raw, bytes.Repeat([]byte(" "), 5<<20)...)
			host := proxy(t, reg, func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/manifests/1") {
					return false
				}
				w.Header().Set("Content-Type", string(mt))
				if !tc.chunked {
					w.Header().Set("Content-Length", fmt.Sprint(len(padded)))
				}
				for b := padded; len(b) > 0; b = b[min(len(b), 64<<10):] {
					if _, err := w.Write(b[:min(len(b), 64<<10)]); err != nil {
						return true
					}
					w.(http.Flusher).Flush()
				}
				return true
			})
			e := newEnv(t, Options{})
			_, err := e.s.Pull(context.Background(), host+"/big:1", nil)
			t.Logf("pull: %v", err)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("pull of a %d-byte manifest = %v, want InvalidArgument", len(padded), err)
			}
		})
	}
}

// Transparent decompression by the HTTP client would inflate whatever a
// registry gzip-encodes: berth never asks for it and never decodes it.
func TestAttackContentEncodingIsNotDecoded(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := busybox(t, "enc")
	reg.Push(t, "enc:1", img)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	var askedGzip atomic.Bool
	host := proxy(t, reg, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			askedGzip.Store(true)
		}
		if !strings.HasSuffix(r.URL.Path, "/manifests/1") {
			return false
		}
		w.Header().Set("Content-Type", string(mt))
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(gzipped(t, raw, gzip.BestCompression))
		return true
	})
	e := newEnv(t, Options{})
	_, err = e.s.Pull(context.Background(), host+"/enc:1", nil)
	t.Logf("pull: %v", err)
	if askedGzip.Load() {
		t.Error("berth asked the registry for gzip content encoding")
	}
	if err == nil {
		t.Error("a gzip-encoded manifest was decoded")
	}
}

// tamperedImage serves one layer's bytes whatever digest is asked for: a
// registry client that does not check digests.
type tamperedImage struct {
	v1.Image
	layer v1.Layer
}

func (i tamperedImage) LayerByDigest(v1.Hash) (v1.Layer, error) { return i.layer, nil }

// A layer whose compressed bytes do not match the manifest's digest or
// size is never put in place, even when it decompresses to the right diff
// ID: the store checks them itself, not only the registry client.
func TestAttackLayerDigestMismatchNeverCommitted(t *testing.T) {
	content := tarOf(t, registry.File{Name: "f", Body: strings.Repeat("berth ", 4096)})
	diffID := sha(content)
	declared := gzipped(t, content, gzip.BestCompression)
	sameSize := bytes.Clone(declared)
	sameSize[4] ^= 1 // the gzip header's mtime
	for name, served := range map[string][]byte{
		"digest": sameSize,
		"size":   gzipped(t, content, gzip.BestSpeed),
	} {
		t.Run(name, func(t *testing.T) {
			img := tamperedImage{layer: &rawLayer{compressed: served, diffID: diffID, mediaType: types.DockerLayer}}
			desc := v1.Descriptor{MediaType: types.DockerLayer, Digest: sha(declared), Size: int64(len(declared))}
			e := newEnv(t, Options{})
			l, err := e.s.unpack(context.Background(), img, desc, diffID.String(), diffID.String(), nil, &progress{})
			if err == nil {
				t.Fatalf("a layer with compressed digest %s was unpacked for %s: %+v", sha(served), desc.Digest, l)
			}
			t.Logf("unpack: %v", err)
			if dirs := e.layerDirs(t); len(dirs) != 0 {
				t.Errorf("layer dirs %v after a mismatch", dirs)
			}
			if tmp, _ := os.ReadDir(filepath.Join(e.opts.Root, "tmp")); len(tmp) != 0 {
				t.Errorf("temporary files left after a mismatch: %d", len(tmp))
			}
		})
	}
}

// A zstd frame may ask for a window of up to 512 MiB (the decoder's own
// limit) for a few bytes of input; berth allows what the reference zstd
// decoder allows by default.
func TestAttackZstdWindowBomb(t *testing.T) {
	content := tarOf(t, registry.File{Name: "f", Body: "small"})
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithSingleSegment(false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	frame := buf.Bytes()
	if frame[4]&0x20 != 0 {
		t.Fatal("test frame has no window descriptor")
	}
	frame[5] = 18 << 3 // window descriptor: 1<<(10+18) bytes
	for limit, wantOK := range map[uint64]bool{512 << 20: true, 128 << 20: false} {
		zr, err := zstd.NewReader(bytes.NewReader(frame), zstd.WithDecoderMaxWindow(limit))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(zr); (err == nil) != wantOK {
			t.Fatalf("test frame with a decoder window limit of %d: %v", limit, err)
		}
		zr.Close()
	}
	reg := registry.New(t, registry.Options{})
	reg.Push(t, "zstd:1", registry.OCI(registry.Image(t, v1.Config{},
		&rawLayer{compressed: frame, diffID: sha(content), mediaType: types.OCILayerZStd})))
	e := newEnv(t, Options{})
	if _, err := e.s.Pull(context.Background(), reg.Host+"/zstd:1", nil); err == nil {
		t.Fatal("a zstd layer with a 256 MiB window was accepted")
	} else {
		t.Logf("pull: %v", err)
	}
	if dirs := e.layerDirs(t); len(dirs) != 0 {
		t.Errorf("layer dirs %v after a refused layer", dirs)
	}
}

// A registry with a certificate berth cannot verify is used only when it
// is listed in insecure_registries, and then over HTTPS.
func TestAttackSelfSignedRegistryOnlyWhenInsecure(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	reg.Push(t, "app:1", busybox(t, "tls"))
	srv := httptest.NewUnstartedServer(reg.Config.Handler)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // failed handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	ref := host + "/app:1"

	if _, err := newEnv(t, Options{}).s.Pull(context.Background(), ref, nil); err == nil {
		t.Error("pulled from a registry with a self-signed certificate that is not insecure")
	} else {
		t.Logf("not insecure: %v", err)
	}
	e := newEnv(t, Options{InsecureRegistries: []string{host}})
	img, err := e.s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatalf("insecure registry over HTTPS without verification: %v", err)
	}
	dirs, err := e.s.Lease("c", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := readLayerFile(dirs[0], "marker"); got != "tls" {
		t.Errorf("marker = %s", got)
	}
}

// privateAddr returns an RFC 1918 address of this host, if it has one.
func privateAddr() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsPrivate() {
			return n.IP.String()
		}
	}
	return ""
}

// The registry client falls back to plain HTTP for hosts on private
// addresses on its own. Only insecure registries, http:// mirrors and
// loopback are reached over plain HTTP: on a shared network anyone could
// answer the fallback.
func TestAttackPrivateRegistryNotDowngradedToHTTP(t *testing.T) {
	addr := privateAddr()
	if addr == "" {
		t.Skip("no private address on this host")
	}
	reg := registry.New(t, registry.Options{})
	reg.Push(t, "app:1", busybox(t, "plain"))
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Skip(err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: reg.Config.Handler}}
	srv.Start()
	t.Cleanup(srv.Close)
	host := ln.Addr().String()
	if _, err := newEnv(t, Options{}).s.Pull(context.Background(), host+"/app:1", nil); err == nil {
		t.Error("pulled over plain HTTP from a private address that is not an insecure registry")
	} else {
		t.Logf("not insecure: %v", err)
	}
	if _, err := newEnv(t, Options{InsecureRegistries: []string{host}}).s.Pull(context.Background(), host+"/app:1", nil); err != nil {
		t.Errorf("plain HTTP to an insecure registry: %v", err)
	}
}
