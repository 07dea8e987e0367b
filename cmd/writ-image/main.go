// Command writ-image builds writ's container image without a container
// daemon, for the CI/CD components' image input: a base image that provides
// sh and git, pinned by digest, plus the writ binary at /usr/local/bin/writ.
// It writes an OCI image layout, or pushes to a registry, and prints the
// digest-pinned reference to use.
//
//	CGO_ENABLED=0 go build -trimpath -o writ ./cmd/writ
//	go run ./cmd/writ-image --base debian@sha256:… --writ writ --push registry.example.com/acme/writ:1.2.0
//	go run ./cmd/writ-image --base-layout base/ --writ writ --out image/
//
// The same base and binary always give the same digest (every timestamp is
// the epoch), so anyone can rebuild the published image and compare.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"gitlab.com/writ-ci/writ/internal/ociimage"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "writ-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("writ-image", flag.ContinueOnError)
	base := fs.String("base", "", "base image in a registry, pinned by digest (name@sha256:…); it must provide /bin/sh and git")
	baseLayout := fs.String("base-layout", "", "base image from this OCI image layout directory (its only image)")
	writ := fs.String("writ", "", "the writ binary (build it with CGO_ENABLED=0)")
	out := fs.String("out", "", "write the image as an OCI image layout into this directory")
	push := fs.String("push", "", "push the image to this repository[:tag]")
	revision := fs.String("revision", os.Getenv("CI_COMMIT_SHA"), "source revision label (org.opencontainers.image.revision)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *writ == "" || (*base == "") == (*baseLayout == "") || (*out == "") == (*push == "") {
		return errors.New("use --writ, one of --base and --base-layout, and one of --out and --push")
	}
	bin, err := os.ReadFile(*writ)
	if err != nil {
		return err
	}
	b, err := loadBase(*base, *baseLayout)
	if err != nil {
		return err
	}
	labels := map[string]string{"org.opencontainers.image.title": "writ"}
	if *revision != "" {
		labels["org.opencontainers.image.revision"] = *revision
	}
	img, err := ociimage.Build(b, bin, labels)
	if err != nil {
		return err
	}
	if *out != "" {
		d, err := ociimage.WriteLayout(*out, img)
		if err != nil {
			return err
		}
		fmt.Println(d)
		return nil
	}
	ref, err := name.ParseReference(*push)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", ref.Context().Name(), d)
	return nil
}

func loadBase(ref, dir string) (v1.Image, error) {
	if dir != "" {
		p, err := layout.FromPath(dir)
		if err != nil {
			return nil, err
		}
		idx, err := p.ImageIndex()
		if err != nil {
			return nil, err
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		if len(m.Manifests) != 1 {
			return nil, fmt.Errorf("%s holds %d images; give a layout with exactly one", dir, len(m.Manifests))
		}
		return p.Image(m.Manifests[0].Digest)
	}
	if !strings.Contains(ref, "@sha256:") {
		return nil, fmt.Errorf("--base %s: pin the base by digest (name@sha256:…)", ref)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	return remote.Image(r, remote.WithAuthFromKeychain(authn.DefaultKeychain))
}
