package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Whiteout markers of the OCI image layout (and Docker's).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// maxEntries bounds the entries of one layer.
const maxEntries = 1_000_000

// unpackLayer applies one cached layer blob to root, checking the blob's
// digest as it reads; a blob that no longer matches is removed.
func (s *Store) unpackLayer(root string, desc v1.Descriptor, budget *int64) error {
	f, err := os.Open(s.blobPath(desc.Digest))
	if err != nil {
		return err
	}
	defer f.Close()
	vr := &verifyingReader{r: f, h: sha256.New(), want: desc.Digest.Hex}
	var r io.Reader
	switch desc.MediaType {
	case types.OCILayer, types.DockerLayer:
		zr, err := gzip.NewReader(bufio.NewReader(vr))
		if err != nil {
			return s.damaged(desc, vr, err)
		}
		defer zr.Close()
		r = zr
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		r = vr
	default:
		return fmt.Errorf("layer media type %q is not supported (gzip or uncompressed tar layers only)", desc.MediaType)
	}
	if err := extract(root, r, budget); err != nil {
		return s.damaged(desc, vr, err)
	}
	return s.damaged(desc, vr, nil)
}

// damaged reports err, unless the blob itself fails its digest: then that
// is the error, and the blob leaves the cache.
func (s *Store) damaged(desc v1.Descriptor, vr *verifyingReader, err error) error {
	if cerr := vr.check(); cerr != nil {
		_ = os.Remove(s.blobPath(desc.Digest))
		return cerr
	}
	return err
}

// extract applies a layer's tar stream to root. Every name is resolved
// inside root as if root were "/" (symlinks included), so nothing is
// written outside it; device nodes and FIFOs are skipped, setuid, setgid
// and sticky bits dropped from files, and everything is owned by writ's
// user (the job reads it, never owns it).
func extract(root string, r io.Reader, budget *int64) error {
	tr := tar.NewReader(r)
	mine := map[string]bool{} // paths this layer made, kept by an opaque whiteout
	for n := 0; ; n++ {
		if n > maxEntries {
			return fmt.Errorf("more than %d entries", maxEntries)
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		clean := path.Clean("/" + hdr.Name)
		if clean == "/" {
			continue
		}
		dir, base := path.Split(clean)
		switch {
		case base == whiteoutOpaque:
			if err := opaque(root, dir, mine); err != nil {
				return err
			}
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			target, err := securejoin.SecureJoin(root, path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)))
			if err != nil {
				return err
			}
			if err := os.RemoveAll(target); err != nil {
				return err
			}
			continue
		}
		if err := extractEntry(root, clean, hdr, tr, budget); err != nil {
			return fmt.Errorf("%s: %w", clean, err)
		}
		mine[clean] = true
	}
}

// opaque empties dir of what earlier layers put there.
func opaque(root, dir string, mine map[string]bool) error {
	p, err := securejoin.SecureJoin(root, dir)
	if err != nil {
		return err
	}
	des, err := os.ReadDir(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range des {
		if !mine[path.Join(dir, d.Name())] {
			if err := os.RemoveAll(filepath.Join(p, d.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func extractEntry(root, clean string, hdr *tar.Header, tr *tar.Reader, budget *int64) error {
	parent, err := securejoin.SecureJoin(root, path.Dir(clean))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	// The parent is resolved inside root; the last component is never
	// followed: whatever was there is replaced.
	target := filepath.Join(parent, path.Base(clean))
	if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := os.RemoveAll(target); err != nil {
			return err
		}
	}
	mode := os.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return os.Chmod(target, mode|0o700)
	case tar.TypeReg:
		if *budget -= hdr.Size; *budget < 0 {
			return errors.New("the image unpacks to more than its size limit")
		}
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, io.LimitReader(tr, hdr.Size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return os.Chmod(target, mode)
	case tar.TypeSymlink:
		// A link may point anywhere: the sandbox resolves it inside the
		// image's root, and unpacking resolves names with SecureJoin.
		return os.Symlink(hdr.Linkname, target)
	case tar.TypeLink:
		src, err := securejoin.SecureJoin(root, path.Clean("/"+hdr.Linkname))
		if err != nil {
			return err
		}
		if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("hard link to %q, which is not a regular file of the image", hdr.Linkname)
		}
		return os.Link(src, target)
	default:
		// Devices, FIFOs and the rest: a job's root has none of its own.
		return nil
	}
}
