// Command release builds writ's release artifacts, reproducibly, on this
// machine: static binaries for linux/amd64 and linux/arm64, a CycloneDX
// SBOM of each (from the Go build info the binary carries), .deb and .rpm
// packages (nfpm as a library), SHA256SUMS over all of them and a Sigstore
// bundle signing SHA256SUMS.
//
//	go run . -out ../bin/dist                   # make dist
//	go run . verify -key writ-release.pub DIR   # check a release directory
//
// It is a module of its own so that the packaging libraries never become
// dependencies of writ itself (writ's SBOM stays writ's).
//
// Signing here is key-based (-key, an ECDSA P-256 PEM private key; a
// throw-away key when none is given). The project's GitLab release pipeline
// signs keylessly instead, with an OIDC token from id_tokens: see
// docs/releasing.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "verify" {
		err = verifyMain(os.Args[2:])
	} else {
		err = distMain(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func distMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	out := fs.String("out", "dist", "output directory (emptied first)")
	src := fs.String("src", "..", "writ's source tree (a git checkout)")
	version := fs.String("version", "", "release version, e.g. v0.1.0 (default: git describe, or v0.0.0-dev)")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated GOOS/GOARCH")
	key := fs.String("key", os.Getenv("WRIT_RELEASE_KEY"), "PEM private key (ECDSA P-256) signing SHA256SUMS; empty: a throw-away key written next to the artifacts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	absSrc, err := filepath.Abs(*src)
	if err != nil {
		return err
	}
	r, err := Build(ctx, Options{Src: absSrc, Out: *out, Version: *version, Platforms: strings.Split(*platforms, ","), KeyFile: *key, Log: os.Stderr})
	if err != nil {
		return err
	}
	for _, a := range r.Artifacts {
		fmt.Println(filepath.Join(*out, a))
	}
	return nil
}

func verifyMain(args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	key := fs.String("key", "", "PEM public key of the release signer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" || fs.NArg() != 1 {
		return fmt.Errorf("usage: release verify -key writ-release.pub DIR")
	}
	n, err := VerifyDir(fs.Arg(0), *key)
	if err != nil {
		return err
	}
	fmt.Printf("ok: SHA256SUMS signed by the key, %d artifacts match their checksums\n", n)
	return nil
}
