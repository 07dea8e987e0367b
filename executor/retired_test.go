package executor

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// retire lists e.signer in the signer set "retiring", which the entry uses,
// with the given allowed_signers options (for example a valid-before).
func (e *env) retire(opts ...string) {
	e.entry.Signers = []string{"retiring"}
	e.extraSigners = fmt.Sprintf("  retiring:\n    ssh:\n      - %s\n", q(e.signer.AllowedSignersLine("", opts...)))
	e.write()
}

// yesterday is an allowed_signers valid-before that retired a key yesterday.
func yesterday() string {
	return `valid-before="` + time.Now().UTC().AddDate(0, 0, -1).Format("20060102") + `Z"`
}

// Hole 2 of issue 8, in commit mode: a key retired yesterday (valid-before)
// signed a commit a week ago (by its date). Admitted then: still admitted.
// First seen today, backdated or not: refused, naming the retirement.
func TestRetiredKeyCommitMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	weekAgo := time.Now().UTC().AddDate(0, 0, -7)
	e.src.When = weekAgo
	admitted := e.src.Commit(t, map[string]string{"x": "1"}, "signed a week ago", e.signer)
	e.retire()
	j := e.newJob(e.payload(800, admitted))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("signed commit refused while the key was valid\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)

	e.retire(yesterday())
	// The same commit again (a retried job): admitted before, still admitted.
	j = e.newJob(e.payload(801, admitted))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("previously admitted commit refused after its key retired\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)

	// A new commit by the retired key, dated a week ago like the first.
	e.src.When = weekAgo.Add(time.Minute)
	backdated := e.src.Commit(t, map[string]string{"evil.sh": "touch x\n"}, "backdated by a retired key", e.signer)
	j = e.newJob(e.payload(802, backdated))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("backdated commit by a retired key admitted: prepare %d\n%s", r.prepare, j.log.String())
	}
	mustContain(t, j.log.String(), "Failed check: signature", "backdated by a retired key", "valid-before", "it is now", "the key is retired")
	j.assertNothingRan()
	if ev := eventsFor(e.auditRecords(), "802"); len(ev) == 0 || ev[0] != "refuse" {
		t.Fatalf("audit events for job 802: %v, want a refuse record", ev)
	}
}

// In strict mode the history walk starts after the last admitted commit, so
// retiring the key that signed earlier history does not break the next
// deploy signed by a current key; a backdated commit by the retired key on
// top of that history is refused.
func TestRetiredKeyStrictMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Mode = "strict"
	e.src.When = time.Now().UTC().AddDate(0, 0, -7)
	old := e.src.Commit(t, map[string]string{"x": "1"}, "signed a week ago", e.signer)
	e.retire()
	j := e.newJob(e.payload(810, old))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("signed history refused\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)

	// The old key retires yesterday; a new key joins the set.
	e.entry.Signers = []string{"retiring", "others"}
	e.extraSigners = fmt.Sprintf("  retiring:\n    ssh:\n      - %s\n", q(e.signer.AllowedSignersLine("", yesterday())))
	e.write()
	e.src.When = time.Now().UTC().Add(-time.Hour)
	next := e.src.Commit(t, map[string]string{"y": "1"}, "signed by the new key", e.outsider)
	j = e.newJob(e.payload(811, next))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("strict walk broke after a key retired\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)

	e.src.When = time.Now().UTC().AddDate(0, 0, -6)
	bad := e.src.Commit(t, map[string]string{"z": "1"}, "backdated strict commit", e.signer)
	j = e.newJob(e.payload(812, bad))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("backdated commit by a retired key admitted in strict mode\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "strict mode", "backdated strict commit", "the key is retired")
	j.assertNothingRan()
}

// Tag mode: a tag signed by a retired key and first seen today is refused.
func TestRetiredKeyTagMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Mode = "tag"
	e.entry.Refs = []string{"refs/tags/v2.0"}
	e.src.When = time.Now().UTC().AddDate(0, 0, -7)
	e.src.Tag(t, "v2.0", e.head, e.signer)
	e.retire(yesterday())
	j := e.newJob(e.payload(820, e.head, withGit("ref", "v2.0"), withGit("ref_type", "tag")))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("tag by a retired key admitted\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "Failed check: signature", "the key is retired")
	j.assertNothingRan()
}

// Strict mode with allow_rollback, after a branch switch: the walk to a
// commit that does not descend from the last admitted one covers history
// the entry admitted before (signed by a key retired since: still
// admitted) and new commits (judged now).
func TestRetiredKeyStrictDivergent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.entry.Mode = "strict"
	e.entry.SourceExtra = []string{"allow_rollback: true"}
	weekAgo := time.Now().UTC().AddDate(0, 0, -7)
	e.src.When = weekAgo
	older := e.src.Commit(t, map[string]string{"x": "1"}, "older", e.signer)
	newer := e.src.Commit(t, map[string]string{"x": "2"}, "newer", e.signer)
	e.retire()
	j := e.newJob(e.payload(830, newer))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("signed history refused\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)

	// The old key retires; a new key joins. main moves to a branch off
	// older, with one commit by the new key.
	e.entry.Signers = []string{"retiring", "others"}
	e.extraSigners = fmt.Sprintf("  retiring:\n    ssh:\n      - %s\n", q(e.signer.AllowedSignersLine("", yesterday())))
	e.write()
	e.src.Git(t, "checkout", "-q", "-B", "main", older)
	e.src.When = time.Now().UTC().Add(-time.Hour)
	side := e.src.Commit(t, map[string]string{"y": "1"}, "side by the new key", e.outsider)
	j = e.newJob(e.payload(831, side))
	if r := j.runAll(); r.prepare != 0 || r.build != 0 {
		t.Fatalf("history admitted before was judged again after its key retired\n%s", j.log.String())
	}
	_ = os.Remove(e.canary)

	e.src.When = weekAgo.Add(time.Hour)
	bad := e.src.Commit(t, map[string]string{"z": "1"}, "backdated by the retired key", e.signer)
	j = e.newJob(e.payload(832, bad))
	if r := j.runAll(); r.prepare != 1 {
		t.Fatalf("new commit by a retired key admitted in strict mode\n%s", j.log.String())
	}
	mustContain(t, j.log.String(), "strict mode", "backdated by the retired key", "the key is retired")
	j.assertNothingRan()
}
