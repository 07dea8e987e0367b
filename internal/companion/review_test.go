package companion

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/companion/gitlabtest"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

var reviewNow = time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC)

// envConfig writes a writ config for environment name trusting keys with
// threshold, and returns its path.
func envConfig(t *testing.T, dir, name, identity string, threshold int, keys ...*testkeys.SSH) string {
	t.Helper()
	var lines []string
	for _, k := range keys {
		lines = append(lines, k.AllowedSignersLine(""))
	}
	signers := filepath.Join(dir, name+".allowed_signers")
	if err := os.WriteFile(signers, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`environment = %q
[allowlist]
url = "https://gitlab.example.com/acme/deploy-allowlist.git"
identity = %q
[trust]
ssh_allowed_signers = %q
threshold = %d
`, name, identity, filepath.Base(signers), threshold)
	p := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func approve(t *testing.T, k *testkeys.SSH, content []byte, version int64) []byte {
	t.Helper()
	sum := sha256.Sum256(content)
	stmt := allowlist.Statement("acme/deploy-allowlist", version, []allowlist.ManifestFile{{Path: allowlist.FileName, SHA256: hex.EncodeToString(sum[:])}})
	return k.Sign(t, stmt, allowlist.ApprovalNamespace)
}

type reviewWorld struct {
	*world
	alice, carol *testkeys.SSH
	envs         []*Environment
	proposal     *ProposeResult
	branch       string
}

func newReviewWorld(t *testing.T) *reviewWorld {
	t.Helper()
	rw := &reviewWorld{world: newWorld(t), alice: testkeys.SSHKey(t, "alice@example.com"), carol: testkeys.SSHKey(t, "carol@example.com")}
	dir := t.TempDir()
	envs, err := ReadEnvironments([]string{
		envConfig(t, dir, "production", "acme/deploy-allowlist", 2, rw.alice, rw.carol),
		envConfig(t, dir, "staging", "acme/other-allowlist", 1, rw.alice),
	})
	if err != nil {
		t.Fatal(err)
	}
	rw.envs = envs
	res, err := Propose(context.Background(), rw.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	rw.proposal, rw.branch = res, res.Branch
	return rw
}

func (rw *reviewWorld) reviewOpts() ReviewOptions {
	return ReviewOptions{Conn: testConn(rw.s), Project: "acme/deploy-allowlist", MergeRequest: rw.proposal.MergeRequestIID, Environments: rw.envs, Now: func() time.Time { return reviewNow }}
}

func TestReviewPostsAndUpdatesOneNote(t *testing.T) {
	t.Parallel()
	rw := newReviewWorld(t)
	ctx := context.Background()
	mr := &rw.s.MergeRequestsOf(rw.al)[0]
	// Someone else's note that looks like writ's: never edited.
	other := gitlabtest.User{ID: 99, Username: "mallory"}
	var mrp *gitlabtest.MergeRequest
	for _, m := range rw.al.MergeRequests {
		mrp = m
	}
	rw.s.AddNote(mrp, other, reviewMarker+"\nfake review")

	// Alice approves version 8.
	rw.s.Commit(rw.al, rw.branch, "approve", map[string][]byte{"approvals/v8/alice.sshsig": approve(t, rw.alice, rw.proposal.Content, 8)})
	rw.s.ResetRequests()
	res, err := Review(ctx, rw.reviewOpts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != NoteCreated {
		t.Fatalf("status %q", res.Status)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "by mallory carries writ's review marker") {
		t.Fatalf("warnings %q; want mallory's imitation named", res.Warnings)
	}
	rep := res.Report
	if !rep.LintOK || !rep.VersionOK || rep.BaseVersion != 7 || rep.Version != 8 || !rep.ExpiryOK || !rep.Changed {
		t.Fatalf("report %+v", rep)
	}
	prod, stg := rep.Envs[0], rep.Envs[1]
	if prod.Name != "production" || len(prod.Approvers) != 1 || prod.Approvers[0] != rw.alice.Fingerprint || prod.Met || !prod.Changed {
		t.Fatalf("production %+v", prod)
	}
	if stg.Name != "staging" || stg.IdentityOK || stg.Met || stg.Changed {
		t.Fatalf("staging %+v", stg)
	}
	if f := rep.Failures([]string{CheckLint, CheckVersion, CheckExpiry}); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
	if f := rep.Failures([]string{CheckApprovals}); len(f) != 2 {
		t.Fatalf("approval failures %v, want production and staging", f)
	}
	writes := rw.s.Writes()
	if len(writes) != 1 || writes[0].Method != http.MethodPost || writes[0].Path != fmt.Sprintf("/projects/%d/merge_requests/%d/notes", rw.al.ID, mr.IID) {
		t.Fatalf("writes %v", paths(writes))
	}
	body := jsonBody(t, writes[0].Body)["body"].(string)
	for _, want := range []string{reviewMarker, "1 of 2", "acme-web-deploy-production", "version | ✅ 7 → 8", "is not this environment's identity", rw.alice.Fingerprint, "GitLab's approvals do not count"} {
		if !strings.Contains(body, want) {
			t.Errorf("note lacks %q:\n%s", want, body)
		}
	}

	// Same state: nothing written.
	rw.s.ResetRequests()
	again, err := Review(ctx, rw.reviewOpts())
	if err != nil {
		t.Fatal(err)
	}
	if again.Status != NoteUnchanged || again.NoteID != res.NoteID || len(rw.s.Writes()) != 0 {
		t.Fatalf("second review: %q, writes %v", again.Status, paths(rw.s.Writes()))
	}

	// Carol approves (and a bogus approval by an unknown key is ignored):
	// the same note is updated and production meets its threshold.
	stranger := testkeys.SSHKey(t, "eve@example.com")
	rw.s.Commit(rw.al, rw.branch, "approve", map[string][]byte{
		"approvals/v8/carol.sshsig": approve(t, rw.carol, rw.proposal.Content, 8),
		"approvals/v8/eve.sshsig":   approve(t, stranger, rw.proposal.Content, 8),
		// An approval of other content does not count either.
		"approvals/v8/alice-old.sshsig": approve(t, rw.alice, []byte(baseAllowlist), 8),
	})
	rw.s.ResetRequests()
	third, err := Review(ctx, rw.reviewOpts())
	if err != nil {
		t.Fatal(err)
	}
	if third.Status != NoteUpdated || third.NoteID != res.NoteID {
		t.Fatalf("third review: %q note %d", third.Status, third.NoteID)
	}
	if p := third.Report.Envs[0]; !p.Met || len(p.Approvers) != 2 || len(p.Ignored) != 2 {
		t.Fatalf("production after carol: %+v", p)
	}
	ws := rw.s.Writes()
	if len(ws) != 1 || ws[0].Method != http.MethodPut || ws[0].Path != fmt.Sprintf("/projects/%d/merge_requests/%d/notes/%d", rw.al.ID, mr.IID, res.NoteID) {
		t.Fatalf("writes %v", paths(ws))
	}
	notes := rw.s.NotesOf(mrp)
	if len(notes) != 2 || notes[0].Body != reviewMarker+"\nfake review" {
		t.Fatalf("notes %+v", notes)
	}
}

func TestReviewLintFailureAndErrors(t *testing.T) {
	t.Parallel()
	rw := newReviewWorld(t)
	ctx := context.Background()
	rw.s.Commit(rw.al, rw.branch, "break", map[string][]byte{"allowlist.yaml": []byte("schema: writ/v2\nversion: eight\n")})
	o := rw.reviewOpts()
	o.DryRun = true
	rw.s.ResetRequests()
	res, err := Review(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != NoteDryRun || len(rw.s.Writes()) != 0 {
		t.Fatalf("dry run: %q writes %v", res.Status, paths(rw.s.Writes()))
	}
	if res.Report.LintOK || len(res.Report.Failures([]string{CheckLint})) != 1 || !strings.Contains(res.Note, "version") {
		t.Fatalf("lint failure not reported: %+v\n%s", res.Report, res.Note)
	}
	if f := res.Report.Failures([]string{CheckApprovals}); len(f) != 1 || !strings.Contains(f[0], "does not parse") {
		t.Fatalf("approvals on an unparsable file must fail: %v", f)
	}

	for name, tc := range map[string]struct {
		edit func(o *ReviewOptions)
		want string
	}{
		"missing mr":   {func(o *ReviewOptions) { o.MergeRequest = 0 }, "--mr"},
		"unknown mr":   {func(o *ReviewOptions) { o.MergeRequest = 42 }, "404"},
		"bad token":    {func(o *ReviewOptions) { o.Conn.Token = "nope" }, "401"},
		"unknown proj": {func(o *ReviewOptions) { o.Project = "acme/none" }, "404"},
	} {
		o := rw.reviewOpts()
		tc.edit(&o)
		_, err := Review(ctx, o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		} else {
			assertNoToken(t, err.Error())
		}
	}
}

func TestReviewLocal(t *testing.T) {
	t.Parallel()
	alice := testkeys.SSHKey(t, "alice@example.com")
	carol := testkeys.SSHKey(t, "carol@example.com")
	dir := t.TempDir()
	if _, err := ReadEnvironments([]string{filepath.Join(dir, "*.toml")}); err == nil {
		t.Fatal("an empty glob was accepted")
	}
	envConfig(t, dir, "production", "acme/deploy-allowlist", 2, alice, carol)
	envs, err := ReadEnvironments([]string{filepath.Join(dir, "*.toml")})
	if err != nil || len(envs) != 1 {
		t.Fatalf("glob: %v %d", err, len(envs))
	}

	repo := testkeys.GitRepo(t)
	repo.Commit(t, map[string]string{"allowlist.yaml": baseAllowlist}, "v7", alice)
	repo.Git(t, "branch", "base")
	w := newWorld(t)
	prop, err := Propose(context.Background(), w.proposeOpts())
	if err != nil {
		t.Fatal(err)
	}
	// The proposal, signed by alice (the commit signer counts), approved by nobody else yet.
	repo.Commit(t, map[string]string{"allowlist.yaml": string(prop.Content)}, "v8", alice)
	opts := LocalOptions{Dir: repo.Path, BaseRev: "base", Environments: envs, Now: func() time.Time { return reviewNow }}
	rep, err := ReviewLocal(opts)
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Envs[0]
	if !rep.VersionOK || p.CommitSigner != alice.Fingerprint || len(p.Approvers) != 1 || p.Met {
		t.Fatalf("report %+v env %+v", rep, p)
	}
	// Carol's detached approval brings production to 2 of 2.
	repo.Commit(t, map[string]string{"approvals/v8/carol.sshsig": string(approve(t, carol, prop.Content, 8))}, "approve", alice)
	if rep, err = ReviewLocal(opts); err != nil || !rep.Envs[0].Met || len(rep.Failures([]string{CheckLint, CheckVersion, CheckApprovals, CheckExpiry})) != 0 {
		t.Fatalf("after approval: %v %+v", err, rep)
	}
	// An unsigned head commit does not count.
	repo.Commit(t, map[string]string{"README": "x"}, "unsigned", nil)
	if rep, _ = ReviewLocal(opts); rep.Envs[0].Met || rep.Envs[0].CommitSigner != "" {
		t.Fatalf("unsigned head counted: %+v", rep.Envs[0])
	}
	// The version must increase; the expiry horizon applies.
	opts.BaseRev = "HEAD"
	opts.ExpiryHorizon = 365 * 24 * time.Hour
	rep, _ = ReviewLocal(opts)
	f := rep.Failures([]string{CheckVersion, CheckExpiry})
	if len(f) != 2 || !strings.HasPrefix(f[0], "version") || !strings.HasPrefix(f[1], "expiry") {
		t.Fatalf("failures %v", f)
	}
	if _, err := ReviewLocal(LocalOptions{Dir: repo.Path, BaseRev: "nope"}); err == nil || !strings.Contains(err.Error(), "fetch it first") {
		t.Fatalf("unknown base: %v", err)
	}
	if _, err := ReviewLocal(LocalOptions{Dir: t.TempDir()}); err == nil {
		t.Fatal("a directory without git was accepted")
	}
}

func TestParseChecks(t *testing.T) {
	t.Parallel()
	got, err := ParseChecks("lint, version,,approvals")
	if err != nil || strings.Join(got, ",") != "lint,version,approvals" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParseChecks("lint,bogus"); err == nil {
		t.Fatal("unknown check accepted")
	}
}
