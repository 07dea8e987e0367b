package allowlist_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/allowlist"
)

// BenchmarkAcceptNewVersion measures what an environment does when the
// allowlist moves: fetch one new commit and run every acceptance rule on it.
// Compare with BenchmarkGitFetchVerifyCommit, the same work done by git.
func BenchmarkAcceptNewVersion(b *testing.B) {
	w := newWorld(b, worldOpts{})
	a := w.accepter()
	v := 1
	w.repo.Commit(b, map[string]string{"allowlist.yaml": good(v)}, "v1", w.alice)
	if _, _, err := a.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		v++
		w.repo.Commit(b, map[string]string{"allowlist.yaml": good(v)}, "next", w.alice)
		b.StartTimer()
		_, rep, err := a.Refresh(context.Background())
		if err != nil || !rep.Accepted {
			b.Fatalf("refresh: %v %+v", err, rep)
		}
	}
}

// BenchmarkGitFetchVerifyCommit is the baseline: `git fetch` of the new
// commit and `git verify-commit` of it, in a clone of the same repository.
func BenchmarkGitFetchVerifyCommit(b *testing.B) {
	w := newWorld(b, worldOpts{})
	v := 1
	w.repo.Commit(b, map[string]string{"allowlist.yaml": good(v)}, "v1", w.alice)
	clone := filepath.Join(b.TempDir(), "clone")
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = clone
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if out, err := exec.Command("git", "clone", "-q", "--bare", w.repo.Path, clone).CombinedOutput(); err != nil {
		b.Fatalf("clone: %v %s", err, out)
	}
	git("config", "gpg.ssh.allowedSignersFile", filepath.Join(w.dir, "allowed_signers"))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		v++
		w.repo.Commit(b, map[string]string{"allowlist.yaml": good(v)}, "next", w.alice)
		b.StartTimer()
		git("fetch", "-q", "origin", "+refs/heads/main:refs/heads/main")
		git("verify-commit", "main")
	}
}

// BenchmarkCachedAllowlist10000 is what every job's admission pays to load
// the accepted version when nothing new was published: read and check the
// verified store's header for a 10,000-entry allowlist, then the section
// that holds the job's entry.
func BenchmarkCachedAllowlist10000(b *testing.B) {
	_, a, _ := accepted10000(b)
	b.ResetTimer()
	for b.Loop() {
		// What a job reads: the store's header, and the one section
		// that holds its project and job.
		acc, err := a.Cached()
		if err != nil {
			b.Fatal(err)
		}
		ix, err := acc.JobIndex("group/app-500", "deploy-3")
		if err != nil {
			b.Fatal(err)
		}
		if e, ok := ix.Lookup("group/app-500", "deploy-3", "production", "refs/heads/main"); !ok || e.Name != "job-5003" {
			b.Fatalf("lookup: %v %v", e, ok)
		}
	}
}

// BenchmarkAcceptNewVersion10000 is BenchmarkAcceptNewVersion with a
// 10,000-entry allowlist whose new versions change only the version line:
// the in-process part of test/scale's BenchmarkAcceptScale, for profiles.
func BenchmarkAcceptNewVersion10000(b *testing.B) {
	w, a, text := accepted10000(b)
	v := 1
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		v++
		next := strings.Replace(text, "version: 1\n", "version: "+strconv.Itoa(v)+"\n", 1)
		w.repo.Commit(b, map[string]string{"allowlist.yaml": next}, "next", w.alice)
		b.StartTimer()
		_, rep, err := a.Refresh(context.Background())
		if err != nil || !rep.Accepted {
			b.Fatalf("refresh: %v %+v", err, rep)
		}
	}
}

// accepted10000 is a world whose environment accepted a 10,000-entry
// allowlist, with the accepter and the file's text.
func accepted10000(b *testing.B) (*world, *allowlist.Accepter, string) {
	w := newWorld(b, worldOpts{})
	text := strings.Replace(string(allowlist.GeneratedAllowlist(10000)), "repository: acme/deploy-allowlist", "repository: "+identity, 1)
	text = strings.Replace(text, "expires: 2027-03-01T00:00:00Z", "expires: "+now.AddDate(1, 0, 0).Format(time.RFC3339), 1)
	w.repo.Commit(b, map[string]string{"allowlist.yaml": text}, "v1", w.alice)
	a := w.accepter()
	if _, _, err := a.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	return w, a, text
}
