package executor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// The variables a job sees beyond its admitted ones, and the expansion of
// $NAME references as GitLab Runner does it, both computed from signed or
// verified data only. allowlist.ProvidedSource documents each variable's
// source; a test keeps provided and that list equal.

// Values of CI_JOB_STATUS, as GitLab Runner sets them (its
// BuildRuntimeState): running while the script runs; how it ended in
// after_script.
const (
	statusRunning  = "running"
	statusSuccess  = "success"
	statusFailed   = "failed"
	statusCanceled = "canceled"
	statusTimedout = "timedout"
)

// provided returns the variables writ sets in a job, from the snapshot
// (verified commit and ref, the signed entry), writ's configuration, and
// status, the job's CI_JOB_STATUS.
func (o *Options) provided(s *Snapshot, status string) map[string]string {
	project, job := s.Job.Project, s.Job.Name
	if s.Entry != nil {
		// Equal to GitLab's when admitted; the entry's are the signed ones.
		project, job = s.Entry.Match.Project, s.Entry.Match.Job
	}
	dir := o.projectDir(s)
	m := map[string]string{
		"CI":                   "true",
		"GITLAB_CI":            "true",
		"CI_SERVER":            "yes",
		"CI_JOB_ID":            s.Job.ID,
		"CI_JOB_NAME":          job,
		"CI_JOB_NAME_SLUG":     slugify(job),
		"CI_JOB_STATUS":        status,
		"CI_JOB_TIMEOUT":       strconv.FormatInt(int64(s.Timeout.Seconds()), 10),
		"CI_PROJECT_PATH":      project,
		"CI_PROJECT_PATH_SLUG": slugify(project),
		"CI_PROJECT_DIR":       dir,
		"CI_BUILDS_DIR":        path.Dir(dir),
		"CI_COMMIT_SHA":        s.Commit,
		"CI_ENVIRONMENT_NAME":  s.Environment,
		"CI_ENVIRONMENT_SLUG":  environmentSlug(s.Environment),
	}
	if len(s.Commit) >= 8 {
		m["CI_COMMIT_SHORT_SHA"] = s.Commit[:8]
	}
	// The verified full ref, never GitLab's ref_type, says whether the job
	// runs for a branch or a tag.
	if kind, name, ok := allowlist.SplitRef(s.Ref); ok {
		m["CI_COMMIT_REF_NAME"] = name
		m["CI_COMMIT_REF_SLUG"] = slugify(name)
		if kind == allowlist.RefBranch {
			m["CI_COMMIT_BRANCH"] = name
		} else {
			m["CI_COMMIT_TAG"] = name
		}
	}
	if i := strings.LastIndexByte(project, '/'); i > 0 {
		m["CI_PROJECT_NAMESPACE"] = project[:i]
		m["CI_PROJECT_NAME"] = project[i+1:]
		m["CI_PROJECT_ROOT_NAMESPACE"], _, _ = strings.Cut(project, "/")
	}
	if img := o.jobImage(s); img != "" {
		m["CI_JOB_IMAGE"] = img
	}
	if u, err := url.Parse(o.Config.Job.ServerURL); err == nil && o.Config.Job.ServerURL != "" {
		// The configured address, the signed project path and the job id
		// (digits only): GitLab's CI_JOB_URL could point anywhere.
		base := o.Config.Job.ServerURL
		port := u.Port()
		if port == "" {
			port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
		}
		m["CI_SERVER_URL"] = base
		m["CI_SERVER_HOST"] = u.Hostname()
		m["CI_SERVER_PORT"] = port
		m["CI_SERVER_PROTOCOL"] = u.Scheme
		m["CI_API_V4_URL"] = base + "/api/v4"
		m["CI_PROJECT_URL"] = base + "/" + project
		m["CI_JOB_URL"] = base + "/" + project + "/-/jobs/" + s.Job.ID
	}
	return m
}

// slugify is GitLab's slug of a ref, project path or job name
// (Gitlab::Utils.slugify): lower case, every character but a-z and 0-9
// turned into "-", cut to 63 characters, no "-" at either end.
func slugify(s string) string {
	var b []rune
	for _, r := range strings.ToLower(s) {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			r = '-'
		}
		b = append(b, r)
		if len(b) == 63 {
			break
		}
	}
	return strings.Trim(string(b), "-")
}

// environmentSlug is GitLab's slug of an environment name
// (Gitlab::Slug::Environment): lower-case letters, digits and "-", starting
// with a letter, no "--", at most 24 bytes; when that changed the name, 17
// bytes and a 6-character suffix from the name's SHA-256.
func environmentSlug(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			r = '-'
		}
		b.WriteRune(r)
	}
	slug := b.String()
	if slug == "" || slug[0] < 'a' || slug[0] > 'z' {
		slug = "env-" + slug
	}
	for strings.Contains(slug, "--") {
		slug = strings.ReplaceAll(slug, "--", "-")
	}
	if len(slug) <= 24 && slug == name {
		return strings.TrimSuffix(slug, "-")
	}
	if len(slug) > 17 {
		slug = slug[:17]
	}
	if !strings.HasSuffix(slug, "-") {
		slug += "-"
	}
	sum := sha256.Sum256([]byte(name))
	n, _ := new(big.Int).SetString(hex.EncodeToString(sum[:]), 16)
	b36 := n.Text(36)
	return slug + b36[max(0, len(b36)-6):]
}

// expandVariables gives each admitted variable the value GitLab Runner's
// expansion gives it, computed only from admitted values and the ones writ
// provides (s describes the job as it will run). A reference to a variable
// GitLab sent but the entry does not admit refuses the job: the runner
// would put GitLab's value there, and an empty one would silently change
// what the script does. A reference to a name nobody set is empty, as in
// the runner. Patterns must also match the expanded value.
func (o *Options) expandVariables(d *Decision, p *Payload, e *allowlist.Entry, vars []AdmittedVariable, s *Snapshot) []AdmittedVariable {
	entryVar := map[string]*allowlist.Variable{}
	for _, v := range e.Definition.AllVariables() {
		entryVar[v.Name] = &v
	}
	admitted := make(map[string]AdmittedVariable, len(vars))
	for _, v := range vars {
		admitted[v.Name] = v
	}
	sent := make(map[string]bool, len(p.Variables))
	for _, v := range p.Variables {
		sent[v.Key] = true
	}
	prov := o.provided(s, statusRunning)
	out := make([]AdmittedVariable, 0, len(vars))
	budget := maxExpansionBytes
	for _, v := range vars {
		if v.raw {
			out = append(out, v)
			continue
		}
		reported := map[string]bool{}
		refuse := func(name, why string) {
			if !reported[name] {
				reported[name] = true
				d.fail(Failure{Check: CheckVariables,
					Message:  fmt.Sprintf("variable %s refers to $%s, %s", allowlist.Visible(clip(v.Name)), allowlist.Visible(clip(name)), why),
					Expected: "(a reference to an admitted variable)", Received: "$" + allowlist.Visible(clip(name)),
					Hint: "get the entry to admit " + allowlist.Visible(clip(name)) + ", or change the value to refer only to admitted variables (write $$ for a literal $)"})
			}
		}
		// Against the unexpanded values, one level deep, as the runner.
		value, ok := allowlist.ExpandMax(v.Value, func(name string) string {
			if allowlist.ProvidedSource(name) != "" {
				val, set := prov[name]
				if !set && sent[name] {
					// The runner would use GitLab's; writ has none to give.
					refuse(name, "which GitLab sends but writ sets only from its own data, and this job has none (for the URLs: job.server_url in writ's config)")
				}
				return val
			}
			if a, ok := admitted[name]; ok {
				if a.File {
					return o.fileVariablePath(s.Job.ID, name)
				}
				return a.Value
			}
			if sent[name] {
				refuse(name, "which GitLab sends but the allowlist entry does not admit: GitLab Runner would put GitLab's value there")
			}
			return ""
		}, budget)
		budget -= len(value) - len(v.Value)
		if !ok {
			d.fail(Failure{Check: CheckVariables,
				Message: fmt.Sprintf("the job's variables expand to more than %d bytes (at variable %s)", maxExpansionBytes, allowlist.Visible(clip(v.Name))),
				Hint:    "make the variables refer to fewer or shorter values"})
			return nil
		}
		v.Value = value
		if a := entryVar[v.Name]; a != nil && !a.HasValue && !a.Allows(v.Value) {
			d.fail(Failure{Check: CheckVariables,
				Message:  fmt.Sprintf("variable %s, once its $ references are expanded, does not match the allowlist entry's pattern in full", allowlist.Visible(clip(v.Name))),
				Expected: allowlist.Visible(a.Pattern),
				Hint:     "give the variable a value whose expansion the pattern matches, or get the entry changed"})
		}
		out = append(out, v)
	}
	return out
}

// maxExpansionBytes bounds what expansion adds to a job's variables in
// all: references are short and values long, so without a bound a payload
// within job.max_payload_bytes could expand to terabytes.
const maxExpansionBytes = 16 << 20

// admissionSnapshot describes an admitted job as it will run, for the
// values writ provides at admission (the snapshot proper is written once
// the decision is complete).
func (o *Options) admissionSnapshot(d *Decision, p *Payload) *Snapshot {
	job := d.Job
	job.ID = p.ID // the id the job's files are named by
	return &Snapshot{
		Environment: d.Environment, Job: job, Ref: d.Ref, Allowlist: d.Allowlist, Entry: d.Entry,
		Commit: p.SHA, BuildDir: o.buildDir(p.ID), Timeout: o.jobTimeout(d.Entry), Image: d.Image,
	}
}

// jobTimeout is the script's timeout: the entry's, or the environment's
// default.
func (o *Options) jobTimeout(e *allowlist.Entry) time.Duration {
	if e != nil && e.Definition.Timeout > 0 {
		return e.Definition.Timeout
	}
	return o.Config.Job.DefaultTimeout.Duration
}

// jobStatusFile records how the job's script ended, for after_script's
// CI_JOB_STATUS. It lives in writ's state, which a job cannot write.
func (o *Options) jobStatusFile(id string) string {
	return filepath.Join(o.jobDir(id), "job_status")
}

// recordJobStatus keeps how the script ended. A failure to record only
// makes after_script see "failed", so it is reported, not fatal.
func (o *Options) recordJobStatus(id, status string) {
	if err := fsutil.WriteFileAtomic(o.jobStatusFile(id), []byte(status), 0o600); err != nil {
		fmt.Fprintf(o.Stdout, "writ: cannot record the script's status for after_script: %v\n", err)
	}
}

// jobStatus is CI_JOB_STATUS for stage: running during the script; in
// after_script how the script ended, or failed when it left no record
// (it never ran, or writ was killed), as the runner says of a job whose
// script did not succeed.
func (o *Options) jobStatus(id, stage string) string {
	if stage != "after_script" {
		return statusRunning
	}
	b, err := os.ReadFile(o.jobStatusFile(id))
	switch st := string(b); {
	case err == nil && (st == statusSuccess || st == statusFailed || st == statusCanceled || st == statusTimedout):
		return st
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(o.Stdout, "writ: cannot read the script's status (%v); CI_JOB_STATUS is %s\n", err, statusFailed)
	}
	return statusFailed
}
