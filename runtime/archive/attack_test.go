package archive

// Attack tests: each one is a layer that tries to harm the node or lose
// what the image means, and fails without the defence it names.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A hardlink in an upper layer to a FIFO or a device in a lower one must
// not open it (a FIFO blocks the pull forever, a device's driver acts on
// open): the link becomes the same special file, as overlayfs's copy-up
// makes it. A link to a lower symlink is that symlink, not its target.
func TestAttackHardlinkToLowerSpecialFile(t *testing.T) {
	requireRoot(t)
	lower := t.TempDir()
	fifo := filepath.Join(lower, "fifo")
	if err := unix.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(fifo, 7, 8); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(lower, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "target"), []byte("target"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("target", filepath.Join(lower, "link")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := mktar(t,
		entry{name: "fifo2", typ: tar.TypeLink, link: "fifo"},
		entry{name: "null2", typ: tar.TypeLink, link: "null"},
		entry{name: "link2", typ: tar.TypeLink, link: "link"},
	)
	done := make(chan error, 1)
	go func() {
		_, err := Apply(context.Background(), bytes.NewReader(data), dir, Options{Parents: func() ([]string, error) { return []string{lower}, nil }})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		// Release the reader the unpack is stuck on.
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		<-done
		t.Fatal("a hardlink to a lower FIFO hung the unpack")
	}
	if st := statT(t, filepath.Join(dir, "fifo2")); st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o7777 != 0o640 || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("fifo2: mode %o owner %d:%d, want a 0640 FIFO of 7:8", st.Mode, st.Uid, st.Gid)
	}
	if st := statT(t, filepath.Join(dir, "null2")); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("null2: mode %o rdev %x, want character device 1:3", st.Mode, st.Rdev)
	}
	if l, err := os.Readlink(filepath.Join(dir, "link2")); err != nil || l != "target" {
		t.Errorf("link2 = %q, %v; want a symlink to target", l, err)
	}
}

// vfsCap is a security.capability value (revision 2, effective) granting
// the permitted capability bit.
func vfsCap(bit uint) []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<bit)
	return b
}

// chown(2) clears security.capability: file capabilities (ping's
// cap_net_raw) must be set after the owner, or the image loses them.
func TestAttackFileCapabilitiesKept(t *testing.T) {
	requireRoot(t)
	capNetRaw := vfsCap(unix.CAP_NET_RAW)
	lower := t.TempDir()
	if _, err := apply(t, lower, mktar(t,
		entry{name: "bin/ping", typ: tar.TypeReg, body: "ping", mode: 0o755, uid: 1000, gid: 1001,
			pax: map[string]string{"SCHILY.xattr.security.capability": string(capNetRaw)}},
	), Options{}); err != nil {
		t.Fatal(err)
	}
	// A hardlink in an upper layer copies the lower file up with them.
	upper := t.TempDir()
	if _, err := apply(t, upper, mktar(t, entry{name: "bin/ping6", typ: tar.TypeLink, link: "bin/ping"}),
		Options{Parents: func() ([]string, error) { return []string{lower}, nil }}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(lower, "bin/ping"), filepath.Join(upper, "bin/ping6")} {
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(p, "security.capability", buf)
		if err != nil || !bytes.Equal(buf[:n], capNetRaw) {
			t.Errorf("%s: security.capability = %x, %v; want %x", p, buf[:max(n, 0)], err, capNetRaw)
		}
		if st := statT(t, p); st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o7777 != 0o755 {
			t.Errorf("%s: owner %d:%d mode %o", p, st.Uid, st.Gid, st.Mode)
		}
	}
}

// Raw tar blocks, for the sparse formats Go's tar writer cannot write.

func octal(b []byte, v int64) {
	copy(b, fmt.Sprintf("%0*o", len(b)-1, v))
	b[len(b)-1] = 0
}

// rawHeader is a tar header block; gnu selects the old GNU magic.
func rawHeader(name string, typ byte, size int64, gnu bool, fill func(b []byte)) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	octal(b[100:108], 0o644)
	octal(b[108:116], 0)
	octal(b[116:124], 0)
	octal(b[124:136], size)
	octal(b[136:148], 1700000000)
	b[156] = typ
	if gnu {
		copy(b[257:265], "ustar  \x00")
	} else {
		copy(b[257:265], "ustar\x0000")
	}
	if fill != nil {
		fill(b)
	}
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }

// paxRecord is "<length> key=value\n", the length counting itself.
func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec)
	for n != len(strconv.Itoa(n))+len(rec) {
		n = len(strconv.Itoa(n)) + len(rec)
	}
	return strconv.Itoa(n) + rec
}

// sparseLayer holds two sparse files of size bytes with 4 KiB of data at
// each end: one in the old GNU format ('S'), one in GNU's PAX format 0.1.
func sparseLayer(size int64) []byte {
	data := append(bytes.Repeat([]byte("a"), 4096), bytes.Repeat([]byte("b"), 4096)...)
	var out []byte
	out = append(out, rawHeader("gnu-sparse", tar.TypeGNUSparse, int64(len(data)), true, func(b []byte) {
		octal(b[386:398], 0)
		octal(b[398:410], 4096)
		octal(b[410:422], size-4096)
		octal(b[422:434], 4096)
		octal(b[483:495], size)
	})...)
	out = append(out, data...)
	pax := paxRecord("GNU.sparse.size", fmt.Sprint(size)) + paxRecord("GNU.sparse.numblocks", "2") +
		paxRecord("GNU.sparse.map", fmt.Sprintf("0,4096,%d,4096", size-4096))
	out = append(out, rawHeader("PaxHeaders/pax-sparse", tar.TypeXHeader, int64(len(pax)), false, nil)...)
	out = append(out, pad([]byte(pax))...)
	out = append(out, rawHeader("pax-sparse", tar.TypeReg, int64(len(data)), false, nil)...)
	out = append(out, data...)
	return append(out, make([]byte, 1024)...)
}

// A sparse entry is a few KiB in the layer and any size on disk if its
// holes are written out as zeros: the disk fills, or (the old GNU format)
// the file was dropped. Both formats become sparse files.
func TestAttackSparseEntriesStaySparse(t *testing.T) {
	requireRoot(t)
	const size = 256 << 20
	dir := t.TempDir()
	stats, err := apply(t, dir, sparseLayer(size), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gnu-sparse", "pax-sparse"} {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		st := statT(t, p)
		if fi.Size() != size || st.Blocks*512 > 64<<10 {
			t.Errorf("%s: size %d allocated %d, want %d bytes in at most 64 KiB", name, fi.Size(), st.Blocks*512, size)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for off, want := range map[int64]byte{0: 'a', size / 2: 0, size - 4096: 'b'} {
			buf := make([]byte, 4096)
			if _, err := f.ReadAt(buf, off); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{want}, 4096)) {
				t.Errorf("%s at %d: want 4 KiB of %q (%v)", name, off, want, err)
			}
		}
		f.Close()
	}
	if stats.Bytes > 1<<20 {
		t.Errorf("stats count %d bytes allocated", stats.Bytes)
	}
}
