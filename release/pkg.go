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

// layout is the package's file system: who owns what, with which mode. It
// is the install profile of docs/install.md ("job-user": the runner and
// writ as root, job scripts as writ-job), made by the package manager
// instead of by hand.
type layoutEntry struct {
	src, dst, typ string
	owner, group  string
	mode          os.FileMode
}

func layout(bin, staging, src string) []layoutEntry {
	a := func(name string) string { return filepath.Join(staging, name) }
	doc := func(name string) string { return filepath.Join(src, name) }
	return []layoutEntry{
		{src: bin, dst: "/usr/bin/writ", owner: "root", group: "root", mode: 0o755},
		// Configuration and trust root: readable by writ, writable only by root.
		{dst: "/etc/writ", typ: files.TypeDir, owner: "root", group: "writ", mode: 0o750},
		{src: a("config.toml.example"), dst: "/etc/writ/config.toml.example", typ: files.TypeConfigNoReplace, owner: "root", group: "writ", mode: 0o640},
		// State and builds: writ's; traversable (not listable) so the job
		// user reaches its own build directory.
		{dst: "/var/lib/writ", typ: files.TypeDir, owner: "writ", group: "writ", mode: 0o711},
		{dst: "/var/lib/writ/builds", typ: files.TypeDir, owner: "writ", group: "writ", mode: 0o711},
		{dst: "/var/cache/writ", typ: files.TypeDir, owner: "writ", group: "writ", mode: 0o700},
		{dst: "/var/log/writ", typ: files.TypeDir, owner: "writ", group: "writ", mode: 0o750},
		{src: a("gitlab-runner-writ.conf"), dst: "/usr/lib/systemd/system/gitlab-runner.service.d/writ.conf", owner: "root", group: "root", mode: 0o644},
		{src: a("gitlab-runner-shared-user.conf"), dst: "/usr/share/writ/gitlab-runner-shared-user.conf", owner: "root", group: "root", mode: 0o644},
		{src: doc("LICENSE"), dst: "/usr/share/doc/writ/LICENSE", typ: files.TypeRPMLicense, owner: "root", group: "root", mode: 0o644},
		{src: doc("README.md"), dst: "/usr/share/doc/writ/README.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("SECURITY.md"), dst: "/usr/share/doc/writ/SECURITY.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("docs/install.md"), dst: "/usr/share/doc/writ/install.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("docs/config.md"), dst: "/usr/share/doc/writ/config.md", owner: "root", group: "root", mode: 0o644},
		{src: doc("docs/operations.md"), dst: "/usr/share/doc/writ/operations.md", owner: "root", group: "root", mode: 0o644},
	}
}

// writePackage builds the deb or rpm of bin for goarch into o.Out and
// returns its file name.
func writePackage(o Options, r *Result, bin, goarch, format string) (string, error) {
	staging, err := os.MkdirTemp("", "writ-pkg-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(staging)
	if err := stageAssets(staging); err != nil {
		return "", err
	}
	var contents files.Contents
	for _, e := range layout(bin, staging, o.Src) {
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
			Scripts: nfpm.Scripts{
				PreInstall:  filepath.Join(staging, "preinstall.sh"),
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
