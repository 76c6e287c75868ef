package nodeconformance

import (
	"archive/tar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthrt/berth/test/fixtures"
	"github.com/berthrt/berth/test/registry"
)

// imageBuilders makes each image of the suite that the focused specs pull,
// by repository (tags change with every Kubernetes release; what the
// specs need of an image does not), from this machine's Debian packages
// as test/fixtures does.
func imageBuilders(agnhostBin, porterDir string) map[string]func(t *testing.T) v1.Image {
	return map[string]func(t *testing.T) v1.Image{
		"registry.k8s.io/e2e-test-images/busybox": func(t *testing.T) v1.Image { return busybox(t, v1.Config{}) },
		"registry.k8s.io/e2e-test-images/nginx":   func(t *testing.T) v1.Image { return fixtures.Nginx(t, 80) },
		// The setuid program that prints its effective uid.
		"registry.k8s.io/e2e-test-images/nonewprivs": func(t *testing.T) v1.Image { return fixtures.NoNewPrivs(t) },
		// Upstream: a Debian base with USER 1234.
		"registry.k8s.io/e2e-test-images/nonroot": func(t *testing.T) v1.Image { return busybox(t, v1.Config{User: "1234"}) },
		"registry.k8s.io/pause":                   func(t *testing.T) v1.Image { return fixtures.Pause(t, "e2e") },
		"registry.k8s.io/e2e-test-images/agnhost": func(t *testing.T) v1.Image { return agnhost(t, agnhostBin, porterDir) },
		// Upstream: Debian with dnsutils; the hostname specs run glibc's
		// `hostname -f`, which resolves through /etc/hosts.
		"registry.k8s.io/e2e-test-images/glibc-dns-testing": func(t *testing.T) v1.Image {
			return busybox(t, v1.Config{}, append(fixtures.HostPrograms(t, "/bin/hostname"),
				registry.File{Name: "etc/nsswitch.conf", Body: "hosts: files dns\n"})...)
		},
	}
}

// agnhost is Kubernetes' test server (built static from
// k8s.io/kubernetes/test/images/agnhost) over the busybox userland, laid
// out as its Dockerfile does: /agnhost with an agnhost-2 link (the
// entrypoint specs run either), /uploads for netexec, porter's TLS pair in
// /, a user 1000 in a group 50000 defined in the image (the
// supplemental-groups specs read them), bash (the probe specs run
// /bin/bash), and the clients the networking and hook specs run in it:
// curl, and a netcat that speaks UDP (busybox's does not) ahead of
// busybox's in $PATH.
func agnhost(t *testing.T, bin, porterDir string) v1.Image {
	t.Helper()
	body, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	files := []registry.File{
		{Name: "agnhost", Body: string(body), Mode: 0o755},
		{Name: "agnhost-2", Type: tar.TypeSymlink, Link: "agnhost"},
		{Name: "uploads/", Type: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Body: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n" +
			"user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n"},
		{Name: "etc/group", Body: "root:x:0:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\n" +
			"group-defined-in-image:x:50000:user-defined-in-image\n"},
	}
	files = append(files, fixtures.HostPrograms(t, "/bin/bash", "/usr/bin/curl", "/bin/nc.openbsd")...)
	files = append(files, registry.File{Name: "usr/local/bin/nc", Type: tar.TypeSymlink, Link: "/bin/nc.openbsd"})
	for _, f := range []string{"localhost.crt", "localhost.key"} {
		data, err := os.ReadFile(filepath.Join(porterDir, f))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, registry.File{Name: f, Body: string(data)})
	}
	return busybox(t, v1.Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}, files...)
}

// busybox is test/fixtures' busybox userland with every applet in /bin
// too, as upstream's busybox image has them (specs run /bin/sysctl, which
// Debian's busybox lists under /sbin), plus extra files.
//
// Its sh is Debian's busybox ash, which differs from upstream's in one way
// the specs see: Debian reverts upstream's passing of environment
// variables whose names are not identifiers (debian/patches/
// revert-9c143ce5…), so the envFrom specs' "data-1" never reaches `env`.
// Those two specs fail on every runtime here; bash as sh would pass them
// and fail the read-only-rootfs spec, which expects ash's error text.
func busybox(t *testing.T, cfg v1.Config, extra ...registry.File) v1.Image {
	t.Helper()
	out, err := exec.Command("/bin/busybox", "--list-full").Output()
	if err != nil {
		t.Fatalf("busybox --list-full: %v", err)
	}
	var links []registry.File
	have := map[string]bool{}
	for _, a := range strings.Fields(string(out)) {
		have[a] = true
	}
	for _, a := range strings.Fields(string(out)) {
		if name := "bin/" + filepath.Base(a); !have[name] {
			have[name] = true
			links = append(links, registry.File{Name: name, Type: tar.TypeSymlink, Link: "busybox"})
		}
	}
	return fixtures.Busybox(t, cfg, append(links, extra...)...)
}

// e2eImages lists the images e2e.test names (registry/repo:tag).
func e2eImages(t *testing.T, e2eTest string) []string {
	t.Helper()
	out, err := exec.Command(e2eTest, "--list-images").Output()
	if err != nil {
		t.Fatalf("e2e.test --list-images: %v", err)
	}
	return strings.Fields(string(out))
}

// e2eRegistry serves every image of the list that a builder makes, under
// its path, and says which it could not make (specs that pull those fail
// with ErrImagePull; the summary shows which).
func e2eRegistry(t *testing.T, images []string, builders map[string]func(t *testing.T) v1.Image) (reg *registry.Server, missing []string) {
	t.Helper()
	reg = registry.New(t, registry.Options{})
	built := map[string]v1.Image{}
	for _, ref := range images {
		repo, tag, ok := cutTag(ref)
		build := builders[repo]
		if !ok || build == nil {
			missing = append(missing, ref)
			continue
		}
		if built[repo] == nil {
			built[repo] = build(t)
		}
		_, path, _ := strings.Cut(repo, "/")
		reg.Push(t, path+":"+tag, built[repo])
	}
	return reg, missing
}

// cutTag splits registry/repo:tag (a port in the registry is not a tag).
func cutTag(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "", false
	}
	return ref[:i], ref[i+1:], true
}
