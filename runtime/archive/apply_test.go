package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: layer extraction sets owners, device nodes and trusted xattrs")
	}
}

// entry is one tar member for tests.
type entry struct {
	name, link string
	typ        byte
	mode       int64
	body       string
	uid, gid   int
	mtime      time.Time
	pax        map[string]string
	major      int64
}

func mktar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if e.mode == 0 {
			e.mode = 0o644
			if e.typ == tar.TypeDir {
				e.mode = 0o755
			}
		}
		if e.mtime.IsZero() {
			e.mtime = time.Unix(1700000000, 0)
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: e.mtime, PAXRecords: e.pax, Devmajor: e.major, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(t *testing.T, dir string, data []byte, opts Options) (Stats, error) {
	t.Helper()
	return Apply(context.Background(), bytes.NewReader(data), dir, opts)
}

func statT(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestApplyFiles(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	mtime := time.Unix(1600000000, 0)
	stats, err := apply(t, dir, mktar(t,
		entry{name: "etc/", typ: tar.TypeDir, mtime: mtime},
		entry{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0::/root:/bin/sh\n", uid: 1000, gid: 1001, mtime: mtime},
		entry{name: "bin/su", typ: tar.TypeReg, body: "#!", mode: 0o4755},
		entry{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"},
		entry{name: "bin/ls", typ: tar.TypeLink, link: "bin/su"},
		entry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1},
		entry{name: "run/fifo", typ: tar.TypeFifo},
		entry{name: "cap", typ: tar.TypeReg, pax: map[string]string{"SCHILY.xattr.user.berth": "yes", "SCHILY.xattr.trusted.overlay.opaque": "y"}},
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/passwd")); string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("passwd = %q", b)
	}
	if st := statT(t, filepath.Join(dir, "etc/passwd")); st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o777 != 0o644 {
		t.Errorf("passwd owner/mode = %d:%d %o", st.Uid, st.Gid, st.Mode)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "etc/passwd")); !fi.ModTime().Equal(mtime) {
		t.Errorf("passwd mtime = %v", fi.ModTime())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "etc")); !fi.ModTime().Equal(mtime) {
		t.Errorf("etc mtime = %v, want the header's despite the file written into it", fi.ModTime())
	}
	if st := statT(t, filepath.Join(dir, "bin/su")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("setuid lost: %o", st.Mode)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "bin/sh")); l != "/bin/busybox" {
		t.Errorf("symlink = %q", l)
	}
	if a, b := statT(t, filepath.Join(dir, "bin/su")), statT(t, filepath.Join(dir, "bin/ls")); a.Ino != b.Ino {
		t.Error("hardlink is not the same inode")
	}
	if st := statT(t, filepath.Join(dir, "dev/null")); st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 {
		t.Errorf("dev/null = %o rdev %d", st.Mode, st.Rdev)
	}
	if st := statT(t, filepath.Join(dir, "run/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo mode %o", st.Mode)
	}
	buf := make([]byte, 16)
	if n, err := unix.Lgetxattr(filepath.Join(dir, "cap"), "user.berth", buf); err != nil || string(buf[:n]) != "yes" {
		t.Errorf("user xattr = %q, %v", buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "cap"), "trusted.overlay.opaque", buf); err == nil {
		t.Error("an image must not set trusted.* xattrs")
	}
	if stats.Inodes < 9 || stats.Bytes <= 0 {
		t.Errorf("stats = %+v", stats)
	}
}

func TestApplyWhiteouts(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	_, err := apply(t, dir, mktar(t,
		entry{name: "gone", typ: tar.TypeReg, body: "x"},
		entry{name: ".wh.gone", typ: tar.TypeReg},
		entry{name: "lib/.wh.libc.so", typ: tar.TypeReg},
		entry{name: "opaque/", typ: tar.TypeDir},
		entry{name: "opaque/.wh..wh..opq", typ: tar.TypeReg},
		entry{name: "opaque/kept", typ: tar.TypeReg},
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"gone", "lib/libc.so"} {
		st := statT(t, filepath.Join(dir, p))
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Errorf("%s is not an overlay whiteout: mode %o rdev %d", p, st.Mode, st.Rdev)
		}
	}
	for _, p := range []string{".wh.gone", "lib/.wh.libc.so", "opaque/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left as a file", p)
		}
	}
	buf := make([]byte, 4)
	if n, err := unix.Lgetxattr(filepath.Join(dir, "opaque"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque xattr = %q, %v", buf[:n], err)
	}
	if _, err := os.Stat(filepath.Join(dir, "opaque/kept")); err != nil {
		t.Error(err)
	}
}

// listTree returns every path under dir.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func TestApplyCannotEscape(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		entries []entry
		// inside is where the contained write must land, relative to the
		// layer ($OUT: the outside directory's absolute path as seen from
		// the layer root); "" if the layer must be rejected.
		inside string
	}{
		{"dotdot", []entry{{name: "../../escape", typ: tar.TypeReg, body: "x"}}, "escape"},
		{"absolute", []entry{{name: "/OUTSIDE/escape", typ: tar.TypeReg, body: "x"}}, "OUTSIDE/escape"},
		{"dotdot in middle", []entry{{name: "a/../../../OUTSIDE/escape", typ: tar.TypeReg, body: "x"}}, "OUTSIDE/escape"},
		{"relative symlink dir", []entry{
			{name: "up", typ: tar.TypeSymlink, link: "../../../../../../.."},
			{name: "up/OUTSIDE/escape", typ: tar.TypeReg, body: "x"}}, "OUTSIDE/escape"},
		{"absolute symlink dir", []entry{
			{name: "abs", typ: tar.TypeSymlink, link: "/OUTSIDE"},
			{name: "abs/escape", typ: tar.TypeReg, body: "x"}}, "$OUT/escape"},
		{"symlink to outside dir then mkdir", []entry{
			{name: "abs", typ: tar.TypeSymlink, link: "/OUTSIDE"},
			{name: "abs/sub/", typ: tar.TypeDir}}, "$OUT/sub"},
		{"symlink chain", []entry{
			{name: "a", typ: tar.TypeSymlink, link: "b"},
			{name: "b", typ: tar.TypeSymlink, link: "/OUTSIDE"},
			{name: "a/escape", typ: tar.TypeReg, body: "x"}}, "$OUT/escape"},
		{"file over symlink is not followed", []entry{
			{name: "victim", typ: tar.TypeSymlink, link: "/OUTSIDE/secret"},
			{name: "victim", typ: tar.TypeReg, body: "x"}}, "victim"},
		{"device through symlink", []entry{
			{name: "abs", typ: tar.TypeSymlink, link: "/OUTSIDE"},
			{name: "abs/null", typ: tar.TypeChar, major: 1}}, "$OUT/null"},
		{"whiteout through symlink", []entry{
			{name: "abs", typ: tar.TypeSymlink, link: "/OUTSIDE"},
			{name: "abs/.wh.secret", typ: tar.TypeReg}}, "$OUT/secret"},
		{"hardlink outside", []entry{{name: "hl", typ: tar.TypeLink, link: "../OUTSIDE/secret"}}, ""},
		{"hardlink through symlink", []entry{
			{name: "abs", typ: tar.TypeSymlink, link: "/OUTSIDE"},
			{name: "hl", typ: tar.TypeLink, link: "abs/secret"}}, ""},
		{"symlink loop", []entry{
			{name: "a", typ: tar.TypeSymlink, link: "b"},
			{name: "b", typ: tar.TypeSymlink, link: "a"},
			{name: "a/x", typ: tar.TypeReg}}, ""},
		{"through a file", []entry{
			{name: "f", typ: tar.TypeReg, body: "x"},
			{name: "f/x", typ: tar.TypeReg}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			outside := filepath.Join(base, "OUTSIDE")
			if err := os.MkdirAll(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			// The layer dir sits at base/layer/x so that ".." climbs into
			// base, where OUTSIDE is; with a symlink to the absolute path of
			// OUTSIDE the escape would be literal.
			layer := filepath.Join(base, "layer", "x")
			if err := os.MkdirAll(layer, 0o755); err != nil {
				t.Fatal(err)
			}
			// Symlinks name the real absolute path of OUTSIDE, so that
			// following them literally would escape.
			for i := range tc.entries {
				if rest, ok := strings.CutPrefix(tc.entries[i].link, "/OUTSIDE"); ok {
					tc.entries[i].link = outside + rest
				}
			}
			before := listTree(t, base)
			_, err := apply(t, layer, mktar(t, tc.entries...), Options{})
			after := listTree(t, base)
			var grew []string
			for _, p := range after {
				if !strings.HasPrefix(p, "/layer/x/") {
					if i := sort.SearchStrings(before, p); i >= len(before) || before[i] != p {
						grew = append(grew, p)
					}
				}
			}
			if len(grew) > 0 {
				t.Fatalf("extraction wrote outside the layer: %v", grew)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "s" {
				t.Fatal("file outside the layer changed or vanished")
			}
			if tc.inside == "" {
				if err == nil {
					t.Fatal("unsafe layer accepted")
				}
				return
			}
			if err != nil {
				t.Fatalf("containable layer rejected: %v", err)
			}
			want := filepath.Join(layer, strings.ReplaceAll(tc.inside, "$OUT", strings.TrimPrefix(outside, "/")))
			if _, err := os.Lstat(want); err != nil {
				t.Errorf("contained entry not at %s: %v\n%v", want, err, listTree(t, layer))
			}
		})
	}
}

func TestApplyHardlinkIntoParentLayer(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	if err := os.WriteFile(filepath.Join(lower, "data"), []byte("lower"), 0o640); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	called := false
	_, err := apply(t, dir, mktar(t, entry{name: "copy", typ: tar.TypeLink, link: "data"}),
		Options{Parents: func() ([]string, error) { called = true; return []string{lower}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "copy")); string(b) != "lower" || !called {
		t.Errorf("copy-up = %q (parents called %v)", b, called)
	}
	if st := statT(t, filepath.Join(dir, "copy")); st.Mode&0o777 != 0o640 {
		t.Errorf("mode %o", st.Mode)
	}
}

func TestApplyTruncatedStream(t *testing.T) {
	requireRoot(t)
	data := mktar(t, entry{name: "big", typ: tar.TypeReg, body: strings.Repeat("x", 4096)})
	if _, err := apply(t, t.TempDir(), data[:1000], Options{}); err == nil {
		t.Fatal("truncated layer accepted")
	}
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"./":           ".",
		"/":            ".",
		"a/b/":         "a/b",
		"../../x":      "x",
		"/etc/passwd":  "etc/passwd",
		"a/../../b/./": "b",
	} {
		if got := cleanName(in); got != want {
			t.Errorf("cleanName(%q) = %q, want %q", in, got, want)
		}
	}
}
