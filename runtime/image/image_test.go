package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/store"
	"github.com/berthrt/berth/test/registry"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking layers sets owners and creates whiteout devices")
	}
}

type env struct {
	root string
	db   *store.DB
	s    *Store
	opts Options
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	requireRoot(t)
	root := t.TempDir()
	e := &env{root: root, opts: opts}
	e.opts.Root = filepath.Join(root, "images")
	e.reopen(t)
	return e
}

// reopen simulates a berthd restart on the same root.
func (e *env) reopen(t testing.TB) {
	t.Helper()
	if e.db != nil {
		e.db.Close()
	}
	db, err := store.Open(filepath.Join(e.root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(db, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.db, e.s = db, s
}

func (e *env) layerDirs(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.opts.Root, "layers"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ents {
		out = append(out, d.Name())
	}
	return out
}

func busybox(t *testing.T, marker string) v1.Image {
	return registry.Image(t, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}, User: "www-data"},
		registry.Layer(t, registry.File{Name: "bin/", Type: tar.TypeDir}, registry.File{Name: "bin/sh", Body: "#!sh", Mode: 0o755},
			registry.File{Name: "etc/passwd", Body: "www-data:x:33:33::/:/bin/sh\n"}),
		registry.Layer(t, registry.File{Name: "marker", Body: marker}),
	)
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := busybox(t, "one")
	digest := reg.Push(t, "library/busybox:1.36", img)
	e := newEnv(t, Options{})
	ref := reg.Host + "/library/busybox:1.36"

	got, err := e.s.Pull(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest, _ := img.ConfigName()
	if got.ID != cfgDigest.String() {
		t.Errorf("ID = %s, want config digest %s", got.ID, cfgDigest)
	}
	if want := []string{ref}; !slices.Equal(got.RepoTags, want) {
		t.Errorf("RepoTags = %v, want %v", got.RepoTags, want)
	}
	if want := []string{reg.Host + "/library/busybox@" + digest}; !slices.Equal(got.RepoDigests, want) {
		t.Errorf("RepoDigests = %v, want %v", got.RepoDigests, want)
	}
	if len(got.Chain) != 2 || got.Size <= 0 {
		t.Errorf("chain %v size %d", got.Chain, got.Size)
	}
	// Every way of naming the image finds it.
	for _, r := range []string{got.ID, strings.TrimPrefix(got.ID, "sha256:"), got.ID[7:19], ref, got.RepoDigests[0]} {
		if i, err := e.s.Get(r); err != nil || i.ID != got.ID {
			t.Errorf("Get(%q) = %v, %v", r, i, err)
		}
	}
	// The unpacked layers hold the files.
	dirs, err := e.s.Lease("ctr1", got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0], "marker")); err != nil || string(b) != "one" {
		t.Errorf("top layer marker = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dirs[1], "bin/sh")); err != nil {
		t.Errorf("bottom layer: %v", err)
	}
	cf, err := e.s.Config(got.ID)
	if err != nil || cf.Config.User != "www-data" {
		t.Errorf("config = %+v, %v", cf, err)
	}

	// A digest pull of the same image adds nothing new but finds it.
	byDigest, err := e.s.Pull(context.Background(), reg.Host+"/library/busybox@"+digest, nil)
	if err != nil || byDigest.ID != got.ID {
		t.Fatalf("digest pull = %v, %v", byDigest, err)
	}
	if imgs, _ := e.s.List(); len(imgs) != 1 {
		t.Errorf("List = %d images, want 1", len(imgs))
	}
}

func TestPullShortNameNormalised(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                        "docker.io/library/busybox:latest",
		"busybox:1.36":                   "docker.io/library/busybox:1.36",
		"user/app":                       "docker.io/user/app:latest",
		"registry.k8s.io/pause:3.10":     "registry.k8s.io/pause:3.10",
		"localhost:5000/x":               "localhost:5000/x:latest",
		"busybox:1@sha256:" + hex64('a'): "docker.io/library/busybox@sha256:" + hex64('a'),
	} {
		r, err := ParseRef(in)
		if err != nil || r.String() != want {
			t.Errorf("ParseRef(%q) = %q, %v; want %q", in, r, err, want)
		}
	}
	for _, bad := range []string{"", "Busybox", "a b", "busybox@sha256:short"} {
		if _, err := ParseRef(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseRef(%q) = %v, want InvalidArgument", bad, err)
		}
	}
}

func hex64(c byte) string { return strings.Repeat(string(c), 64) }

func TestPullResolvesIndexToPlatform(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	amd := registry.OCI(busybox(t, "amd64"))
	arm := registry.OCI(busybox(t, "arm64"))
	idx := registry.Index(
		registry.Platformed{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Image: arm},
		registry.Platformed{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Image: amd},
	)
	idxDigest := reg.PushIndex(t, "multi:1", idx)
	e := newEnv(t, Options{})
	got, err := e.s.Pull(context.Background(), reg.Host+"/multi:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd.ConfigName()
	if got.ID != want.String() {
		t.Errorf("resolved %s, want the amd64 image %s", got.ID, want)
	}
	// The repo digest is the index's: that is what the tag points to.
	if got.RepoDigests[0] != reg.Host+"/multi@"+idxDigest {
		t.Errorf("RepoDigests = %v, want index digest %s", got.RepoDigests, idxDigest)
	}

	// An index without this platform is NotFound, clearly.
	reg.PushIndex(t, "armonly:1", registry.Index(registry.Platformed{Platform: v1.Platform{OS: "linux", Architecture: "s390x"}, Image: arm}))
	if _, err := e.s.Pull(context.Background(), reg.Host+"/armonly:1", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pull without matching platform = %v, want NotFound", err)
	}
}

func TestPullThroughMirrors(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	reg.Push(t, "pause:3.10", busybox(t, "pause"))
	dead := "http://127.0.0.1:1" // nothing listens there
	e := newEnv(t, Options{Mirrors: map[string][]string{"registry.k8s.io": {dead, "http://" + reg.Host}}})
	got, err := e.s.Pull(context.Background(), "registry.k8s.io/pause:3.10", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.RepoTags, []string{"registry.k8s.io/pause:3.10"}) || !strings.HasPrefix(got.RepoDigests[0], "registry.k8s.io/pause@sha256:") {
		t.Errorf("names must be the requested ones, not the mirror's: %v %v", got.RepoTags, got.RepoDigests)
	}
}

func TestPullBasicAuth(t *testing.T) {
	reg := registry.New(t, registry.Options{Username: "berth", Password: "s3cret"})
	reg.Push(t, "private:1", busybox(t, "private"))
	e := newEnv(t, Options{})
	ref := reg.Host + "/private:1"
	if _, err := e.s.Pull(context.Background(), ref, nil); err == nil {
		t.Fatal("pull without credentials succeeded")
	}
	if _, err := e.s.Pull(context.Background(), ref, &Auth{Username: "berth", Password: "wrong"}); err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}
	if _, err := e.s.Pull(context.Background(), ref, &Auth{Username: "berth", Password: "s3cret"}); err != nil {
		t.Fatalf("username/password: %v", err)
	}
	if err := e.s.Remove(ref); err != nil {
		t.Fatal(err)
	}
	// The base64 "auth" form, as in a docker config.
	if _, err := e.s.Pull(context.Background(), ref, &Auth{Auth: "YmVydGg6czNjcmV0"}); err != nil {
		t.Fatalf("auth field: %v", err)
	}
	// Credentials for another host are not sent.
	if err := e.s.Remove(ref); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.Pull(context.Background(), ref, &Auth{Username: "berth", Password: "s3cret", ServerAddress: "other.example"}); err == nil {
		t.Fatal("credentials for another server were used")
	}
}

func TestConcurrentPullsDownloadOnce(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := busybox(t, "shared")
	reg.Push(t, "app:1", img)
	// A second image sharing the bottom layer, pulled at the same time.
	layers, _ := img.Layers()
	other := registry.Image(t, v1.Config{}, layers[0], registry.Layer(t, registry.File{Name: "other", Body: "2"}))
	reg.Push(t, "app:2", other)
	// Slow the blobs down so that the pulls overlap.
	reg.SetFault(func(r *http.Request) registry.Fault {
		if registry.IsBlobGet(r) {
			time.Sleep(100 * time.Millisecond)
		}
		return registry.None
	})
	e := newEnv(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.s.Pull(context.Background(), fmt.Sprintf("%s/app:%d", reg.Host, i%2+1), nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, l := range layers {
		d, _ := l.Digest()
		if n := reg.BlobGets(d.String()); n != 1 {
			t.Errorf("layer %d downloaded %d times, want once", i, n)
		}
	}
	if imgs, _ := e.s.List(); len(imgs) != 2 {
		t.Errorf("List = %d images, want 2", len(imgs))
	}
}

func TestPullWhiteoutsAcrossLayers(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := registry.Image(t, v1.Config{},
		registry.Layer(t, registry.File{Name: "etc/", Type: tar.TypeDir}, registry.File{Name: "etc/old", Body: "x"},
			registry.File{Name: "var/cache/", Type: tar.TypeDir}, registry.File{Name: "var/cache/a", Body: "a"}),
		registry.Layer(t, registry.File{Name: "etc/.wh.old"}, registry.File{Name: "var/cache/.wh..wh..opq"}, registry.File{Name: "var/cache/b", Body: "b"}),
	)
	reg.Push(t, "wh:1", img)
	e := newEnv(t, Options{})
	got, err := e.s.Pull(context.Background(), reg.Host+"/wh:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := e.s.Lease("c", got.ID)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dirs[0], "etc/old"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/old is not a whiteout: %v mode %o", err, st.Mode)
	}
	buf := make([]byte, 2)
	if n, err := unix.Lgetxattr(filepath.Join(dirs[0], "var/cache"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("var/cache not opaque: %q %v", buf[:n], err)
	}
	// Mount it the way containers will see it.
	merged, upper, work := t.TempDir(), t.TempDir(), t.TempDir()
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(dirs, ":"), upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	if _, err := os.Stat(filepath.Join(merged, "etc/old")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whited-out file visible: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(merged, "var/cache"))
	if len(ents) != 1 || ents[0].Name() != "b" {
		t.Errorf("opaque dir shows %v, want only b", ents)
	}
}

func TestRemoveSemantics(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := busybox(t, "rm")
	digest := reg.Push(t, "app:1", img)
	reg.Push(t, "app:latest", img)
	layers, _ := img.Layers()
	sibling := registry.Image(t, v1.Config{}, layers[0], registry.Layer(t, registry.File{Name: "s", Body: "s"}))
	reg.Push(t, "sibling:1", sibling)
	e := newEnv(t, Options{})
	ctx := context.Background()
	a, err := e.s.Pull(ctx, reg.Host+"/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := e.s.Pull(ctx, reg.Host+"/app:latest", nil); err != nil || b.ID != a.ID {
		t.Fatalf("second tag: %v %v", b, err)
	}
	if _, err := e.s.Pull(ctx, reg.Host+"/sibling:1", nil); err != nil {
		t.Fatal(err)
	}
	got, _ := e.s.Get(a.ID)
	if len(got.RepoTags) != 2 {
		t.Fatalf("one image with two tags, got %v", got.RepoTags)
	}
	if n := len(e.layerDirs(t)); n != 3 {
		t.Fatalf("%d layer dirs, want 3 (one shared)", n)
	}
	// Removing by one tag removes the image with all its names.
	if err := e.s.Remove(reg.Host + "/app:1"); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{a.ID, reg.Host + "/app:latest", reg.Host + "/app@" + digest} {
		if _, err := e.s.Get(r); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Get(%q) after remove = %v, want NotFound", r, err)
		}
	}
	// The shared layer stays for the sibling; the image's own one goes.
	if n := len(e.layerDirs(t)); n != 2 {
		t.Errorf("%d layer dirs after remove, want 2", n)
	}
	if err := e.s.Remove(a.ID); err != nil {
		t.Errorf("removing a missing image must succeed: %v", err)
	}
	// A container's lease keeps layers past the image's removal.
	sib, _ := e.s.Get(reg.Host + "/sibling:1")
	dirs, err := e.s.Lease("ctr", sib.ID)
	if err != nil {
		t.Fatal(err)
	}
	// An image volume of the same container holds them too, and goes with it.
	if _, err := e.s.Lease("ctr/volume/0", sib.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Remove(sib.ID); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("leased layer removed: %v", err)
		}
	}
	if err := e.s.Release("ctr"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.layerDirs(t)); n != 0 {
		t.Errorf("%d layer dirs after the last user left, want 0", n)
	}
	if u, err := e.s.Usage(); err != nil || u.Inodes != 0 {
		t.Errorf("usage after removing all = %+v, %v", u, err)
	}
}

func TestPullFailures(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := busybox(t, "fail")
	reg.Push(t, "app:1", img)
	e := newEnv(t, Options{ProgressTimeout: 500 * time.Millisecond})
	ctx := context.Background()

	if _, err := e.s.Pull(ctx, reg.Host+"/nope:1", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing repo: %v, want NotFound", err)
	}
	if _, err := e.s.Pull(ctx, reg.Host+"/app:nope", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing tag: %v, want NotFound", err)
	}
	if _, err := e.s.Pull(ctx, "127.0.0.1:1/app:1", nil); !errors.Is(err, errdefs.ErrRegistryUnavailable) {
		t.Errorf("closed port: %v, want registry unavailable", err)
	}
	for _, fault := range []registry.Fault{registry.Unavailable, registry.Stall, registry.Drop} {
		reg.SetFault(func(r *http.Request) registry.Fault {
			if registry.IsBlobGet(r) && !strings.Contains(r.URL.Path, mustConfig(t, img)) {
				return fault
			}
			return registry.None
		})
		start := time.Now()
		_, err := e.s.Pull(ctx, reg.Host+"/app:1", nil)
		if !errors.Is(err, errdefs.ErrRegistryUnavailable) {
			t.Errorf("fault %d: %v, want registry unavailable", fault, err)
		}
		if fault == registry.Stall && time.Since(start) > 10*time.Second {
			t.Errorf("stalled pull took %v with a 500ms progress timeout", time.Since(start))
		}
		if imgs, _ := e.s.List(); len(imgs) != 0 {
			t.Errorf("fault %d: a failed pull listed %v", fault, imgs)
		}
		if n := len(e.layerDirs(t)); n != 0 {
			t.Errorf("fault %d: failed pull left %d layer dirs", fault, n)
		}
	}
	// One layer arrives whole and the other fails: the whole one does not
	// stay behind either (on a full disk its room is wanted back).
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	second, err := layers[1].Digest()
	if err != nil {
		t.Fatal(err)
	}
	reg.SetFault(func(r *http.Request) registry.Fault {
		if registry.IsBlobGet(r) && strings.Contains(r.URL.Path, second.String()) {
			return registry.Unavailable
		}
		return registry.None
	})
	if _, err := e.s.Pull(ctx, reg.Host+"/app:1", nil); err == nil {
		t.Error("a pull whose second layer fails succeeded")
	}
	if n := len(e.layerDirs(t)); n != 0 {
		t.Errorf("a pull with one failed layer left %d layer dirs", n)
	}
	reg.SetFault(nil)
	if _, err := e.s.Pull(ctx, reg.Host+"/app:1", nil); err != nil {
		t.Errorf("retry once the fault is gone: %v", err)
	}
}

func mustConfig(t *testing.T, img v1.Image) string {
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// crashPoints are the places of a pull where TestCrashConsistency kills it.
var crashPoints = []string{"resolved", "mid-layer", "layer-unpacked", "layer-renamed", "blobs-written", "after-commit"}

// Crash consistency: a child process pulls and kills itself (SIGKILL) at a
// named point; the parent reopens the store like a restarted berthd.
const crashEnv = "BERTH_TEST_CRASH"

func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("helper for TestCrashConsistency")
	}
	var point, root, ref string
	fmt.Sscanf(strings.ReplaceAll(spec, ",", " "), "%s %s %s", &point, &root, &ref)
	testHook = func(p string) {
		if p == point {
			_ = unix.Kill(os.Getpid(), unix.SIGKILL)
			select {}
		}
	}
	db, err := store.Open(filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(db, Options{Root: filepath.Join(root, "images")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Pull(context.Background(), ref, nil)
	t.Fatalf("pull returned (%v) instead of crashing at %s", err, point)
}

func TestCrashConsistency(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	reg.Push(t, "app:1", busybox(t, "crash"))
	ref := reg.Host + "/app:1"
	for _, point := range crashPoints {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.db.Close()
			e.db = nil
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%s,%s", crashEnv, point, e.root, ref))
			out, err := cmd.CombinedOutput()
			if ws, ok := cmd.ProcessState.Sys().(interface{ Signaled() bool }); !ok || !ws.Signaled() {
				t.Fatalf("child did not crash at %s: %v\n%s", point, err, out)
			}
			e.reopen(t)
			imgs, _ := e.s.List()
			committed := point == "after-commit"
			if committed != (len(imgs) == 1) {
				t.Fatalf("after a crash at %s: %d images listed", point, len(imgs))
			}
			if !committed && len(e.layerDirs(t)) != 0 {
				t.Errorf("crash at %s left layer dirs %v", point, e.layerDirs(t))
			}
			if tmp, _ := os.ReadDir(filepath.Join(e.opts.Root, "tmp")); len(tmp) != 0 {
				t.Errorf("crash at %s left temporary files", point)
			}
			got, err := e.s.Pull(context.Background(), ref, nil)
			if err != nil {
				t.Fatalf("pull after the crash: %v", err)
			}
			dirs, err := e.s.Lease("c", got.ID)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(filepath.Join(dirs[0], "marker")); string(b) != "crash" {
				t.Errorf("layer content after recovery = %q", b)
			}
		})
	}
}

// Stores written before layer directories were numbered name them by a
// chain-ID prefix: those records keep working, are shared by new pulls and
// are collected like the others.
func TestOldLayerDirNames(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	img := busybox(t, "old")
	reg.Push(t, "app:1", img)
	layers, _ := img.Layers()
	reg.Push(t, "sibling:1", registry.Image(t, v1.Config{}, layers[0], registry.Layer(t, registry.File{Name: "s", Body: "s"})))
	e := newEnv(t, Options{})
	ctx := context.Background()
	app, err := e.s.Pull(ctx, reg.Host+"/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = e.db.Update(func(tx *store.Tx) error {
		for _, c := range app.Chain {
			var l layer
			if err := tx.Get(bucketLayers, c, &l); err != nil {
				return err
			}
			old := strings.TrimPrefix(c, "sha256:")[:16]
			if err := os.Rename(e.s.layerDir(l.Dir), e.s.layerDir(old)); err != nil {
				return err
			}
			l.Dir = old
			if err := tx.Put(bucketLayers, c, &l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.reopen(t)
	dirs, err := e.s.Lease("ctr", app.ID)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[0], "marker")); err != nil || string(b) != "old" {
		t.Fatalf("old-named layer after a restart: %q %v", b, err)
	}
	sib, err := e.s.Pull(ctx, reg.Host+"/sibling:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	sibDirs, err := e.s.Lease("ctr2", sib.ID)
	if err != nil {
		t.Fatal(err)
	}
	bottom, _ := layers[0].Digest()
	if sibDirs[1] != dirs[1] || reg.BlobGets(bottom.String()) != 1 {
		t.Errorf("the shared layer was not reused: %s vs %s, %d downloads", sibDirs[1], dirs[1], reg.BlobGets(bottom.String()))
	}
	for _, owner := range []string{"ctr", "ctr2"} {
		if err := e.s.Release(owner); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{app.ID, sib.ID} {
		if err := e.s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if d := e.layerDirs(t); len(d) != 0 {
		t.Errorf("layer dirs %v after removing everything", d)
	}
}

// Manifests are bounded by the path of the request, not by a word in it:
// a repository may be called "manifests" and hold big layers.
func TestPullRepoNamedManifests(t *testing.T) {
	reg := registry.New(t, registry.Options{})
	big := randomBody(rand.New(rand.NewPCG(3, 4)), maxManifestSize+1<<20)
	reg.Push(t, "a/manifests/b:1", registry.Image(t, v1.Config{}, registry.Layer(t, registry.File{Name: "big", Body: big})))
	e := newEnv(t, Options{})
	if _, err := e.s.Pull(context.Background(), reg.Host+"/a/manifests/b:1", nil); err != nil {
		t.Fatal(err)
	}
}
