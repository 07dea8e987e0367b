package main

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

//go:embed assets
var assets embed.FS

// binaries are the programs a package installs, built for its platform.
type binaries struct {
	// Writ is cmd/writ; Init is cmd/writ-sandbox-init, which writ finds
	// beside its own executable (executor.sandboxInit), so both go to
	// /usr/bin.
	Writ, Init string
}

// layoutEntry is one path of the package's file system: who owns it, with
// which mode.
type layoutEntry struct {
	src, dst, typ string
	owner, group  string
	mode          os.FileMode
}

// layout is the install layout of docs/install.md (the block under
// <!-- install-layout -->), made by the package manager instead of by
// hand: GitLab Runner and writ run as root and each job as a uid of the
// sandbox's range, so everything is root's and writ's directories are
// readable by root only. writ's own preflight (executor.CheckHost) checks
// exactly these owners and modes before every job.
func layout(bins binaries, staging, src string) []layoutEntry {
	a := func(name string) string { return filepath.Join(staging, name) }
	doc := func(name string) string { return filepath.Join(src, name) }
	dir := func(dst string) layoutEntry {
		return layoutEntry{dst: dst, typ: files.TypeDir, owner: "root", group: "root", mode: 0o700}
	}
	return []layoutEntry{
		{src: bins.Writ, dst: "/usr/bin/writ", owner: "root", group: "root", mode: 0o755},
		{src: bins.Init, dst: "/usr/bin/writ-sandbox-init", owner: "root", group: "root", mode: 0o755},
		dir("/etc/writ"), // configuration and trust-root keys
		{src: a("config.toml.example"), dst: "/etc/writ/config.toml.example", typ: files.TypeConfigNoReplace, owner: "root", group: "root", mode: 0o600},
		dir("/var/lib/writ"),        // state: accepted version, marks, decisions, uid leases
		dir("/var/lib/writ/builds"), // build directories (each job sees only its own)
		dir("/var/cache/writ"),      // git mirrors, verified allowlist cache
		dir("/var/log/writ"),        // the audit log
		{src: a("gitlab-runner-writ.conf"), dst: "/usr/lib/systemd/system/gitlab-runner.service.d/writ.conf", owner: "root", group: "root", mode: 0o644},
		{src: doc("LICENSE"), dst: "/usr/share/doc/writ/LICENSE", typ: files.TypeRPMLicense, owner: "root", group: "root", mode: 0o644},
		{src: doc("README.md"), dst: "/usr/share/doc/writ/README.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("SECURITY.md"), dst: "/usr/share/doc/writ/SECURITY.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("docs/install.md"), dst: "/usr/share/doc/writ/install.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("docs/config.md"), dst: "/usr/share/doc/writ/config.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("docs/operations.md"), dst: "/usr/share/doc/writ/operations.md", owner: "root", group: "root", mode: 0o644},
	}
}

// writePackage builds the deb or rpm of bins for goarch into o.Out and
// returns its file name.
func writePackage(o Options, r *Result, bins binaries, goarch, format string) (string, error) {
	staging, err := os.MkdirTemp("", "writ-pkg-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(staging)
	if err := stageAssets(staging); err != nil {
		return "", err
	}
	var contents files.Contents
	for _, e := range layout(bins, staging, o.Src) {
		typ := e.typ
		if typ == files.TypeRPMLicense && format != "rpm" {
			typ = ""
		}
		contents = append(contents, &files.Content{Source: e.src, Destination: e.dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Owner: e.owner, Group: e.group, Mode: e.mode, MTime: r.Epoch}})
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name: "writ", Arch: goarch, Platform: "linux", Version: r.Version,
		Maintainer:  "writ maintainers <writ@writ-ci.invalid>",
		Description: "GitLab Runner custom executor that runs only jobs on a signed, versioned allowlist",
		Homepage:    "https://gitlab.com/writ-ci/writ",
		License:     "Apache-2.0",
		Section:     "devel",
		MTime:       r.Epoch,
		Overridables: nfpm.Overridables{
			Recommends: []string{"gitlab-runner"},
			Contents:   contents,
			Umask:      0o022,
			// No pre-install script: the sandbox profile needs no
			// accounts (jobs run as uids of sandbox.uid_first/uid_count).
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(staging, "postinstall.sh"),
			},
		},
	})
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", err
	}
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return "", err
	}
	name := pkgr.ConventionalFileName(info)
	f, err := os.Create(filepath.Join(o.Out, name))
	if err != nil {
		return "", err
	}
	if err := pkgr.Package(info, f); err != nil {
		f.Close()
		return "", err
	}
	return name, f.Close()
}

// stageAssets writes the embedded package assets to dir.
func stageAssets(dir string) error {
	return fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if filepath.Ext(p) == ".sh" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p)), data, mode); err != nil {
			return fmt.Errorf("stage %s: %w", p, err)
		}
		return nil
	})
}
