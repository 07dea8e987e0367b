// Package ociimage builds writ's container image, the one the CI/CD
// components' image input names, without a container daemon: a base image
// (pinned by digest; it provides sh and git, which the components' scripts
// run) and one layer holding the writ binary. The result is reproducible:
// the same base and binary give the same digest, whoever builds it.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WritPath is where the image holds the writ binary; the components run
// `writ` from PATH.
const WritPath = "/usr/local/bin/writ"

// File is one regular file of a layer.
type File struct {
	// Path is absolute, with forward slashes.
	Path string
	Mode int64
	Data []byte
}

// epoch is every timestamp in the image, so that its digest depends only on
// its content.
var epoch = time.Unix(0, 0).UTC()

// Layer returns a tar layer of files, with their parent directories, owned
// by root, timestamps at the epoch, in path order.
func Layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("image file %q: use a clean absolute path", f.Path)
		}
		var parents []string
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			d := parents[i]
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
				return nil, err
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, Size: int64(len(f.Data)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// Build returns base with a layer holding writ (the static binary) at
// WritPath, /usr/local/bin first on PATH, no entrypoint (GitLab runs the
// job's script with the image's shell), and labels (for example
// org.opencontainers.image.revision).
func Build(base v1.Image, writ []byte, labels map[string]string) (v1.Image, error) {
	layer, err := Layer([]File{{Path: WritPath, Mode: 0o755, Data: writ}})
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "writ-image: " + WritPath},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("base image config: %w", err)
	}
	cfg := cf.Config.DeepCopy()
	cfg.Entrypoint, cfg.Cmd = nil, []string{"/bin/sh"}
	cfg.Env = withPath(cfg.Env)
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	for k, v := range labels {
		cfg.Labels[k] = v
	}
	if img, err = mutate.Config(img, *cfg); err != nil {
		return nil, err
	}
	if img, err = mutate.CreatedAt(img, v1.Time{Time: epoch}); err != nil {
		return nil, err
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON), nil
}

// withPath puts /usr/local/bin first on the image's PATH.
func withPath(env []string) []string {
	out := []string{}
	p := "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			if !strings.HasPrefix(v, "/usr/local/bin:") {
				p = "/usr/local/bin:" + v
			} else {
				p = v
			}
			continue
		}
		out = append(out, e)
	}
	return append(out, "PATH="+p)
}

// WriteLayout writes img as an OCI image layout in dir (created if needed)
// and returns its digest, the one to pin in the components' image input.
func WriteLayout(dir string, img v1.Image) (v1.Hash, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return v1.Hash{}, err
		}
	}
	if err := p.AppendImage(img); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}
