package checkpoint

import (
	"context"
	"fmt"
	"os"
	"path"
)

// GVisorStateFile is the file of runsc's image that every checkpoint has
// (the sandbox kernel's state; pages_meta.img and pages.img hold its
// memory unless it was saved compressed into this one).
const GVisorStateFile = "checkpoint.img"

// CopyGVisorImage copies the gVisor image of the pod checkpoint at dir
// (its GVisorDir) into dst, an existing directory of berth's, for runsc
// to read from there: nobody else can change it while runsc does. The
// checkpoint is input, whoever wrote it: only flat regular files are
// copied (a symlink, a FIFO or a subdirectory is left out, nothing
// followed out of it), and the state file must be among them.
func CopyGVisorImage(ctx context.Context, dir, dst string) error {
	images, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer func() { _ = images.Close() }()
	var state bool
	err = DirSourceIn(dir, GVisorDir).Walk(func(e *Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if path.Dir(e.Name) != "." {
			return fmt.Errorf("%s/%s: the gVisor image holds no directories", GVisorDir, e.Name)
		}
		state = state || e.Name == GVisorStateFile
		return copyInto(images, e.Name, e.Reader())
	})
	if err != nil {
		return err
	}
	if !state {
		return fmt.Errorf("the pod checkpoint holds no gVisor image (%s/%s as a regular file)", GVisorDir, GVisorStateFile)
	}
	return nil
}

// UnpackLog continues a restored container's log (at p, which nothing
// has written yet) from the checkpoint's container.log, when it has one:
// all a gVisor container's directory adds to the sandbox's image.
func UnpackLog(ctx context.Context, src Source, p string) error {
	return src.Walk(func(e *Entry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.Name == ContainerLog {
			return copyLog(p, e.Reader())
		}
		return nil
	})
}
