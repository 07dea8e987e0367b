package gitrepo

import (
	"errors"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// TestFetchPrunesWildcardRefs: a wildcard fetch leaves in the mirror
// exactly the refs the server advertises under it now (a withdrawn ref is
// removed, other refs are untouched), and fetching nothing is no error.
func TestFetchPrunesWildcardRefs(t *testing.T) {
	t.Parallel()
	r, hs := linearRepo(t, 2)
	r.Git(t, "update-ref", "refs/writ/approvals/x/alice", hs[0])
	r.Git(t, "update-ref", "refs/writ/approvals/x/bob", hs[1])
	r.Git(t, "update-ref", "refs/writ/approvals/y/carol", hs[1])
	m := mustMirror(t, r.Path, Auth{})
	spec := "+refs/writ/approvals/x/*:refs/writ/approvals/x/*"
	if err := m.Fetch(t.Context(), "+refs/heads/main:refs/writ/heads/main", spec, "+refs/writ/approvals/y/*:refs/writ/approvals/y/*"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"refs/writ/approvals/x/alice", "refs/writ/approvals/x/bob", "refs/writ/approvals/y/carol"} {
		if _, err := m.Ref(n); err != nil {
			t.Fatalf("%s not fetched: %v", n, err)
		}
	}
	r.Git(t, "update-ref", "-d", "refs/writ/approvals/x/alice")
	if err := m.Fetch(t.Context(), "+refs/heads/main:refs/writ/heads/main", spec); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ref("refs/writ/approvals/x/alice"); !errors.Is(err, plumbing.ErrReferenceNotFound) {
		t.Fatalf("withdrawn ref still in the mirror: %v", err)
	}
	for _, n := range []string{"refs/writ/approvals/x/bob", "refs/writ/approvals/y/carol", "refs/writ/heads/main"} {
		if _, err := m.Ref(n); err != nil {
			t.Fatalf("%s pruned: %v", n, err)
		}
	}
	r.Git(t, "update-ref", "-d", "refs/writ/approvals/x/bob")
	if err := m.Fetch(t.Context(), "+refs/heads/main:refs/writ/heads/main", spec); err != nil {
		t.Fatalf("a wildcard matching nothing: %v", err)
	}
	if _, err := m.Ref("refs/writ/approvals/x/bob"); err == nil {
		t.Fatal("the last withdrawn ref is still in the mirror")
	}
}
