// Package image pulls OCI images from registries and stores them: config
// and manifest blobs content-addressed, layers unpacked once per chain into
// their own overlayfs lower directory, metadata in bbolt.
//
// Crash consistency: layers are unpacked into a temporary directory and
// renamed into place, and an image becomes visible only in the single bbolt
// transaction that records it with all its layers. Whatever a crash leaves
// (temporary directories, unrecorded layer directories or blobs) is removed
// by the collector on the next start.
//
// Layer directories are named by a number from the database's sequence,
// never by anything an image declares: an image cannot name, and so
// replace or remove, another image's layer.
package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/errdefs"
	"github.com/berthrt/berth/runtime/store"
)

const (
	bucketImages = "images"
	bucketRefs   = "image-refs"
	bucketLayers = "layers"
	bucketLeases = "layer-leases"
)

// Image is a stored image.
type Image struct {
	// ID is the config digest, "sha256:...".
	ID          string   `json:"id"`
	RepoTags    []string `json:"repoTags,omitempty"`
	RepoDigests []string `json:"repoDigests,omitempty"`
	// Size is the compressed size: config plus layers, as in the manifest.
	Size int64 `json:"size"`
	// Chain are the layers' chain IDs, bottom first.
	Chain []string `json:"chain"`
	// Manifest is the digest of the platform manifest.
	Manifest string    `json:"manifest"`
	Pulled   time.Time `json:"pulled"`
	// Annotations are the manifest's annotations berth acts on (see
	// keptAnnotations); records of earlier versions have none.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// layer is the record of one unpacked chain.
type layer struct {
	ChainID string `json:"chainID"`
	DiffID  string `json:"diffID"`
	// Dir is the directory name under <root>/layers: a sequence number
	// (stores of earlier versions named it by a chain-ID prefix; those
	// records keep their name).
	Dir    string `json:"dir"`
	Bytes  int64  `json:"bytes"`
	Inodes int64  `json:"inodes"`
}

// Options configures a Store.
type Options struct {
	// Root is the directory for content and layers (<berth root>/images).
	Root                   string
	PauseImage             string
	MaxConcurrentDownloads int
	ProgressTimeout        time.Duration
	Mirrors                map[string][]string
	InsecureRegistries     []string
	Logger                 *slog.Logger
	// OnPull, if set, learns the outcome of every pull (for metrics).
	OnPull func(bytes int64, d time.Duration, err error)
}

// OptionsFromConfig maps berthd's config to store options.
func OptionsFromConfig(c *config.Config, log *slog.Logger) Options {
	return Options{
		Root:                   filepath.Join(c.Root, "images"),
		PauseImage:             c.Image.PauseImage,
		MaxConcurrentDownloads: c.Image.MaxConcurrentDownloads,
		ProgressTimeout:        c.Image.ProgressTimeout.Duration,
		Mirrors:                c.Image.Mirrors,
		InsecureRegistries:     c.Image.InsecureRegistries,
		Logger:                 log,
	}
}

// Store is the image store.
type Store struct {
	opts Options
	db   *store.DB
	log  *slog.Logger

	// mu serialises metadata commits with garbage collection and guards
	// what in-flight pulls hold: held counts them per chain ID, unpacked
	// are the layers they unpacked and have not recorded yet (by chain ID),
	// and claimed the layer directories of those layers and of unpacks in
	// progress. The collector removes none of them.
	mu       sync.Mutex
	held     map[string]int
	unpacked map[string]*layer
	claimed  map[string]bool

	pulls  singleflight.Group
	layers singleflight.Group

	registries atomic.Pointer[Registries]

	configMu sync.Mutex
	configs  map[string]*v1.ConfigFile
}

// New opens the store under opts.Root using db for metadata, and removes
// whatever an earlier crash left behind.
func New(db *store.DB, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConcurrentDownloads < 1 {
		opts.MaxConcurrentDownloads = 3
	}
	if opts.ProgressTimeout <= 0 {
		opts.ProgressTimeout = time.Minute
	}
	s := &Store{opts: opts, db: db, log: opts.Logger, held: map[string]int{}, unpacked: map[string]*layer{},
		claimed: map[string]bool{}, configs: map[string]*v1.ConfigFile{}}
	s.SetRegistries(Registries{Mirrors: opts.Mirrors, InsecureRegistries: opts.InsecureRegistries})
	for _, d := range []string{s.blobDir(), s.layersDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// The layers directory is what containers see through overlayfs; it
	// must be traversable by non-root container users.
	if err := os.Chmod(s.layersDir(), 0o711); err != nil { //nolint:gosec // see above: traversable, not listable
		return nil, err
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) blobDir() string   { return filepath.Join(s.opts.Root, "blobs", "sha256") }
func (s *Store) layersDir() string { return filepath.Join(s.opts.Root, "layers") }
func (s *Store) tmpDir() string    { return filepath.Join(s.opts.Root, "tmp") }

// LayerDir is the unpacked directory of a layer record.
func (s *Store) layerDir(dir string) string { return filepath.Join(s.layersDir(), dir) }

// recover drops images whose layers vanished and collects garbage.
func (s *Store) recover() error {
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return err
	}
	if err := os.MkdirAll(s.tmpDir(), 0o700); err != nil {
		return err
	}
	err := s.db.Update(func(tx *store.Tx) error {
		layers, err := store.All[layer](tx, bucketLayers)
		if err != nil {
			return err
		}
		missing := map[string]bool{}
		for _, l := range layers {
			if _, err := os.Stat(s.layerDir(l.Dir)); err != nil {
				missing[l.ChainID] = true
				if err := tx.Delete(bucketLayers, l.ChainID); err != nil {
					return err
				}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		images, err := store.All[Image](tx, bucketImages)
		if err != nil {
			return err
		}
		for _, img := range images {
			if slices.ContainsFunc(img.Chain, func(c string) bool { return missing[c] }) {
				s.log.Warn("dropping image with missing layers", "image", img.ID)
				if err := deleteImage(tx, &img); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.collect()
}

// collect removes layers that no image and no lease uses, blobs no image
// uses, and unrecorded directories (left by a crash). It runs after image
// removal and at start.
func (s *Store) collect() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keepDirs := map[string]bool{}
	keepBlobs := map[string]bool{}
	err := s.db.Update(func(tx *store.Tx) error {
		used := map[string]bool{}
		for c := range s.held {
			used[c] = true
		}
		images, err := store.All[Image](tx, bucketImages)
		if err != nil {
			return err
		}
		for _, img := range images {
			for _, c := range img.Chain {
				used[c] = true
			}
			keepBlobs[strings.TrimPrefix(img.ID, "sha256:")] = true
			keepBlobs[strings.TrimPrefix(img.Manifest, "sha256:")] = true
		}
		leases, err := store.All[[]string](tx, bucketLeases)
		if err != nil {
			return err
		}
		for _, chain := range leases {
			for _, c := range chain {
				used[c] = true
			}
		}
		layers, err := store.All[layer](tx, bucketLayers)
		if err != nil {
			return err
		}
		for _, l := range layers {
			if used[l.ChainID] {
				keepDirs[l.Dir] = true
				continue
			}
			if err := tx.Delete(bucketLayers, l.ChainID); err != nil {
				return err
			}
		}
		// Directories of in-flight pulls have no record yet.
		for d := range s.claimed {
			keepDirs[d] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Deleting after the commit: a crash in between leaves unrecorded
	// directories, which the next collection removes.
	entries, err := os.ReadDir(s.layersDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !keepDirs[e.Name()] {
			s.log.Debug("removing unused layer", "dir", e.Name())
			if err := removeLayerDir(s.layerDir(e.Name())); err != nil {
				return err
			}
		}
	}
	blobs, err := os.ReadDir(s.blobDir())
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if !keepBlobs[b.Name()] {
			if err := os.Remove(filepath.Join(s.blobDir(), b.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// writeBlob stores data under its sha256 digest, atomically.
func (s *Store) writeBlob(data []byte) error {
	sum := sha256.Sum256(data)
	hexd := hex.EncodeToString(sum[:])
	final := filepath.Join(s.blobDir(), hexd)
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	tmp, err := os.CreateTemp(s.tmpDir(), "blob-")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), final)
}

func (s *Store) readBlob(digest string) ([]byte, error) {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexd) != 64 {
		return nil, fmt.Errorf("bad digest %q", digest)
	}
	return os.ReadFile(filepath.Join(s.blobDir(), hexd))
}

// Config returns the parsed config of image id.
func (s *Store) Config(id string) (*v1.ConfigFile, error) {
	s.configMu.Lock()
	cf := s.configs[id]
	s.configMu.Unlock()
	if cf != nil {
		return cf, nil
	}
	raw, err := s.readBlob(id)
	if err != nil {
		return nil, fmt.Errorf("image %s config: %w", id, err)
	}
	cf = &v1.ConfigFile{}
	if err := json.Unmarshal(raw, cf); err != nil {
		return nil, fmt.Errorf("image %s config: %w", id, err)
	}
	s.configMu.Lock()
	s.configs[id] = cf
	s.configMu.Unlock()
	return cf, nil
}

// RawConfig returns the config blob of image id.
func (s *Store) RawConfig(id string) ([]byte, error) { return s.readBlob(id) }

// List returns every image, sorted by ID.
func (s *Store) List() ([]Image, error) {
	var images []Image
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		images, err = store.All[Image](tx, bucketImages)
		return err
	})
	return images, err
}

// Get resolves ref (an ID, a unique ID prefix, a tag or a digest reference)
// to an image, or returns ErrNotFound.
func (s *Store) Get(ref string) (*Image, error) {
	var img *Image
	err := s.db.View(func(tx *store.Tx) error {
		var err error
		img, err = lookup(tx, ref)
		return err
	})
	return img, err
}

func lookup(tx *store.Tx, ref string) (*Image, error) {
	if ref == "" {
		return nil, errdefs.InvalidArgument("empty image reference")
	}
	var img Image
	id := ref
	if isHex(id) && len(id) == 64 {
		id = "sha256:" + id
	}
	if strings.HasPrefix(id, "sha256:") {
		if err := tx.Get(bucketImages, id, &img); err == nil {
			return &img, nil
		}
	}
	if r, err := ParseRef(ref); err == nil {
		var target string
		if tx.Get(bucketRefs, r.String(), &target) == nil {
			if err := tx.Get(bucketImages, target, &img); err != nil {
				return nil, err
			}
			return &img, nil
		}
	}
	// A unique prefix of an ID, as crictl users type them.
	prefix := strings.TrimPrefix(ref, "sha256:")
	if isHex(prefix) && len(prefix) >= 3 {
		var found []string
		for _, k := range tx.Keys(bucketImages) {
			if strings.HasPrefix(strings.TrimPrefix(k, "sha256:"), prefix) {
				found = append(found, k)
			}
		}
		switch len(found) {
		case 1:
			if err := tx.Get(bucketImages, found[0], &img); err != nil {
				return nil, err
			}
			return &img, nil
		case 0:
		default:
			return nil, errdefs.InvalidArgument("image ID prefix %q matches %d images", prefix, len(found))
		}
	}
	return nil, errdefs.NotFound("image %q", ref)
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Remove deletes the image ref resolves to, with all its tags and digests,
// and then every layer and blob nothing else uses. A missing image is not
// an error.
func (s *Store) Remove(ref string) error {
	err := s.db.Update(func(tx *store.Tx) error {
		img, err := lookup(tx, ref)
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		s.log.Info("removing image", "image", img.ID, "tags", img.RepoTags)
		return deleteImage(tx, img)
	})
	if err != nil {
		return err
	}
	return s.collect()
}

func deleteImage(tx *store.Tx, img *Image) error {
	for _, r := range append(slices.Clone(img.RepoTags), img.RepoDigests...) {
		var target string
		if tx.Get(bucketRefs, r, &target) == nil && target == img.ID {
			if err := tx.Delete(bucketRefs, r); err != nil {
				return err
			}
		}
	}
	return tx.Delete(bucketImages, img.ID)
}

// Lease records that owner (a container) uses the layers of image id, so
// that they outlive the image's removal, and returns the layer directories
// in overlayfs lowerdir order (top first).
func (s *Store) Lease(owner, id string) ([]string, error) {
	var dirs []string
	// Grouped with other containers' writes (pods start in parallel).
	err := s.db.Group(func(tx *store.Tx) error {
		dirs = nil // Group may run this more than once
		var img Image
		if err := tx.Get(bucketImages, id, &img); err != nil {
			return err
		}
		for i := len(img.Chain) - 1; i >= 0; i-- {
			var l layer
			if err := tx.Get(bucketLayers, img.Chain[i], &l); err != nil {
				return fmt.Errorf("image %s: %w", id, err)
			}
			dirs = append(dirs, s.layerDir(l.Dir))
		}
		return tx.Put(bucketLeases, owner, img.Chain)
	})
	return dirs, err
}

// Release drops owner's lease and those of "owner/..." (a container's
// image volumes); their layers go with the next collection if no image
// uses them any more.
func (s *Store) Release(owner string) error {
	var had bool
	err := s.db.Group(func(tx *store.Tx) error {
		had = false // Group may run this more than once
		for _, k := range tx.Keys(bucketLeases) {
			if k == owner || strings.HasPrefix(k, owner+"/") {
				had = true
				if err := tx.Delete(bucketLeases, k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil || !had {
		return err
	}
	return s.collect()
}

// FsUsage is what the store occupies.
type FsUsage struct {
	Mountpoint string
	Bytes      int64
	Inodes     int64
}

// Usage sums the recorded allocation of every layer and blob.
func (s *Store) Usage() (FsUsage, error) {
	u := FsUsage{Mountpoint: s.opts.Root}
	err := s.db.View(func(tx *store.Tx) error {
		layers, err := store.All[layer](tx, bucketLayers)
		for _, l := range layers {
			u.Bytes += l.Bytes
			u.Inodes += l.Inodes
		}
		return err
	})
	if err != nil {
		return u, err
	}
	blobs, err := os.ReadDir(s.blobDir())
	if err != nil {
		return u, err
	}
	for _, b := range blobs {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(s.blobDir(), b.Name()), &st) == nil {
			u.Bytes += st.Blocks * 512
			u.Inodes++
		}
	}
	return u, nil
}

// IsPinned reports whether img is the pause image, which the kubelet must
// never garbage collect.
func (s *Store) IsPinned(img *Image) bool {
	r, err := ParseRef(s.opts.PauseImage)
	if err != nil {
		return false
	}
	return slices.Contains(img.RepoTags, r.String()) || slices.Contains(img.RepoDigests, r.String())
}

// PauseImage is the configured pause image reference.
func (s *Store) PauseImage() string { return s.opts.PauseImage }

// chainIDs computes the OCI chain IDs of diffIDs.
func chainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// sortedUnique returns ss sorted without duplicates.
func sortedUnique(ss []string) []string {
	sort.Strings(ss)
	return slices.Compact(ss)
}
