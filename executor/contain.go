package executor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/sandbox"
	"gitlab.com/writ-ci/writ/sandbox/image"
)

// contained reports whether jobs run in the sandbox: always, unless the
// configuration says sandbox.unsafe_no_sandbox.
func (o *Options) contained() bool { return !o.Config.Sandbox.UnsafeNoSandbox }

// sandboxHost is the host-wide sandbox policy of this configuration.
func (o *Options) sandboxHost() *sandbox.Host {
	c := o.Config.Sandbox
	h := &sandbox.Host{
		HostPaths: c.HostPaths,
		Hide:      o.hiddenPaths(),
		Work:      filepath.Join(o.Config.Paths.State, "sandbox"),
		PidsMax:   max(c.PidsMax, 0),
		MemoryMax: max(c.MemoryMaxBytes, 0),
		TmpSize:   c.TmpSizeBytes,
		Init:      sandboxInit(),
	}
	return h
}

// sandboxInit is writ-sandbox-init beside writ's own executable, when it
// is installed there: a small program that starts in a few milliseconds,
// where writ itself would take tens. Without it writ is its own init.
func sandboxInit() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), sandbox.InitName)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return p
}

// hiddenPaths are writ's own files and directories, and the extra paths
// the configuration names: never visible to a job, wherever they are.
func (o *Options) hiddenPaths() []string {
	c := o.Config
	paths := []string{c.Paths.State, c.Paths.Cache, c.Paths.Builds, filepath.Dir(c.Paths.Audit), c.Paths.Audit,
		c.Log.File, c.Path, c.Allowlist.TokenFile, c.Allowlist.SSHKeyFile, c.Allowlist.KnownHostsFile,
		c.Trust.OpenPGPKeyring, c.Trust.SSHAllowedSigners}
	paths = append(paths, c.Trust.SigstorePublicKeys...)
	paths = append(paths, c.Sandbox.Hide...)
	if c.Path != "" {
		// The config's own directory (/etc/writ) holds its keys, unless it
		// is a directory jobs must see (/etc itself).
		if dir := filepath.Dir(c.Path); !isOneOf(dir, c.Sandbox.HostPaths) && dir != "/" {
			paths = append(paths, dir)
		}
	}
	var out []string
	for _, p := range paths {
		if p != "" && filepath.IsAbs(p) {
			out = append(out, filepath.Clean(p))
		}
	}
	return out
}

func isOneOf(s string, list []string) bool {
	for _, x := range list {
		if s == x {
			return true
		}
	}
	return false
}

// uids is the lease pool of job identities. A lease whose job has no
// state left (a crash before cleanup) may be reused once no process of
// its uid lives.
func (o *Options) uids() *sandbox.UIDs {
	return &sandbox.UIDs{
		First: o.Config.Sandbox.UIDFirst, Count: o.Config.Sandbox.UIDCount,
		Dir: filepath.Join(o.Config.Paths.State, "sandbox", "uids"),
		Stale: func(owner string) bool {
			_, err := os.Stat(o.jobDir(owner))
			return errors.Is(err, fs.ErrNotExist)
		},
	}
}

// jobNetwork is the entry's signed network choice (default: the host's).
func jobNetwork(e *allowlist.Entry) sandbox.Network {
	if e != nil && e.Definition.Network == string(sandbox.NetworkNone) {
		return sandbox.NetworkNone
	}
	return sandbox.NetworkHost
}

// jobImage is the image a job runs in: its entry's, pinned by digest,
// unless the sandbox is off or told to ignore images.
func (o *Options) jobImage(s *Snapshot) string {
	if !o.contained() || o.Config.Sandbox.Images != "run" || s.Entry == nil || s.PassThrough {
		return ""
	}
	if s.Image != "" {
		// Expanded at admission from the entry's pinned values.
		return s.Image
	}
	return s.Entry.Definition.Image
}

// imageRoot fetches (or finds in writ's cache) the job's image and returns
// its root filesystem; "" when the job runs on the host's directories.
func (o *Options) imageRoot(ctx context.Context, s *Snapshot) (string, error) {
	ref := o.jobImage(s)
	if ref == "" {
		return "", nil
	}
	st := &image.Store{Dir: filepath.Join(o.Config.Paths.Cache, "images"), MaxBytes: o.Config.Sandbox.ImageMaxBytes}
	return st.RootFS(ctx, ref)
}

// projectDir is the build directory as the job sees it: where writ keeps
// it on the host, or /builds/<id> inside an image (whose own /var, say,
// must stay the image's).
func (o *Options) projectDir(s *Snapshot) string {
	if o.jobImage(s) != "" {
		return "/builds/" + s.Job.ID
	}
	return s.BuildDir
}

// stageScriptName is the stage script's name in the sandbox's /run/writ.
func stageScriptName(stage string) string { return stage + ".sh" }

// containedStart runs spec in the sandbox: the starter runProcess uses.
func (o *Options) containedStart(spec sandbox.Spec) starter {
	return func(stdout, stderr *os.File) (int, func() error, error) {
		cmd, err := o.sandboxHost().Command(spec)
		if err != nil {
			return 0, nil, err
		}
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Start(); err != nil {
			return 0, nil, err
		}
		return cmd.Pid(), cmd.Wait, nil
	}
}

// stageFiles are the files a stage's sandbox gets in /run/writ: the stage
// script and the job's file variables, copied from writ's private state.
func (o *Options) stageFiles(s *Snapshot, scriptPath, stage string) []sandbox.File {
	files := []sandbox.File{{Source: scriptPath, Name: stageScriptName(stage)}}
	for _, v := range s.Variables {
		if v.File {
			files = append(files, sandbox.File{Source: filepath.Join(o.jobDir(s.Job.ID), "files", v.Name), Name: "var-" + v.Name, Secret: true})
		}
	}
	return files
}

// stageUID is the uid leased to job id at get_sources.
func (o *Options) stageUID(id string) (uint32, error) {
	uid, ok, err := o.uids().Lookup(id)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("job %s has no sandbox identity: get_sources did not run", id)
	}
	return uid, nil
}

// checkoutStaged checks the verified commit out into a staging directory
// only root can reach, gives the tree to the job's uid there, and moves it
// into place. The ownership walk never runs over a tree a job process can
// change: the staging directory's parent is the root-only builds root,
// which no sandbox shows, and no process of the job's uid exists yet.
//
// lease returns the job's uid; it is called once the checkout is staged.
func (o *Options) checkoutStaged(ctx context.Context, s *Snapshot, lease func() (uint32, error)) error {
	if err := os.MkdirAll(o.Config.Paths.Builds, 0o700); err != nil {
		return err
	}
	// Older installs (job.user) left the builds root traversable.
	if err := os.Chmod(o.Config.Paths.Builds, 0o700); err != nil {
		return err
	}
	staging := s.BuildDir + ".staging"
	_ = removeAll(staging)
	if err := os.Mkdir(staging, 0o700); err != nil {
		return err
	}
	defer removeAll(staging)
	if err := o.checkout(ctx, s, staging); err != nil {
		return err
	}
	uid, err := lease()
	if err != nil {
		return err
	}
	if err := chownTree(staging, int(uid)); err != nil {
		return err
	}
	return os.Rename(staging, s.BuildDir)
}

// chownTree gives every entry under root to uid (gid = uid), without
// following symlinks.
func chownTree(root string, uid int) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}

// passThroughDirs makes audit mode's per-job directories for GitLab's own
// scripts, owned by the job's uid: <builds>/<id>/builds and /cache, seen
// by the scripts at the builds_dir and cache_dir config_exec reported.
func (o *Options) passThroughDirs(s *Snapshot, uid uint32) ([]sandbox.Bind, error) {
	if err := os.MkdirAll(o.Config.Paths.Builds, 0o700); err != nil {
		return nil, err
	}
	root := s.BuildDir
	var binds []sandbox.Bind
	for _, d := range []struct{ name, target string }{
		{"builds", filepath.Join(o.Config.Paths.Builds, passThroughDir)},
		{"cache", filepath.Join(o.Config.Paths.Cache, passThroughDir)},
	} {
		p := filepath.Join(root, d.name)
		for _, dir := range []string{root, p} {
			// Fresh directories made by root under the root-only builds
			// root: chown on them follows nothing a job made.
			if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, err
			}
			if err := os.Lchown(dir, int(uid), int(uid)); err != nil {
				return nil, err
			}
		}
		binds = append(binds, sandbox.Bind{Source: p, Target: d.target, Writable: true})
	}
	return binds, nil
}

// passThroughEnv is the runner's environment for GitLab's own script,
// minus what would point it at writ's files.
func passThroughEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WRIT_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
