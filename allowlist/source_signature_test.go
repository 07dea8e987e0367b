package allowlist

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// unsignedDoc is an allowlist whose one entry has the given source keys
// below repository (signers, mode, signature, approvals).
func unsignedDoc(alice, bob *testkeys.SSH, source string) string {
	return "schema: writ/v2\nrepository: acme/al\nversion: 1\nexpires: 2099-01-01T00:00:00Z\n" +
		"signers:\n  approvers:\n    ssh:\n      - " + alice.AllowedSignersLine("") + "\n      - " + bob.AllowedSignersLine("") + "\n" +
		"jobs:\n  - name: deploy\n    match:\n      project: acme/app\n      job: deploy\n      environments: [production]\n      refs: [refs/heads/main]\n" +
		"    definition:\n      script: [make deploy]\n" +
		"    source:\n      repository: https://git.example.com/acme/app.git\n" + source
}

const twoApprovers = "      approvals:\n        signers: [approvers]\n        threshold: 2\n"

func TestParseSignatureNone(t *testing.T) {
	t.Parallel()
	alice, bob := testkeys.SSHKey(t, "alice@example.com"), testkeys.SSHKey(t, "bob@example.com")
	for _, mode := range []SourceMode{ModeCommit, ModeStrict} {
		doc := unsignedDoc(alice, bob, "      mode: "+string(mode)+"\n      signature: none\n"+twoApprovers)
		a, warns, err := Lint("allowlist.yaml", []byte(doc), nil)
		if err != nil || len(warns) > 0 {
			t.Fatalf("mode %s: %v %v", mode, err, warns)
		}
		src := a.Jobs[0].Source
		if !src.ApprovalsOnly() || src.ApprovedHistory() != (mode == ModeStrict) || len(src.Signers) != 0 || src.Approvals.Threshold != 2 {
			t.Fatalf("mode %s: source %+v", mode, src)
		}
		out, err := Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte("      signature: none\n")) || bytes.Contains(out, []byte("\n      signers:")) {
			t.Fatalf("marshalled source:\n%s", out)
		}
		b, err := Parse("allowlist.yaml", out, nil)
		if err != nil || !b.Jobs[0].Source.ApprovalsOnly() {
			t.Fatalf("marshalled output does not parse back: %v\n%s", err, out)
		}
	}
	// "required" is the default, written out.
	a, err := Parse("allowlist.yaml", []byte(unsignedDoc(alice, bob, "      signers: [approvers]\n      mode: commit\n      signature: required\n")), nil)
	if err != nil || a.Jobs[0].Source.ApprovalsOnly() || a.Jobs[0].Source.Signature != SignatureRequired {
		t.Fatalf("signature: required: %v %+v", err, a)
	}
}

// TestParseSignatureNoneRefusesLooseEntries: no configuration of
// signature: none turns every check off, and nothing is silently ignored.
func TestParseSignatureNoneRefusesLooseEntries(t *testing.T) {
	t.Parallel()
	alice, bob := testkeys.SSHKey(t, "alice@example.com"), testkeys.SSHKey(t, "bob@example.com")
	for name, tc := range map[string]struct{ source, want string }{
		"no approvals": {"      mode: commit\n      signature: none\n",
			"signature: none requires source.approvals"},
		"threshold zero": {"      mode: commit\n      signature: none\n      approvals:\n        signers: [approvers]\n        threshold: 0\n",
			"threshold must be a whole number of people from 1 to 32"},
		"no threshold": {"      mode: commit\n      signature: none\n      approvals:\n        signers: [approvers]\n",
			`missing required key "threshold"`},
		"author counts": {"      mode: commit\n      signature: none\n" + twoApprovers + "        author_counts: true\n",
			"author_counts with signature: none"},
		"signers too": {"      signers: [approvers]\n      mode: commit\n      signature: none\n" + twoApprovers,
			"signers with signature: none"},
		"tag mode": {"      mode: tag\n      signature: none\n" + twoApprovers,
			"mode tag with signature: none"},
		"other value": {"      signers: [approvers]\n      mode: commit\n      signature: optional\n",
			`signature "optional": use required`},
		"signed without signers": {"      mode: commit\n" + twoApprovers,
			`missing required key "signers"`},
	} {
		_, err := Parse("allowlist.yaml", []byte(unsignedDoc(alice, bob, tc.source)), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
}

func TestLintWarnsOneUnsignedApprover(t *testing.T) {
	t.Parallel()
	alice, bob := testkeys.SSHKey(t, "alice@example.com"), testkeys.SSHKey(t, "bob@example.com")
	doc := unsignedDoc(alice, bob, "      mode: commit\n      signature: none\n      approvals:\n        signers: [approvers]\n        threshold: 1\n")
	_, warns, err := Lint("allowlist.yaml", []byte(doc), nil)
	if err != nil || len(warns) != 1 || !strings.Contains(warns.Error(), "one person alone decides what runs") {
		t.Fatalf("err %v, warnings %v", err, warns)
	}
}

func TestDiffShowsSignatureNone(t *testing.T) {
	t.Parallel()
	w := newSourceWorld(t, 2)
	old := w.e
	neu := *w.e
	neu.Source.Signers, neu.Source.Signature = nil, SignatureNone
	ch := entryChanges(old, &neu)
	var got FieldChange
	for _, c := range ch {
		if c.Field == "source.signature" {
			got = c
		}
	}
	if got.Old != "required" || !strings.Contains(got.New, "approvals alone vouch for the commit") {
		t.Fatalf("changes %+v", ch)
	}
	var b strings.Builder
	writeEntry(&b, &neu)
	if !strings.Contains(b.String(), "**no author signature**, approved by 2 of signers approvers") {
		t.Fatalf("entry description:\n%s", b.String())
	}
}

// TestTallyUnsignedCommit: an entry with signature: none counts approvals
// with the same code as any two-person rule, with no author.
func TestTallyUnsignedCommit(t *testing.T) {
	t.Parallel()
	w := newSourceWorld(t, 2)
	w.e.Source.Signers, w.e.Source.Signature = nil, SignatureNone
	ok := SourceStatement{Repository: srcRepo, Commit: srcCommit, Environments: []string{"production"}}
	aps := []SourceApproval{sshApproval(t, w.alice, "alice", ok, SourceApprovalNamespace), sshApproval(t, w.bob, "bob", ok, SourceApprovalNamespace)}
	tally, err := w.a.TallySourceApprovals(w.e, srcCommit, "production", nil, aps, time.Now())
	if err != nil || tally.Needed() != 0 {
		t.Fatalf("two people: %v, needed %d", err, tally.Needed())
	}
	tally, _ = w.a.TallySourceApprovals(w.e, srcCommit, "production", nil, aps[:1], time.Now())
	if tally.Needed() != 1 {
		t.Fatalf("one person: needed %d", tally.Needed())
	}
}
