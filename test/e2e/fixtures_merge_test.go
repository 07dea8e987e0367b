package e2e

import (
	"fmt"
	"time"
)

// Merge makes the merge commit as GitLab's "Merge" button does: git merge
// --no-ff of second into first, unsigned unless by says otherwise.
func (r *testRepos) Merge(repo, first, second, msg string, by Signer) (string, error) {
	g := r.repos[repo]
	g.Git(r.t, "checkout", "-q", "--detach", first)
	var args []string
	switch by {
	case Unsigned:
		args = []string{"merge", "-q", "--no-ff", "--no-gpg-sign", "-m", msg, second}
	case Trusted, Foreign:
		k := r.keys.Trusted
		if by == Foreign {
			k = r.keys.Foreign
		}
		args = []string{"-c", "gpg.format=openpgp", "-c", "gpg.program=" + k.Program, "-c", "user.signingkey=" + k.SigningFingerprint,
			"merge", "-q", "--no-ff", "-S", "-m", msg, second}
	default:
		return "", fmt.Errorf("merge: unknown signer %d", by)
	}
	g.Git(r.t, args...)
	g.When = g.When.Add(time.Minute)
	return g.Git(r.t, "rev-parse", "HEAD"), nil
}
