package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Options say what to build.
type Options struct {
	// Src is writ's source tree, a git checkout (for the version, the
	// commit time and the build's VCS stamp).
	Src string
	// Out is the output directory; it is emptied first.
	Out string
	// Version is the release version ("v0.1.0"); empty: from git.
	Version string
	// Platforms are GOOS/GOARCH pairs.
	Platforms []string
	// KeyFile is the PEM private key that signs SHA256SUMS; empty: a
	// throw-away key, written to Out as release-key.pem/.pub.
	KeyFile string
	// Log receives progress lines.
	Log io.Writer
}

// Result lists what was built, relative to Out.
type Result struct {
	Version string
	// Commit is the source commit, Modified true for uncommitted changes.
	Commit   string
	Modified bool
	// Epoch is the commit time: every timestamp in the artifacts.
	Epoch     time.Time
	Artifacts []string
}

// Build makes every artifact. The binaries, SBOMs and packages depend only
// on the source tree, the version and the toolchain: same inputs, same
// bytes. Only the signature differs from run to run (ECDSA is randomised).
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if err := safeOut(o.Out, o.Src); err != nil {
		return nil, err
	}
	// go build runs in the source tree: every path must be absolute.
	var err error
	if o.Out, err = filepath.Abs(o.Out); err != nil {
		return nil, err
	}
	if o.Src, err = filepath.Abs(o.Src); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(o.Out); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	epoch, err := sourceDate(ctx, o.Src)
	if err != nil {
		return nil, err
	}
	if o.Version == "" {
		o.Version = gitVersion(ctx, o.Src)
	}
	r := &Result{Version: o.Version, Epoch: epoch}
	r.Commit, r.Modified = gitCommit(ctx, o.Src)
	for _, pl := range o.Platforms {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(pl), "/")
		if !ok {
			return nil, fmt.Errorf("platform %q: want GOOS/GOARCH", pl)
		}
		names, err := buildPlatform(ctx, o, r, goos, goarch)
		if err != nil {
			return nil, err
		}
		r.Artifacts = append(r.Artifacts, names...)
	}
	sort.Strings(r.Artifacts)
	sums, err := writeChecksums(o.Out, r.Artifacts)
	if err != nil {
		return nil, err
	}
	bundle, pub, err := signChecksums(o.Out, sums, o.KeyFile, o.Log)
	if err != nil {
		return nil, err
	}
	r.Artifacts = append(r.Artifacts, "SHA256SUMS", bundle)
	if pub != "" {
		r.Artifacts = append(r.Artifacts, pub)
	}
	return r, nil
}

// commands are the programs of a release, by their cmd/ directory. The
// sandbox's init is Linux-only, like the sandbox.
var commands = []struct {
	name      string
	linuxOnly bool
}{{name: "writ"}, {name: "writ-sandbox-init", linuxOnly: true}}

func buildPlatform(ctx context.Context, o Options, r *Result, goos, goarch string) ([]string, error) {
	var names []string
	built := map[string]string{}
	for _, c := range commands {
		if c.linuxOnly && goos != "linux" {
			continue
		}
		bin := fmt.Sprintf("%s_%s_%s_%s", c.name, strings.TrimPrefix(r.Version, "v"), goos, goarch)
		fmt.Fprintf(o.Log, "release: building %s\n", bin)
		if err := goBuild(ctx, o.Src, filepath.Join(o.Out, bin), "./cmd/"+c.name, goos, goarch, r); err != nil {
			return nil, err
		}
		sbom := bin + ".cdx.json"
		if err := writeSBOM(filepath.Join(o.Out, bin), filepath.Join(o.Out, sbom), r); err != nil {
			return nil, fmt.Errorf("SBOM of %s: %w", bin, err)
		}
		built[c.name] = filepath.Join(o.Out, bin)
		names = append(names, bin, sbom)
	}
	if goos != "linux" {
		return names, nil
	}
	bins := binaries{Writ: built["writ"], Init: built["writ-sandbox-init"]}
	for _, format := range []string{"deb", "rpm"} {
		name, err := writePackage(o, r, bins, goarch, format)
		if err != nil {
			return nil, fmt.Errorf("%s package for %s: %w", format, goarch, err)
		}
		names = append(names, name)
	}
	return names, nil
}

// goBuild builds the command pkg as a static, reproducible binary, as
// make build does: no cgo, no paths of this
// machine (-trimpath), no build ID; version, commit, commit date and
// whether the tree was modified through ldflags (the toolchain's own VCS
// stamp is missing in git worktrees, and -trimpath drops -ldflags from the
// build info, so they are set explicitly).
func goBuild(ctx context.Context, src, out, pkg, goos, goarch string, r *Result) error {
	const v = "gitlab.com/writ-ci/writ/internal/version."
	ldflags := fmt.Sprintf("-s -w -buildid= -X %sVersion=%s -X %sCommit=%s -X %sDate=%s -X %sModified=%t",
		v, r.Version, v, r.Commit, v, r.Epoch.Format(time.RFC3339), v, r.Modified)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=-mod=readonly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s %s/%s: %v\n%s", pkg, goos, goarch, err, stderr.String())
	}
	return nil
}

// safeOut refuses an output directory that emptying would hurt: the
// source tree or one of its ancestors.
func safeOut(out, src string) error {
	absOut, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	absSrc, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(absOut, absSrc); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
		return fmt.Errorf("-out %s contains the source tree; choose a directory of its own (it is emptied)", out)
	}
	return nil
}

// sourceDate is the time of the checkout's HEAD commit: every timestamp in
// the artifacts (SBOM, package file times) is this, never the clock.
func sourceDate(ctx context.Context, src string) (time.Time, error) {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	out, err := exec.CommandContext(ctx, "git", "-C", src, "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("commit time of %s: %w (set SOURCE_DATE_EPOCH outside a checkout)", src, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(n, 0).UTC(), nil
}

// gitCommit is HEAD's full hash and whether the tree has changes.
func gitCommit(ctx context.Context, src string) (string, bool) {
	head, err := exec.CommandContext(ctx, "git", "-C", src, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	status, err := exec.CommandContext(ctx, "git", "-C", src, "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(head)), err != nil || len(bytes.TrimSpace(status)) > 0
}

// gitVersion is the tag at HEAD, or v0.0.0-dev+<commit>.
func gitVersion(ctx context.Context, src string) string {
	if out, err := exec.CommandContext(ctx, "git", "-C", src, "describe", "--tags", "--exact-match", "--match", "v*").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	out, err := exec.CommandContext(ctx, "git", "-C", src, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "v0.0.0-dev"
	}
	return "v0.0.0-dev+" + strings.TrimSpace(string(out))
}

// writeChecksums writes SHA256SUMS in sha256sum's format and returns its bytes.
func writeChecksums(dir string, names []string) ([]byte, error) {
	var b bytes.Buffer
	for _, n := range names {
		sum, err := fileSHA256(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, n)
	}
	return b.Bytes(), os.WriteFile(filepath.Join(dir, "SHA256SUMS"), b.Bytes(), 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
