package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/fsutil"
	"gitlab.com/writ-ci/writ/sandbox"
)

// snapshotFormat is the version of the decision.json layout.
const snapshotFormat = 1

// maxSnapshotBytes bounds reading a decision snapshot.
const maxSnapshotBytes = 16 << 20

// Snapshot is the immutable per-job record prepare writes to
// <state>/jobs/<id>/decision.json. Run and cleanup act on it alone.
type Snapshot struct {
	Format    int         `json:"format"`
	CreatedAt time.Time   `json:"created_at"`
	Mode      config.Mode `json:"mode"`
	Admitted  bool        `json:"admitted"`
	// PassThrough: audit mode admitted a job enforce mode refuses; run
	// executes the runner's own scripts.
	PassThrough bool   `json:"pass_through"`
	Environment string `json:"environment"`
	Job         JobRef `json:"job"`
	// Ref is the verified full ref (Decision.Ref); empty when no entry
	// matched.
	Ref       string       `json:"verified_ref,omitempty"`
	Allowlist AllowlistRef `json:"allowlist"`
	// Entry is a full copy of the matched entry (nil when none matched).
	Entry *allowlist.Entry `json:"entry"`
	// Commit is the verified commit, Repository the entry's repository.
	Commit     string `json:"commit,omitempty"`
	Repository string `json:"repository,omitempty"`
	Signer     string `json:"signer,omitempty"`
	// Image is the entry's image expanded from its pinned values
	// (Decision.Image).
	Image     string             `json:"image,omitempty"`
	Variables []AdmittedVariable `json:"variables,omitempty"`
	// PayloadSHA256 binds the snapshot to the exact payload file.
	PayloadSHA256 string        `json:"payload_sha256"`
	BuildDir      string        `json:"build_dir"`
	Timeout       time.Duration `json:"timeout"`
	Failures      []Failure     `json:"failures,omitempty"`
	// Sources are the verified further repositories (source.extra)
	// get_sources checks out.
	Sources []VerifiedSource `json:"sources,omitempty"`
}

func (o *Options) jobsDir() string { return filepath.Join(o.Config.Paths.State, "jobs") }

// jobDir is the job's private state directory. id is digits only (the
// payload decoder guarantees it), so it never escapes jobsDir.
func (o *Options) jobDir(id string) string { return filepath.Join(o.jobsDir(), id) }

func (o *Options) snapshotPath(id string) string {
	return filepath.Join(o.jobDir(id), "decision.json")
}

func (o *Options) buildDir(id string) string { return filepath.Join(o.Config.Paths.Builds, id) }

// errJobStateExists: prepare found state of an earlier attempt.
var errJobStateExists = errors.New("job state exists")

// createJobDir makes the job's private directory, which must not exist.
func (o *Options) createJobDir(id string) error {
	if err := os.MkdirAll(o.jobsDir(), 0o700); err != nil {
		return err
	}
	err := os.Mkdir(o.jobDir(id), 0o700)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s is left from an earlier attempt for this job (the runner's cleanup removes it)", errJobStateExists, o.jobDir(id))
	}
	return err
}

func (o *Options) writeSnapshot(s *Snapshot) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.CreateExclusive(o.snapshotPath(s.Job.ID), append(data, '\n'), 0o600)
}

// readSnapshot loads the job's snapshot and checks that it belongs to the
// payload with digest (fail closed on any mismatch).
func (o *Options) readSnapshot(id, digest string) (*Snapshot, error) {
	data, err := fsutil.ReadFileLimit(o.snapshotPath(id), maxSnapshotBytes)
	if err != nil {
		return nil, err
	}
	var s Snapshot
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decision snapshot %s is damaged: %w", o.snapshotPath(id), err)
	}
	if s.Format != snapshotFormat {
		return nil, fmt.Errorf("decision snapshot %s has format %d; this writ reads format %d", o.snapshotPath(id), s.Format, snapshotFormat)
	}
	if s.Job.ID != id {
		return nil, fmt.Errorf("decision snapshot %s is for job %q, not %s", o.snapshotPath(id), s.Job.ID, id)
	}
	if s.PayloadSHA256 != digest {
		return nil, fmt.Errorf("the job payload changed since prepare decided (SHA-256 %s, decided for %s): writ runs only what it decided", digest, s.PayloadSHA256)
	}
	if s.BuildDir != o.buildDir(id) {
		return nil, fmt.Errorf("decision snapshot %s names build directory %s, expected %s", o.snapshotPath(id), s.BuildDir, o.buildDir(id))
	}
	return &s, nil
}

// writeFileVariables writes the admitted file variables into the job's
// private directory and returns name → path.
func (o *Options) writeFileVariables(id string, vars []AdmittedVariable) (map[string]string, error) {
	paths := map[string]string{}
	u, err := o.lookupJobUser()
	if err != nil {
		return nil, err
	}
	if u != nil {
		// Readable by the job user only, outside writ's private state.
		for _, v := range vars {
			if !v.File {
				continue
			}
			p, err := o.writeReadable(id, "var-"+v.Name, []byte(v.Value), u, true)
			if err != nil {
				return nil, err
			}
			paths[v.Name] = p
		}
		return paths, nil
	}
	dir := filepath.Join(o.jobDir(id), "files")
	for _, v := range vars {
		if !v.File {
			continue
		}
		if len(paths) == 0 {
			if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, err
			}
		}
		p := filepath.Join(dir, v.Name)
		if err := fsutil.WriteFileAtomic(p, []byte(v.Value), 0o600); err != nil {
			return nil, err
		}
		paths[v.Name] = p
	}
	return paths, nil
}

func (o *Options) fileVariablePath(id, name string) string {
	if o.contained() {
		// The sandbox's private copy (stageFiles).
		return sandbox.RunDir + "/var-" + name
	}
	if o.Config.Job.User != "" {
		return filepath.Join(o.runDir(id), "var-"+name)
	}
	return filepath.Join(o.jobDir(id), "files", name)
}

// removeAll removes path even when the job left read-only directories in it
// (Go's module cache does), which os.RemoveAll alone cannot.
func removeAll(path string) error {
	err := os.RemoveAll(path)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}
