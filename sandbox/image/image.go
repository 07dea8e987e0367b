// Package image turns an OCI or Docker image pinned by digest into a root
// filesystem for writ's sandbox: it fetches the image with
// go-containerregistry (no container daemon), checks every blob against
// the digest that names it, keeps the verified blobs in writ's cache and
// unpacks the layers safely (no path leaves the root, no device nodes, no
// setuid bits, whiteouts applied).
//
// go-containerregistry is the registry client of crane, ko and sigstore's
// own tools (sigstore-go already depends on it): it speaks the registry
// protocol and both manifest formats, and resolves multi-platform indexes;
// writ adds the checks it must not leave to anyone (each blob's digest and
// size, the unpacking).
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// Store is a cache of verified image blobs and unpacked root filesystems
// in Dir, a directory only writ's user can reach.
type Store struct {
	Dir string
	// Transport reaches registries (default http.DefaultTransport).
	Transport http.RoundTripper
	// MaxBytes bounds an image: its compressed layers, and again its
	// unpacked files (default 8 GiB).
	MaxBytes int64
}

const defaultMaxBytes = 8 << 30

// RootFS returns the unpacked root filesystem of ref, which must be pinned
// by digest (name@sha256:…); it fetches and unpacks the image unless the
// cache holds it. For a multi-platform index it takes the manifest for
// linux on this machine's architecture, which the index (and so the pinned
// digest) names by digest.
func (s *Store) RootFS(ctx context.Context, ref string) (string, error) {
	d, err := name.NewDigest(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w (an image is used only when pinned by digest)", ref, err)
	}
	if !strings.HasPrefix(d.DigestStr(), "sha256:") {
		return "", fmt.Errorf("image %q: only sha256 digests are accepted", ref)
	}
	key := strings.TrimPrefix(d.DigestStr(), "sha256:")
	root := filepath.Join(s.Dir, "rootfs", key)
	if fi, err := os.Stat(root); err == nil && fi.IsDir() {
		return root, nil
	}
	for _, dir := range []string{s.Dir, filepath.Join(s.Dir, "rootfs"), filepath.Join(s.Dir, "blobs"), filepath.Join(s.Dir, "locks")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", err
		}
	}
	// One fetch per image at a time; the others wait and reuse it.
	unlock, err := fsutil.Lock(ctx, filepath.Join(s.Dir, "locks", key))
	if err != nil {
		return "", err
	}
	defer unlock()
	if fi, err := os.Stat(root); err == nil && fi.IsDir() {
		return root, nil
	}
	layers, err := s.fetch(ctx, d)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", ref, err)
	}
	staging, err := os.MkdirTemp(filepath.Join(s.Dir, "rootfs"), key+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(staging)
	if err := os.Chmod(staging, 0o755); err != nil {
		return "", err
	}
	budget := s.maxBytes()
	for _, l := range layers {
		if err := s.unpackLayer(staging, l, &budget); err != nil {
			return "", fmt.Errorf("image %s: layer %s: %w", ref, l.Digest, err)
		}
	}
	if err := os.Rename(staging, root); err != nil {
		return "", err
	}
	return root, nil
}

func (s *Store) maxBytes() int64 {
	if s.MaxBytes > 0 {
		return s.MaxBytes
	}
	return defaultMaxBytes
}

// fetch resolves d to its image manifest, checks the config blob, and
// makes sure every layer blob is in the cache, verified. It returns the
// layers' descriptors, bottom first.
func (s *Store) fetch(ctx context.Context, d name.Digest) ([]v1.Descriptor, error) {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH})}
	if s.Transport != nil {
		opts = append(opts, remote.WithTransport(s.Transport))
	}
	// remote checks the manifest (and an index's child manifest) against
	// the digest it was fetched by.
	img, err := remote.Image(d, opts...)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	if got := "sha256:" + sha256Hex(cfg); got != m.Config.Digest.String() {
		return nil, fmt.Errorf("config blob has digest %s, the manifest names %s", got, m.Config.Digest)
	}
	var total int64
	for _, l := range m.Layers {
		if l.Digest.Algorithm != "sha256" || len(l.Digest.Hex) != 64 {
			return nil, fmt.Errorf("layer digest %s: only sha256 is accepted", l.Digest)
		}
		if total += l.Size; l.Size < 0 || total > s.maxBytes() {
			return nil, fmt.Errorf("the layers are larger than %d bytes", s.maxBytes())
		}
		if err := s.fetchBlob(img, l); err != nil {
			return nil, err
		}
	}
	return m.Layers, nil
}

func (s *Store) blobPath(dg v1.Hash) string { return filepath.Join(s.Dir, "blobs", dg.Hex) }

// fetchBlob stores a layer's compressed bytes in the cache, verified
// against its descriptor's digest and size; a cached blob is used as is
// (unpackLayer checks it again as it reads).
func (s *Store) fetchBlob(img v1.Image, desc v1.Descriptor) error {
	p := s.blobPath(desc.Digest)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	l, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Dir(p), desc.Digest.Hex+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(rc, desc.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != desc.Size || hex.EncodeToString(h.Sum(nil)) != desc.Digest.Hex {
		return fmt.Errorf("layer blob %s: the registry sent %d bytes that do not match the digest and size (%d) the manifest names", desc.Digest, n, desc.Size)
	}
	return os.Rename(tmp.Name(), p)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// verifyingReader hashes what it reads; check compares the whole blob with
// its digest.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want string
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	return n, err
}

// check drains the rest of the blob and compares its digest.
func (v *verifyingReader) check() error {
	if _, err := io.Copy(io.Discard, v); err != nil {
		return err
	}
	if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
		return errors.New("the cached blob no longer matches its digest (removed; the next job fetches it again)")
	}
	return nil
}
