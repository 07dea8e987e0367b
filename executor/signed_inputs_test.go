package executor

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
)

// Typed refs, variable kinds and dangerous names: the parts of a job GitLab
// used to choose and an allowlist signature now decides (issue #8).

// TestTagNamedLikeTheBranchRefused is hole 1: a trusted-signed commit that is
// not on branch main, served as tag "main" with ref_type=tag, must not be
// admitted by an entry for the branch main; the same entry still admits its
// branch.
func TestTagNamedLikeTheBranchRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Script = []string{"env > " + filepath.Join(e.root, "env"), "touch " + e.canary}
	e.write()
	e.src.Git(t, "checkout", "-q", "-b", "unmerged")
	child := e.src.Commit(t, map[string]string{"deploy.sh": "backdoor\n"}, "unmerged work", e.signer)
	e.src.Git(t, "tag", "main", child)
	e.src.Git(t, "checkout", "-q", "main")

	j := e.newJob(e.payload(700, child, withScript(e.entry.Script...), withGit("ref", "main"), withGit("ref_type", "tag")))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("tag main admitted by an entry for branch main\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "Failed check: ref", `the job runs for tag "main" (refs/tags/main), but entry app-build admits the branch refs/heads/main`)
	j.assertNothingRan()
	assertRefused(t, e, "700", "ref")

	// The branch itself is still admitted, and its high-water mark was not
	// moved by the refused tag.
	j = e.newJob(e.payload(701, e.head, withScript(e.entry.Script...)))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("branch main refused after the tag attempt\n%s", j.log.String())
	}
}

// TestRefNamesGitCouldMisread: revision syntax and names git resolves to
// another ref are refused before any fetch, with writ's reason.
func TestRefNamesGitCouldMisread(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.write()
	for i, c := range []struct{ ref, refType, want string }{
		{"main^{}", "branch", "revision syntax"},
		{"main~0", "branch", "revision syntax"},
		{"main@{1}", "branch", `"@{"`},
		{"heads/main", "branch", `git would read "heads/main" as another ref`},
		{"refs/heads/main", "branch", `git would read "refs/heads/main" as another ref`},
		{"HEAD", "branch", "a special revision name"},
		{"main", "merge_request", "neither branch nor tag"},
		{"main", "", "neither branch nor tag"},
	} {
		j := e.newJob(e.payload(710+i, e.head, withGit("ref", c.ref), withGit("ref_type", c.refType)))
		if r := j.runAll(); r.prepare != 1 {
			t.Fatalf("%s %q admitted\n%s", c.refType, c.ref, j.log.String())
		}
		mustContain(t, j.log.String(), "Failed check: ref", c.want)
		j.assertNothingRan()
	}
}

// TestCommitRefVariablesFromVerifiedRef: CI_COMMIT_TAG, CI_COMMIT_BRANCH and
// CI_COMMIT_REF_NAME come from the entry's ref writ verified the commit on.
func TestCommitRefVariablesFromVerifiedRef(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := filepath.Join(e.root, "env")
	e.src.Tag(t, "v1.0", e.head, e.signer)
	e.entry.Refs = []string{"refs/tags/v1.0"}
	e.entry.Script = []string{"env > " + out}
	e.write()
	j := e.newJob(e.payload(720, e.head, withScript(e.entry.Script...), withGit("ref", "v1.0"), withGit("ref_type", "tag")))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("tag job refused\n%s", j.log.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, string(data), "CI_COMMIT_TAG=v1.0\n", "CI_COMMIT_REF_NAME=v1.0\n")
	mustNotContain(t, string(data), "CI_COMMIT_BRANCH=")
}

// TestJobEnvTakesRefKindFromSnapshotRef: the job environment reads the kind
// from the verified ref, not from GitLab's ref_type recorded with the job.
func TestJobEnvTakesRefKindFromSnapshotRef(t *testing.T) {
	t.Parallel()
	o := Options{Config: &config.Config{}}
	o.Config.Job.Path, o.Config.Job.Home, o.Config.Job.Lang = "/usr/bin:/bin", "/home/job", "C.UTF-8"
	o.Config.Job.Env = map[string]string{"FROM_HOST": "host"}
	s := &Snapshot{Job: JobRef{ID: "1", Ref: "main", RefType: "tag"}, Ref: "refs/heads/main", BuildDir: "/b/1",
		Variables: []AdmittedVariable{
			{Name: "PATH", Value: "/evil"}, {Name: "HOME", Value: "/evil"}, {Name: "LANG", Value: "evil"},
			{Name: "FROM_HOST", Value: "evil"}, {Name: "WRIT_ENTRY", Value: "evil"}, {Name: "WRIT_OTHER", Value: "evil"},
			{Name: "CI_COMMIT_TAG", Value: "evil"}, {Name: "OK", Value: "fine"},
		}}
	env := strings.Join(o.jobEnv(s, "build_script"), "\n") + "\n"
	mustContain(t, env, "PATH=/usr/bin:/bin\n", "HOME=/home/job\n", "LANG=C.UTF-8\n", "FROM_HOST=host\n",
		"CI_COMMIT_BRANCH=main\n", "CI_COMMIT_REF_NAME=main\n", "OK=fine\n")
	mustNotContain(t, env, "evil", "CI_COMMIT_TAG", "WRIT_OTHER")

	// No verified ref (a refused or pass-through job): no ref variables.
	s.Ref = ""
	env = strings.Join(o.jobEnv(s, "build_script"), "\n")
	mustNotContain(t, env, "CI_COMMIT_BRANCH", "CI_COMMIT_TAG", "CI_COMMIT_REF_NAME")
}

// TestVariableKinds is hole 3: the entry's kind (value or file) is part of
// the definition; a payload with the other kind is refused, and what
// reaches the job is the entry's kind and, when pinned, its bytes.
func TestVariableKinds(t *testing.T) {
	t.Parallel()
	entry := func(vs ...allowlist.Variable) *allowlist.Entry {
		e := testEntry()
		e.Definition.Variables = vs
		return e
	}
	pinned := allowlist.Variable{Name: "NOTIFY", Value: "", HasValue: true}
	pinnedFile := allowlist.Variable{Name: "CONF", Value: "a=1\n", HasValue: true, File: true}
	pattern := allowlist.Variable{Name: "RELEASE", Pattern: `^v[0-9]+$`}
	patternFile := allowlist.Variable{Name: "RELEASE", Pattern: `^v[0-9]+$`, File: true}
	for _, c := range []struct {
		name  string
		e     *allowlist.Entry
		mods  []func(map[string]any)
		admit []AdmittedVariable
	}{
		{"pinned value as value", entry(pinned), []func(map[string]any){withVar("NOTIFY", "")}, []AdmittedVariable{{Name: "NOTIFY"}}},
		{"pinned value as file", entry(pinned), []func(map[string]any){withVar("NOTIFY", "", "file")}, nil},
		{"pinned file as value", entry(pinnedFile), []func(map[string]any){withVar("CONF", "a=1\n")}, nil},
		{"pinned file as file", entry(pinnedFile), []func(map[string]any){withVar("CONF", "a=1\n", "file")}, []AdmittedVariable{{Name: "CONF", Value: "a=1\n", File: true}}},
		{"pinned file left out", entry(pinnedFile), nil, []AdmittedVariable{{Name: "CONF", Value: "a=1\n", File: true}}},
		{"pattern as file", entry(pattern), []func(map[string]any){withVar("RELEASE", "v1", "file")}, nil},
		{"pattern as value", entry(pattern), []func(map[string]any){withVar("RELEASE", "v1")}, []AdmittedVariable{{Name: "RELEASE", Value: "v1"}}},
		{"file pattern as value", entry(patternFile), []func(map[string]any){withVar("RELEASE", "v1")}, nil},
		{"file pattern as file", entry(patternFile), []func(map[string]any){withVar("RELEASE", "v1", "file")}, []AdmittedVariable{{Name: "RELEASE", Value: "v1", File: true}}},
		// GitLab's raw flag decides whether the runner expands the value,
		// so it is part of the definition like the kind.
		{"raw pinned", entry(allowlist.Variable{Name: "X", Value: "$HOME", HasValue: true, Raw: true}), []func(map[string]any){withVar("X", "$HOME", "raw")}, []AdmittedVariable{{Name: "X", Value: "$HOME", raw: true}}},
		{"raw flipped to expanded", entry(allowlist.Variable{Name: "X", Value: "$HOME", HasValue: true, Raw: true}), []func(map[string]any){withVar("X", "$HOME")}, nil},
		{"expanded flipped to raw", entry(allowlist.Variable{Name: "X", Value: "$HOME", HasValue: true}), []func(map[string]any){withVar("X", "$HOME", "raw")}, nil},
		{"expanded pinned", entry(allowlist.Variable{Name: "X", Value: "$HOME", HasValue: true}), []func(map[string]any){withVar("X", "$HOME")}, []AdmittedVariable{{Name: "X", Value: "$HOME"}}},
	} {
		// testEntry's payload sends GREETING, which the entry pins.
		c.e.Definition.Variables = append(c.e.Definition.Variables, allowlist.Variable{Name: "GREETING", Value: "hello", HasValue: true})
		p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), c.e.Definition.Script, c.mods...))
		d := &Decision{}
		got := slices.DeleteFunc(checkDefinition(d, p, c.e, nil), func(v AdmittedVariable) bool { return v.Name == "GREETING" })
		if c.admit == nil {
			if !slices.Contains(d.FailedChecks(), CheckVariables) {
				t.Errorf("%s: admitted %+v", c.name, got)
			} else if !strings.Contains(d.Failures[0].Message, "but the allowlist entry makes it") {
				t.Errorf("%s: reason %q", c.name, d.Failures[0].Message)
			}
			continue
		}
		if len(d.Failures) > 0 || !slices.Equal(got, c.admit) {
			t.Errorf("%s: got %+v, failures %+v; want %+v", c.name, got, d.Failures, c.admit)
		}
	}
}

// TestDangerousNamesAtAdmission is hole 4 at admission, for an allowlist
// built other than by Parse (which refuses the same): dangerous names pass
// only when marked; names writ sets never pass.
func TestDangerousNamesAtAdmission(t *testing.T) {
	t.Parallel()
	hostEnv := map[string]string{"FROM_HOST": "x"}
	for _, c := range []struct {
		v     allowlist.Variable
		admit bool
		want  string
	}{
		{allowlist.Variable{Name: "BASH_ENV", Pattern: "^.*$"}, false, "is dangerous (bash sources"},
		{allowlist.Variable{Name: "LD_PRELOAD", Pattern: "^.*$"}, false, "is dangerous"},
		{allowlist.Variable{Name: "GIT_SSH_COMMAND", Pattern: "^.*$"}, false, "is dangerous"},
		{allowlist.Variable{Name: "NODE_OPTIONS", Pattern: "^.*$"}, false, "is dangerous"},
		{allowlist.Variable{Name: "BASH_ENV", Pattern: "^.*$", Dangerous: true}, true, ""},
		{allowlist.Variable{Name: "PATH", Pattern: "^.*$", Dangerous: true}, false, "cannot reach the job: writ sets it"},
		{allowlist.Variable{Name: "HOME", Pattern: "^.*$"}, false, "cannot reach the job"},
		{allowlist.Variable{Name: "WRIT_ENTRY", Pattern: "^.*$"}, false, "writ sets WRIT_ variables"},
		{allowlist.Variable{Name: "CI_COMMIT_TAG", Pattern: "^.*$"}, false, "writ sets it from verified data"},
		{allowlist.Variable{Name: "CI_DEPLOY_PASSWORD", Pattern: "^.*$"}, false, "GitLab predefined variable"},
		{allowlist.Variable{Name: "CI_ASG_TARGET", Pattern: "^.*$"}, true, ""},
		{allowlist.Variable{Name: "GITLAB_DEPLOY_ROLE", Pattern: "^.*$"}, true, ""},
		{allowlist.Variable{Name: "FROM_HOST", Pattern: "^.*$"}, false, "set by this runner host's job.env"},
		{allowlist.Variable{Name: "DEPLOY_TARGET", Pattern: "^.*$"}, true, ""},
	} {
		e := testEntry()
		e.Definition.Variables = []allowlist.Variable{c.v, {Name: "GREETING", Value: "hello", HasValue: true}}
		p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), e.Definition.Script, withVar(c.v.Name, "/tmp/x")))
		d := &Decision{}
		got := slices.DeleteFunc(checkDefinition(d, p, e, hostEnv), func(v AdmittedVariable) bool { return v.Name == "GREETING" })
		if c.admit {
			if len(d.Failures) > 0 || len(got) != 1 {
				t.Errorf("%s: refused %+v", c.v.Name, d.Failures)
			}
			continue
		}
		if len(got) != 0 || len(d.Failures) != 1 || !strings.Contains(d.Failures[0].Message, c.want) {
			t.Errorf("%s: admitted %+v, failures %+v; want %q", c.v.Name, got, d.Failures, c.want)
		}
	}
	// A pinned dangerous variable GitLab leaves out is not added either.
	e := testEntry()
	e.Definition.Variables = []allowlist.Variable{{Name: "BASH_ENV", Value: "/x", HasValue: true}, {Name: "GREETING", Value: "hello", HasValue: true}}
	d := &Decision{}
	if got := checkDefinition(d, decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), e.Definition.Script)), e, nil); len(got) != 1 || len(d.Failures) != 1 {
		t.Errorf("left-out pinned BASH_ENV: %+v %+v", got, d.Failures)
	}
}

// TestEntryFromPayloadLeavesVisibleTODOs: `writ allowlist entry` never
// writes a pattern admitting anything; what it cannot show becomes a TODO
// that lint refuses, and a dangerous name is never marked for the
// maintainer.
func TestEntryFromPayloadLeavesVisibleTODOs(t *testing.T) {
	t.Parallel()
	p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), []string{"make"},
		withVar("SECRET", "s3cr3t", "masked"), withVar("KUBECONFIG", "apiVersion: v1\n", "file"), withVar("BASH_ENV", "/tmp/x"),
		withGit("ref", "v1.0"), withGit("ref_type", "tag")))
	e := EntryFromPayload(p, "prod")
	if e.Match.Refs[0] != "refs/tags/v1.0" {
		t.Errorf("ref %q", e.Match.Refs[0])
	}
	text, err := allowlist.MarshalEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	out := string(text)
	mustContain(t, out, "SECRET: {pattern: TODO}", "KUBECONFIG: {pattern: TODO, file: true}", "BASH_ENV: {value: /tmp/x}",
		"# TODO: SECRET is a masked or protected variable", "# TODO: KUBECONFIG is a file variable", "# TODO: BASH_ENV is a dangerous name")
	mustNotContain(t, out, "^.*$", ", dangerous: true}", "s3cr3t", "apiVersion")
	file := "schema: writ/v2\nrepository: a/b\nversion: 1\nexpires: 2099-01-01T00:00:00Z\nsigners: {s: {ssh: [" +
		"bob@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjIOV/BS6JM97dS43zzOp7fyifDILED8hT/pHDdvUO9]}}\njobs:\n" +
		strings.Replace(out, "signers: []", "signers: [s]", 1)
	_, err = allowlist.Parse("allowlist.yaml", []byte(file), nil)
	if err == nil {
		t.Fatalf("lint accepted a generated entry with TODOs:\n%s", file)
	}
	mustContain(t, err.Error(), "variable SECRET still has the TODO", "variable KUBECONFIG still has the TODO", "variable BASH_ENV is dangerous")
}

// assertRefused checks the job's audit record is a refusal naming check.
func assertRefused(t *testing.T, e *env, id, check string) {
	t.Helper()
	for _, rec := range e.auditRecords() {
		if rec.Job == id && rec.Event == EventRefuse {
			if !strings.HasPrefix(rec.Reason, check+": ") {
				t.Errorf("refuse record reason %q, want check %s", rec.Reason, check)
			}
			return
		}
	}
	t.Errorf("no refuse record for job %s", id)
}

// TestTypedRefspec: writ fetches exactly the verified ref into its own
// namespace, and nothing when there is no verified ref.
func TestTypedRefspec(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ full, refspec, local, kind string }{
		{"refs/heads/main", "+refs/heads/main:refs/writ/heads/main", "refs/writ/heads/main", allowlist.RefBranch},
		{"refs/tags/v1.0", "+refs/tags/v1.0:refs/writ/tags/v1.0", "refs/writ/tags/v1.0", allowlist.RefTag},
		{"refs/heads/release/2.x", "+refs/heads/release/2.x:refs/writ/heads/release/2.x", "refs/writ/heads/release/2.x", allowlist.RefBranch},
	} {
		refspec, local, kind, err := typedRefspec(c.full)
		if err != nil || refspec != c.refspec || local != c.local || kind != c.kind {
			t.Errorf("typedRefspec(%q) = %q, %q, %q, %v", c.full, refspec, local, kind, err)
		}
	}
	for _, full := range []string{"", "main", "refs/heads/main^{}", "refs/heads/heads/main", "refs/pipelines/1", "refs/remotes/origin/main"} {
		if refspec, _, _, err := typedRefspec(full); err == nil {
			t.Errorf("typedRefspec(%q) = %q, want an error", full, refspec)
		}
	}
}

// TestTagModeNeverFetchesABranch: an entry in tag mode that lists a branch
// (Parse refuses it; an allowlist built otherwise) still admits no branch.
func TestTagModeNeverFetchesABranch(t *testing.T) {
	t.Parallel()
	e := testEntry()
	e.Source.Mode = allowlist.ModeTag
	p := decodeT(t, makePayload(t, 1, strings.Repeat("a", 40), e.Definition.Script))
	for _, ref := range []string{"refs/heads/main", ""} {
		_, err := newSourceRequest(&Decision{Ref: ref}, p, e, &allowlist.Allowlist{})
		var f *Failure
		if !errors.As(err, &f) || f.Check != CheckRef {
			t.Fatalf("tag-mode entry, verified ref %q: %v", ref, err)
		}
	}
}
