package e2e

// Scenarios of issue 8 about what a signature authorises over time and
// over files: retired keys signing by backdating (hole 2), key files the
// approvals did not cover (hole 5), first contact without a floor (hole 6)
// and OpenPGP detached approvals (hole 7).

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// TrustKey names a signer only the trust scenarios use.
type TrustKey int

// Trust scenario signers.
const (
	// RetiredSSH is an SSH key a scenario lists in a signer set with a
	// valid-before in the past.
	RetiredSSH TrustKey = iota
	// RevokedOpenPGP is an OpenPGP key that a scenario revokes after it
	// signed (gpg signs no more with a revoked key).
	RevokedOpenPGP
)

// TrustRepos are what the trust scenarios need beyond Repos; the suite's
// Repos implement it.
type TrustRepos interface {
	// CommitBy is Repos.Commit signed by key.
	CommitBy(repo, parent string, files map[string]string, msg string, key TrustKey) (string, error)
	// AllowedSignersLine is RetiredSSH's allowed_signers line with options
	// (for example a valid-before).
	AllowedSignersLine(options ...string) string
	// OpenPGPKey is RevokedOpenPGP's fingerprint and armored public key:
	// as exported before its revocation, or (revoked) after it, which
	// revokes it.
	OpenPGPKey(revoked bool) (fingerprint, armored string)
	// ApproveOpenPGP is ApproveFiles by by's OpenPGP key (Trusted: alice, a
	// root signer; Foreign: mallory), made with gpg as
	// `writ allowlist approve --gpg-key` makes it: approvals/v<version>/<label>.asc.
	ApproveOpenPGP(identity string, version int64, files map[string]string, label string, by Signer) (path, data string, err error)
	// FileAt is the content of path at commit (a hash or a ref) of repo.
	FileAt(repo, commit, path string) (string, error)
}

func trustRepos(f *Fixture) (TrustRepos, error) {
	tr, ok := f.Repos.(TrustRepos)
	if !ok {
		return nil, errors.New("the fixture's Repos do not implement TrustRepos")
	}
	return tr, nil
}

// addSignerSet adds signer set name, with body (its YAML lines below the
// name), and lets the production entry use it.
func addSignerSet(y, name, body string) string {
	y = strings.Replace(y, "\nsigners:\n", "\nsigners:\n  "+name+":\n"+body, 1)
	return strings.Replace(y, "      signers: [app-team]\n", "      signers: [app-team, "+name+"]\n", 1)
}

// publishApproved publishes version 8 of the allowlist, edited by edit and
// loading the extra key files, signed by alice and approved by carol: a
// legitimate change the environment accepts (when writ is the executor,
// now). It returns the commit.
func publishApproved(f *Fixture, tr TrustRepos, edit func(string) string, keyFiles map[string]string) (string, error) {
	content := edit(versionLine.ReplaceAllString(f.AllowlistYAML, "version: 8"))
	alice, err := tr.FileAt(RepoAllowlist, "refs/heads/main", "keys/alice.asc")
	if err != nil {
		return "", err
	}
	loaded := map[string]string{"allowlist.yaml": content, "keys/alice.asc": alice}
	commitFiles := map[string]string{"allowlist.yaml": content}
	for p, c := range keyFiles {
		loaded[p], commitFiles[p] = c, c
	}
	path, approval, err := f.Repos.ApproveFiles(AllowlistIdentity, 8, loaded, "carol", Trusted)
	if err != nil {
		return "", err
	}
	commitFiles[path] = approval
	sha, err := f.Repos.Commit(RepoAllowlist, "refs/heads/main", commitFiles, "allowlist version 8", Trusted)
	if err != nil {
		return "", err
	}
	if err := f.Repos.SetBranch(RepoAllowlist, "main", sha); err != nil {
		return "", err
	}
	if f.AcceptAllowlist != nil {
		if err := f.AcceptAllowlist(); err != nil {
			return "", fmt.Errorf("the environment does not accept the legitimate version 8: %w", err)
		}
	}
	return sha, nil
}

// deployBackdoorBy commits the backdoored deploy.sh on the legitimate head,
// signed by key, moves main there and points the job at it.
func deployBackdoorBy(f *Fixture, tr TrustRepos, key TrustKey, msg string) error {
	sha, err := tr.CommitBy(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, msg, key)
	if err != nil {
		return err
	}
	if err := f.Repos.SetBranch(RepoApp, LegitRef, sha); err != nil {
		return err
	}
	setSha(f.Payload, sha)
	return nil
}

func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "retired-ssh-key-backdated-commit", Category: CatSource,
			Description: "The allowlist retired an SSH signer yesterday (valid-before); whoever holds the retired key signs a backdoored deploy.sh with a committer date before the retirement.",
			Mutate: func(f *Fixture) error {
				tr, err := trustRepos(f)
				if err != nil {
					return err
				}
				yesterday := time.Now().UTC().AddDate(0, 0, -1).Format("20060102")
				line := tr.AllowedSignersLine(`valid-before="` + yesterday + `Z"`)
				if _, err := publishApproved(f, tr, func(y string) string {
					return addSignerSet(y, "ops", "    ssh:\n      - "+yamlQuote(line)+"\n")
				}, nil); err != nil {
					return err
				}
				// The application repository's clock is in 2025: the commit
				// is dated long before the key retired.
				return deployBackdoorBy(f, tr, RetiredSSH, "faster deploys")
			},
			Writ: refuse("signature", "the key is retired"),
		},
		Scenario{
			Name: "allowlist-key-file-swapped", Category: CatAllowlist,
			Description: "Version 8 revoked dev's OpenPGP key (keys/dev.asc). One root signer, below the threshold, swaps keys/dev.asc back to its export from before the revocation, leaving allowlist.yaml and carol's approval as they were; dev's key signed the backdoor.",
			Mutate: func(f *Fixture) error {
				tr, err := trustRepos(f)
				if err != nil {
					return err
				}
				// dev signs while the key is valid; gpg refuses once revoked.
				sha, err := tr.CommitBy(RepoApp, f.Hist.Head, map[string]string{"deploy.sh": backdoored(f.Canary)}, "faster deploys", RevokedOpenPGP)
				if err != nil {
					return err
				}
				fp, revoked := tr.OpenPGPKey(true)
				_, before := tr.OpenPGPKey(false)
				set := fmt.Sprintf("    openpgp:\n      - fingerprint: %s\n        key: keys/dev.asc\n", fp)
				if _, err := publishApproved(f, tr, func(y string) string { return addSignerSet(y, "dev", set) },
					map[string]string{"keys/dev.asc": revoked}); err != nil {
					return err
				}
				swap, err := f.Repos.Commit(RepoAllowlist, "refs/heads/main", map[string]string{"keys/dev.asc": before}, "refresh dev's key", Trusted)
				if err != nil {
					return err
				}
				if err := f.Repos.SetBranch(RepoAllowlist, "main", swap); err != nil {
					return err
				}
				if err := f.Repos.SetBranch(RepoApp, LegitRef, sha); err != nil {
					return err
				}
				setSha(f.Payload, sha)
				return nil
			},
			Writ: Expectation{Verdict: Refuse, Reason: "Failed check: signature", Detail: "is revoked", AllowlistReject: "approvals"},
		},
		Scenario{
			Name: "allowlist-superseded-first-contact", Category: CatAllowlist, Fresh: true,
			Description: "A new runner host whose configuration sets allowlist.min_version = 7 is served version 6, genuinely signed and approved but superseded, which still admitted the canary as a debug script.",
			Mutate: func(f *Fixture) error {
				if f.SetFloor != nil {
					if err := f.SetFloor(7); err != nil {
						return err
					}
				}
				if err := f.Repos.SetBranch(RepoAllowlist, "main", f.AllowlistCommits[6]); err != nil {
					return err
				}
				f.Payload.Step("script").Script = []string{f.Canary.Code()}
				return nil
			},
			Writ: undecided("floor: version 6 is below 7, this environment's allowlist.min_version", "floor"),
		},
		Scenario{
			Name: "allowlist-openpgp-approvals-not-enough", Category: CatAllowlist,
			Description: "Version 8 signed by a root signer's OpenPGP key, with detached OpenPGP approvals by that same key and by the attacker's key (threshold 2): one signer counts once, and an untrusted key not at all.",
			Mutate: func(f *Fixture) error {
				tr, err := trustRepos(f)
				if err != nil {
					return err
				}
				return allowlistAttack(f, allowlistVersion{SignedBy: Trusted, Edit: admitCanary(f, 8), Files: func(content string) (map[string]string, error) {
					alice, err := tr.FileAt(RepoAllowlist, "refs/heads/main", "keys/alice.asc")
					if err != nil {
						return nil, err
					}
					loaded := map[string]string{"allowlist.yaml": content, "keys/alice.asc": alice}
					out := map[string]string{}
					for label, by := range map[string]Signer{"alice": Trusted, "carol": Foreign} {
						path, data, err := tr.ApproveOpenPGP(AllowlistIdentity, 8, loaded, label, by)
						if err != nil {
							return nil, err
						}
						out[path] = data
					}
					return out, nil
				}})
			},
			Writ: refuseKeeping("approvals"),
		},
	)
}
