package spec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/errdefs"
)

// User is a resolved process identity.
type User struct {
	UID, GID       uint32
	AdditionalGids []uint32
	Home           string
	Username       string // empty when not in /etc/passwd
}

// UserRequest is what the image and the CRI ask for.
type UserRequest struct {
	// ImageUser is the image config's USER ("name", "uid", "uid:gid", ...).
	ImageUser string
	// RunAsUser, RunAsUsername, RunAsGroup come from the security context
	// and override ImageUser.
	RunAsUser     *int64
	RunAsUsername string
	RunAsGroup    *int64
	// SupplementalGroups are added to the groups from /etc/group.
	SupplementalGroups []int64
	// Strict keeps /etc/group memberships out (SupplementalGroupsPolicy
	// Strict): only the primary and the requested groups.
	Strict bool
}

// ResolveUser resolves req against the passwd and group files of the
// container root filesystem rootfs. The files are the image's, hostile:
// see openInRoot.
func ResolveUser(rootfs string, req UserRequest) (*User, error) {
	userPart, groupPart := req.ImageUser, ""
	if i := strings.IndexByte(userPart, ':'); i >= 0 {
		userPart, groupPart = userPart[:i], userPart[i+1:]
	}
	switch {
	case req.RunAsUser != nil:
		userPart, groupPart = strconv.FormatInt(*req.RunAsUser, 10), ""
	case req.RunAsUsername != "":
		userPart, groupPart = req.RunAsUsername, ""
	}
	if req.RunAsGroup != nil {
		groupPart = strconv.FormatInt(*req.RunAsGroup, 10)
	}
	if userPart == "" {
		userPart = "0"
	}
	passwd, group, err := readIDFiles(rootfs)
	if err != nil {
		return nil, err
	}
	u := &User{Home: "/"}
	uid, numeric := parseID(userPart)
	found := false
	for _, p := range passwd {
		if (numeric && p.uid == uid) || (!numeric && p.name == userPart) {
			u.UID, u.GID, u.Home, u.Username = p.uid, p.gid, p.home, p.name
			found = true
			break
		}
	}
	if !found {
		if !numeric {
			return nil, errdefs.InvalidArgument("user %q not found in the image's /etc/passwd", userPart)
		}
		u.UID, u.GID = uid, 0
	}
	if groupPart != "" {
		gid, numericG := parseID(groupPart)
		if !numericG {
			g := slices.IndexFunc(group, func(g groupEntry) bool { return g.name == groupPart })
			if g < 0 {
				return nil, errdefs.InvalidArgument("group %q not found in the image's /etc/group", groupPart)
			}
			gid = group[g].gid
		}
		u.GID = gid
	}
	// The primary group is listed too, as the kubelet expects in the
	// container's reported identity (and as `id -G` prints).
	extra := []uint32{u.GID}
	if !req.Strict && u.Username != "" {
		for _, g := range group {
			if slices.Contains(g.members, u.Username) {
				extra = append(extra, g.gid)
			}
		}
	}
	for _, g := range req.SupplementalGroups {
		extra = append(extra, uint32(g))
	}
	slices.Sort(extra)
	u.AdditionalGids = slices.Compact(extra)
	return u, nil
}

func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

func readIDFiles(rootfs string) ([]passwdEntry, []groupEntry, error) {
	root, err := os.Open(rootfs)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = root.Close() }()
	var passwd []passwdEntry
	var group []groupEntry
	err = readColonFile(root, "etc/passwd", func(f []string) {
		if len(f) >= 6 {
			uid, ok1 := parseID(f[2])
			gid, ok2 := parseID(f[3])
			if ok1 && ok2 {
				passwd = append(passwd, passwdEntry{name: f[0], uid: uid, gid: gid, home: f[5]})
			}
		}
	})
	if err != nil {
		return nil, nil, err
	}
	err = readColonFile(root, "etc/group", func(f []string) {
		if len(f) >= 4 {
			if gid, ok := parseID(f[2]); ok {
				var members []string
				if f[3] != "" {
					members = strings.Split(f[3], ",")
				}
				group = append(group, groupEntry{name: f[0], gid: gid, members: members})
			}
		}
	})
	return passwd, group, err
}

// maxIDFile bounds what is read of an image's passwd or group file.
const maxIDFile = 4 << 20

// openInRoot opens name of the image's root filesystem for reading, as
// the container would see it: every symlink resolves inside root (an
// absolute or ".." one cannot reach the host), and a FIFO or device
// planted there is neither waited on nor read. A missing file is nil.
func openInRoot(root *os.File, name string) (*os.File, error) {
	fd, err := unix.Openat2(int(root.Fd()), name, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, errdefs.InvalidArgument("the image's /%s: %v", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("the image's /%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, errdefs.InvalidArgument("the image's /%s is not a regular file (%s)", name, fi.Mode().Type())
	}
	if fi.Size() > maxIDFile {
		_ = f.Close()
		return nil, errdefs.InvalidArgument("the image's /%s is larger than %d bytes", name, maxIDFile)
	}
	return f, nil
}

// readColonFile calls fn with the fields of each line of the image's file
// name; a missing file reads as empty.
func readColonFile(root *os.File, name string, fn func([]string)) error {
	f, err := openInRoot(root, name)
	if err != nil || f == nil {
		return err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(io.LimitReader(f, maxIDFile))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	if err := sc.Err(); err != nil {
		return errdefs.InvalidArgument("the image's /%s: %v", name, err)
	}
	return nil
}
