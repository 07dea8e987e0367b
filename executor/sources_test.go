package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
	"gitlab.com/writ-ci/writ/internal/state"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// settingsEnv is an environment whose application repository has the
// settings repository as a submodule at "settings" (gitlink at the
// settings head, signed by devs), and an entry that names it.
type settingsEnv struct {
	*env
	settings *testkeys.Repo
	// settingsHead is settings' main, signed by devs; appHead the app's
	// commit whose gitlink records it.
	settingsHead, appHead string
}

func newSettingsEnv(t *testing.T) *settingsEnv {
	t.Helper()
	return withSettings(t, newEnv(t))
}

func withSettings(t *testing.T, base *env) *settingsEnv {
	t.Helper()
	e := &settingsEnv{env: base}
	e.settings = testkeys.GitRepo(t)
	e.settings.Commit(t, map[string]string{"prod.tfvars": "region = \"old\"\n"}, "first settings", e.signer)
	e.settingsHead = e.settings.Commit(t, map[string]string{"prod.tfvars": "region = \"us-west-2\"\n"}, "settings", e.signer)
	e.appHead = e.withGitlink(t, "settings", e.settingsHead)
	e.entry.Script = []string{
		"git -C settings checkout -q main",
		"cat settings/prod.tfvars",
		`test "$(git -C settings rev-parse HEAD)" = ` + e.settingsHead,
		`test "$(git rev-parse HEAD)" = "$CI_COMMIT_SHA"`,
		"test -z \"$(git status --porcelain)\"",
		"touch " + e.canary,
	}
	e.entry.SourceExtra = []string{
		"git: read-only",
		"extra:",
		"  - path: settings",
		"    ref: refs/heads/main",
		"    submodule: true",
		"    repository: " + q("file://"+e.settings.Path),
		"    signers: [devs]",
		"    mode: commit",
	}
	return e
}

// withGitlink commits, signed by devs, the app with a gitlink at path.
func (e *settingsEnv) withGitlink(t *testing.T, path, commit string) string {
	t.Helper()
	e.src.Gitlink(t, path, commit)
	return e.src.Commit(t, map[string]string{".gitmodules": "[submodule \"" + path + "\"]\n\tpath = " + path + "\n\turl = ../" + path + ".git\n"}, "submodule "+path, e.signer)
}

func (e *settingsEnv) job(id int, sha string) *job {
	return e.newJob(makePayload(e.t, id, sha, e.entry.Script))
}

func TestExtraSourceSubmodule(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	e.write()
	j := e.job(900, e.appHead)
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("job failed: %+v\n%s", r, j.log.String())
	}
	if _, err := os.Stat(e.canary); err != nil {
		t.Fatalf("the script did not run to its end\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), `region = "us-west-2"`,
		"writ: source.extra settings: file://"+e.settings.Path+" at "+e.settingsHead+" on refs/heads/main, verified (signed by ssh ",
		"writ: checked out verified commit "+e.settingsHead+" of file://"+e.settings.Path+" (refs/heads/main) into settings")
	var admit map[string]any
	for _, r := range e.auditRecords() {
		if r.Job == "900" && r.Event == EventAdmit {
			admit = r.Fields
		}
	}
	b, _ := json.Marshal(admit["sources"])
	if !strings.Contains(string(b), `"path":"settings"`) || !strings.Contains(string(b), `"commit":"`+e.settingsHead+`"`) || !strings.Contains(string(b), `"submodule":true`) {
		t.Fatalf("admit record's sources: %s", b)
	}
}

// In the sandbox, the job's uid owns both checkouts and their .git, and
// git works there as in any clone.
func TestContainedExtraSource(t *testing.T) {
	base, _ := containedEnv(t)
	t.Parallel()
	e := withSettings(t, base)
	e.entry.Script = append(e.entry.Script[:len(e.entry.Script)-1], "git -C settings log --oneline | wc -l | grep -qx 2", "echo contained-$((1))-ok")
	e.write()
	j := e.job(905, e.appHead)
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("job failed: %+v\n%s", r, j.log.String())
	}
	mustContain(t, j.log.String(), `region = "us-west-2"`, "contained-1-ok")
}

// A gitlink the entry names no source for stays an empty directory, and
// the job log says why.
func TestUnnamedSubmoduleLeftEmpty(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	other := testkeys.GitRepo(t)
	oc := other.Commit(t, map[string]string{"secret": "from elsewhere\n"}, "other", e.signer)
	head := e.withGitlink(t, "vendor/other", oc)
	e.entry.Script = []string{`test -d vendor/other && test -z "$(ls -A vendor/other)"`, "touch " + e.canary}
	e.write()
	j := e.job(901, head)
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("job failed: %+v\n%s", r, j.log.String())
	}
	mustContain(t, j.log.String(), "writ: submodule vendor/other is left empty: the allowlist entry names no source for it")
}

// A branch tip, not a submodule, checked out without a .git.
func TestExtraSourceBranchTip(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	e.entry.SourceExtra = []string{
		"extra:",
		"  - path: tools/settings",
		"    ref: refs/heads/main",
		"    repository: " + q("file://"+e.settings.Path),
		"    signers: [devs]",
		"    mode: commit",
	}
	e.entry.Script = []string{"grep -q us-west-2 tools/settings/prod.tfvars", "test ! -e tools/settings/.git", "test ! -e .git", "touch " + e.canary}
	e.write()
	j := e.job(902, e.head)
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("job failed: %+v\n%s", r, j.log.String())
	}
	if _, err := os.Stat(e.canary); err != nil {
		t.Fatalf("the script did not run to its end\n%s", j.log.String())
	}
}

func TestExtraSourceRefusals(t *testing.T) {
	t.Parallel()
	for i, c := range []struct {
		name string
		// setup returns the job's commit.
		setup func(t *testing.T, e *settingsEnv) string
		want  []string
	}{
		{"gitlink to an unsigned commit", func(t *testing.T, e *settingsEnv) string {
			bad := e.settings.Commit(t, map[string]string{"prod.tfvars": "region = \"attacker\"\n"}, "unsigned", nil)
			return e.withGitlink(t, "settings", bad)
		}, []string{"Failed check: signature", "source.extra settings (file://", "commit from the gitlink at settings in the job's commit", "is not signed by the entry's signers (devs)"}},
		{"gitlink signed by a key the entry does not name", func(t *testing.T, e *settingsEnv) string {
			bad := e.settings.Commit(t, map[string]string{"prod.tfvars": "region = \"attacker\"\n"}, "foreign", e.outsider)
			return e.withGitlink(t, "settings", bad)
		}, []string{"Failed check: signature", "source.extra settings"}},
		{"gitlink to a commit of another repository", func(t *testing.T, e *settingsEnv) string {
			other := testkeys.GitRepo(t)
			oc := other.Commit(t, map[string]string{"prod.tfvars": "region = \"attacker\"\n"}, "elsewhere", e.signer)
			return e.withGitlink(t, "settings", oc)
		}, []string{"Failed check: source", "source.extra settings", `is not on branch "main" of the entry's repository file://`}},
		{"no submodule where the entry takes one", func(*testing.T, *settingsEnv) string { return "" },
			[]string{"Failed check: source", "has no submodule at settings (nothing is there)", "git submodule add"}},
		{"gitlink other than the entry's pin", func(t *testing.T, e *settingsEnv) string {
			e.entry.SourceExtra = append(e.entry.SourceExtra, "    pin: "+strings.Repeat("ab", 20))
			return e.appHead
		}, []string{"Failed check: pin", "source.extra settings"}},
		{"branch tip unsigned", func(t *testing.T, e *settingsEnv) string {
			tip := e.settings.Commit(t, map[string]string{"prod.tfvars": "region = \"attacker\"\n"}, "unsigned tip", nil)
			e.settings.Git(t, "update-ref", "refs/heads/main", tip)
			e.entry.SourceExtra = []string{"extra:", "  - path: tools", "    ref: refs/heads/main",
				"    repository: " + q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit"}
			return e.head
		}, []string{"Failed check: signature", "source.extra tools", "commit from the tip of refs/heads/main", "unsigned tip"}},
		{"path below a file of the tree", func(t *testing.T, e *settingsEnv) string {
			e.entry.SourceExtra = []string{"extra:", "  - path: main.sh/tools", "    ref: refs/heads/main",
				"    repository: " + q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit"}
			return e.head
		}, []string{"Failed check: source", "source.extra main.sh/tools: cannot be checked out there", "is not a directory", "choose a path"}},
		{"path taken by a file of the tree", func(t *testing.T, e *settingsEnv) string {
			e.entry.SourceExtra = []string{"extra:", "  - path: main.sh", "    ref: refs/heads/main",
				"    repository: " + q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit"}
			return e.head
		}, []string{"Failed check: source", "already has a file at that path"}},
		{"gitlink the item does not take", func(t *testing.T, e *settingsEnv) string {
			e.entry.SourceExtra = []string{"extra:", "  - path: settings", "    ref: refs/heads/main",
				"    repository: " + q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit"}
			return e.appHead
		}, []string{"Failed check: source", "has a submodule at settings, and the entry does not take its commit from it", "submodule: true"}},
		{"extra ref missing", func(t *testing.T, e *settingsEnv) string {
			e.entry.SourceExtra = []string{"extra:", "  - path: tools", "    ref: refs/heads/release",
				"    repository: " + q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit"}
			return e.head
		}, []string{"Failed check: source", "source.extra tools", `has no branch "release"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newSettingsEnv(t)
			sha := c.setup(t, e)
			if sha == "" {
				sha = e.head
			}
			e.write()
			j := e.job(910+i, sha)
			if r := j.runAll(); r.prepare != 1 {
				t.Fatalf("prepare: %d, want a refusal\n%s", r.prepare, j.log.String())
			}
			mustContain(t, j.log.String(), c.want...)
			j.assertNothingRan()
			if ev := eventsFor(e.auditRecords(), j.id); len(ev) == 0 || ev[0] != EventRefuse {
				t.Fatalf("audit events %v", ev)
			}
		})
	}
}

// The .git writ builds is the job's: what it does there stays in its
// build directory, and a later job gets a fresh one from the mirror.
func TestExtraSourceGitIsFresh(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	e.entry.Script = []string{"git -C settings config core.hooksPath /nonexistent", "git -C settings remote add origin https://attacker.invalid/x.git", "touch " + e.canary}
	e.write()
	for _, id := range []int{920, 921} {
		j := e.job(id, e.appHead)
		if r := j.runAll(); r.prepare != 0 || r.build != 0 {
			t.Fatalf("job %d failed: %+v\n%s", id, r, j.log.String())
		}
	}
	entries, _ := os.ReadDir(e.builds)
	for _, en := range entries {
		if _, err := os.Stat(filepath.Join(e.builds, en.Name(), "settings", ".git")); err == nil {
			t.Fatalf("build directory %s left after cleanup", en.Name())
		}
	}
}

// An extra source that takes a branch tip has its own high-water mark: a
// server serving an older signed tip is refused, unless the item allows
// rollback.
func TestExtraSourceTipRollback(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	tipItem := func(extra ...string) []string {
		return append([]string{"extra:", "  - path: tools", "    ref: refs/heads/main",
			"    repository: " + q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit"}, extra...)
	}
	e.entry.SourceExtra = tipItem()
	e.entry.Script = []string{"cat tools/prod.tfvars", "touch " + e.canary}
	e.write()
	if r := e.job(930, e.head).runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("first job: %+v", r)
	}
	st, err := state.NewLocal(e.state).Entry(context.Background(), ExtraSourceMark("app-build", "tools"))
	if err != nil || st.Last == nil || st.Last.Commit != e.settingsHead || st.Last.Repository != "file://"+e.settings.Path || st.Last.Job != "930" {
		t.Fatalf("mark of the extra source: %+v %v", st.Last, err)
	}
	older := strings.TrimSpace(e.settings.Git(t, "rev-parse", e.settingsHead+"^"))
	e.settings.Git(t, "update-ref", "refs/heads/main", older)
	// The first job's canary goes before the refused job runs, so that a
	// canary after it is the refused job's.
	if err := os.Remove(e.canary); err != nil {
		t.Fatal(err)
	}
	j := e.job(931, e.head)
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("rollback of the extra source admitted: %+v\n%s", r, j.log.String())
	}
	mustContain(t, j.log.String(), "Failed check: rollback", "source.extra tools", "is not "+e.settingsHead+" or a descendant of it")
	j.assertNothingRan()
	if ev := eventsFor(e.auditRecords(), j.id); len(ev) == 0 || ev[0] != EventRefuse {
		t.Fatalf("audit events of the refused job: %v", ev)
	}

	e.entry.SourceExtra = tipItem("    allow_rollback: true")
	e.write()
	if r := e.job(932, e.head).runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("allow_rollback: %+v", r)
	}
}

// A submodule moved back to an older commit by a newer signed deploy
// commit is a signed decision, not a rollback.
func TestExtraSourceSubmoduleRevert(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	e.write()
	if r := e.job(940, e.appHead).runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("first job: %+v", r)
	}
	older := strings.TrimSpace(e.settings.Git(t, "rev-parse", e.settingsHead+"^"))
	reverted := e.withGitlink(t, "settings", older)
	e.entry.Script = []string{"grep -q old settings/prod.tfvars", "touch " + e.canary}
	e.write()
	j := e.job(941, reverted)
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("revert refused: %+v\n%s", r, j.log.String())
	}
}

// writ check verifies extra sources as prepare does, prints them, works
// offline from warm mirrors, and records no mark.
func TestCheckExtraSources(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	e.entry.SourceExtra = append(e.entry.SourceExtra, "  - path: tools", "    ref: refs/heads/main",
		"    repository: "+q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit")
	e.write()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	opts := Options{Config: cfg, Allowlist: &dirSource{dir: e.alDir}, Stdout: &out}
	payload := makePayload(t, 1, e.appHead, e.entry.Script)
	for _, offline := range []bool{false, true} {
		out.Reset()
		opts.Offline = offline
		d, err := Check(context.Background(), opts, payload)
		if err != nil || !d.Admitted || len(d.Sources) != 2 {
			t.Fatalf("offline %v: %v %+v\n%s", offline, err, d, out.String())
		}
		mustContain(t, out.String(), "Extra:      settings: file://"+e.settings.Path+" at "+e.settingsHead+" on refs/heads/main, signed by ssh ",
			"Extra:      tools: file://"+e.settings.Path+" at "+e.settingsHead)
	}
	for _, path := range []string{"settings", "tools"} {
		if st, err := state.NewLocal(e.state).Entry(context.Background(), ExtraSourceMark("app-build", path)); err != nil || st.Last != nil {
			t.Fatalf("check recorded a mark for %s: %+v %v", path, st, err)
		}
	}
}

// An extra source with signature: none is admitted on approvals of its
// commit, published in its own repository and naming it, as for the main
// source; short of them it is refused.
func TestExtraSourceApprovalsOnly(t *testing.T) {
	t.Parallel()
	for _, approvers := range []int{2, 1} {
		t.Run(fmt.Sprint(approvers), func(t *testing.T) {
			t.Parallel()
			e := newSettingsEnv(t)
			merge := e.settings.Commit(t, map[string]string{"prod.tfvars": "region = \"merged\"\n"}, "Merge branch 'x' into 'main'", nil)
			src := "file://" + e.settings.Path
			var lines []string
			for i := range 2 {
				k := testkeys.SSHKey(t, fmt.Sprintf("approver%d@example.com", i))
				lines = append(lines, "      - "+q(k.AllowedSignersLine("")))
				if i < approvers {
					publishTestApproval(t, e.settings, k, src, merge, fmt.Sprintf("approver%d", i), "prod")
				}
			}
			e.extraSigners = "  approvers:\n    ssh:\n" + strings.Join(lines, "\n") + "\n"
			e.entry.SourceExtra = []string{"extra:", "  - path: settings", "    ref: refs/heads/main", "    submodule: true",
				"    repository: " + q(src), "    mode: commit", "    signature: none", "    approvals: {signers: [approvers], threshold: 2}"}
			e.entry.Script = []string{"grep -q merged settings/prod.tfvars", "touch " + e.canary}
			head := e.withGitlink(t, "settings", merge)
			e.write()
			j := e.job(950, head)
			r := j.runAll()
			if approvers == 2 {
				if r.prepare != 0 || r.build != 0 {
					t.Fatalf("two approvals: %+v\n%s", r, j.log.String())
				}
				return
			}
			if r.prepare != 1 {
				t.Fatalf("one approval of two admitted: %+v\n%s", r, j.log.String())
			}
			mustContain(t, j.log.String(), "Failed check: approvals", "source.extra settings", "has 1 of the 2 approvals")
			j.assertNothingRan()
			if ev := eventsFor(e.auditRecords(), j.id); len(ev) == 0 || ev[0] != EventRefuse {
				t.Fatalf("audit events of the refused job: %v", ev)
			}
		})
	}
}

// casStore is a Local store whose PutEntry is a compare-and-swap, as the
// fleet store's: a mark that moved since it was read is a conflict.
type casStore struct{ *state.Local }

func (s casStore) PutEntry(ctx context.Context, e *state.Entry, next state.EntryMark) error {
	cur, err := s.Local.Entry(ctx, e.Name)
	if err != nil {
		return err
	}
	if (cur.Last == nil) != (e.Last == nil) || (cur.Last != nil && cur.Last.Commit != e.Last.Commit) {
		return fmt.Errorf("%w: injected", state.ErrConflict)
	}
	return s.Local.PutEntry(ctx, e, next)
}

// An extra source's mark that another host moved after this decision read
// it is not written over: the admission cannot be recorded, and the other
// host's mark stays (it may be newer than the commit verified here).
func TestExtraSourceMarkMovedMeanwhile(t *testing.T) {
	t.Parallel()
	e := newSettingsEnv(t)
	e.entry.SourceExtra = []string{"extra:", "  - path: tools", "    ref: refs/heads/main",
		"    repository: " + q("file://"+e.settings.Path), "    signers: [devs]", "    mode: commit"}
	e.write()
	cfg, err := config.Load(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	local := state.NewLocal(e.state)
	opts := Options{Config: cfg, Allowlist: &dirSource{dir: e.alDir}, Stdout: io.Discard, State: casStore{local}}
	d, err := Check(context.Background(), opts, makePayload(t, 1, e.head, e.entry.Script))
	if err != nil || !d.Admitted || len(d.Sources) != 1 {
		t.Fatalf("check: %v %+v", err, d)
	}
	name := ExtraSourceMark("app-build", "tools")
	newer := strings.Repeat("cd", 20)
	cur, err := local.Entry(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if err := local.PutEntry(context.Background(), cur, state.EntryMark{Entry: name, Repository: "file://" + e.settings.Path, Mode: "commit", Commit: newer, Job: "9999"}); err != nil {
		t.Fatal(err)
	}
	o := opts.withDefaults()
	err = o.recordExtraSources(context.Background(), d, &Payload{ID: "1"}, &allowlist.Entry{Name: "app-build"})
	if !errors.Is(err, state.ErrConflict) {
		t.Fatalf("record over a mark moved meanwhile: %v, want a conflict", err)
	}
	if st, err := local.Entry(context.Background(), name); err != nil || st.Last == nil || st.Last.Commit != newer {
		t.Fatalf("the other host's mark was written over: %+v %v", st.Last, err)
	}
}
