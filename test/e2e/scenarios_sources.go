package e2e

// Scenarios of issue 18, more than one verified source: a deploy
// repository (acme/app) whose settings come from a second repository
// (acme/settings) included as a git submodule at "settings", with a
// script that runs `git -C settings checkout main` and the settings'
// check.sh, as login.gov's deploys do. Allowlist version 8 names the
// settings repository under source.extra, signed by app-team, and asks
// for a read-only .git. GitLab's own runner (the pass-through executor)
// checks the submodule out as GIT_SUBMODULE_STRATEGY says, from the URL
// in .gitmodules, resolved against the URL GitLab sends.

import (
	"errors"
	"fmt"
	"strings"
)

// Repositories of the source scenarios.
const (
	// RepoSettings is acme/settings, the deploy's settings.
	RepoSettings = "settings"
	// RepoEvilSettings is evil/settings, the attacker's.
	RepoEvilSettings = "evil-settings"
)

// SettingsCheck is settings/check.sh as the settings' owners wrote it.
const SettingsCheck = "#!/bin/bash\necho \"settings for production: region $(sed -n 's/^region = //p' \"$(dirname \"$0\")/prod.tfvars\")\"\n"

// SettingsDone is what SettingsCheck prints.
const SettingsDone = "settings for production: region us-west-2"

// SourceRepos are what the source scenarios need beyond Repos; the suite's
// Repos implement it.
type SourceRepos interface {
	// NewRepo makes repository repo with one commit of files on main,
	// signed by by, served as project (for example "acme/settings").
	NewRepo(repo, project string, files map[string]string, by Signer) (string, error)
	// CommitGitlinks is Repos.Commit that also records gitlinks (path →
	// commit) in the tree, as `git submodule add` does.
	CommitGitlinks(repo, parent string, links, files map[string]string, msg string, by Signer) (string, error)
}

func sourceRepos(f *Fixture) (SourceRepos, error) {
	sr, ok := f.Repos.(SourceRepos)
	if !ok {
		return nil, errors.New("the fixture's Repos do not implement SourceRepos")
	}
	return sr, nil
}

// settingsWorld is a fixture with the settings repository and allowlist
// version 8 accepted.
type settingsWorld struct {
	f  *Fixture
	sr SourceRepos
	// Head is acme/settings' main.
	Head string
}

// submoduleScript is the production entry's script in version 8.
func submoduleScript() []string {
	return []string{"git -C settings checkout -q main", "bash settings/check.sh", LegitScript}
}

// withSettings makes acme/settings and publishes version 8, whose
// production entry runs script and whose source has extra (YAML lines
// under source:, indented six spaces).
func withSettings(f *Fixture, script func() []string, extra func(settingsURL string) []string) (*settingsWorld, error) {
	sr, err := sourceRepos(f)
	if err != nil {
		return nil, err
	}
	tr, err := trustRepos(f)
	if err != nil {
		return nil, err
	}
	head, err := sr.NewRepo(RepoSettings, "acme/settings", map[string]string{"prod.tfvars": "region = us-west-2\n", "check.sh": SettingsCheck}, Trusted)
	if err != nil {
		return nil, err
	}
	lines := script()
	edit := func(y string) string {
		var quoted []string
		for _, l := range lines {
			quoted = append(quoted, "        - "+yamlQuote(l))
		}
		y = strings.Replace(y, "        - "+yamlQuote(LegitScript)+"\n", strings.Join(quoted, "\n")+"\n", 1)
		y = strings.Replace(y, "        DEPLOY_TARGET: {value: "+LegitTarget+"}\n",
			"        DEPLOY_TARGET: {value: "+LegitTarget+"}\n"+
				"        GIT_SUBMODULE_STRATEGY: {value: normal, dangerous: true}\n        GIT_SUBMODULE_DEPTH: {value: \"0\", dangerous: true}\n", 1)
		var src strings.Builder
		for _, l := range extra(f.Repos.SourceURL(RepoSettings)) {
			src.WriteString("      " + l + "\n")
		}
		return strings.Replace(y, "      descends_from: "+f.Hist.Reviewed+"\n", "      descends_from: "+f.Hist.Reviewed+"\n"+src.String(), 1)
	}
	if _, err := publishApproved(f, tr, edit, nil); err != nil {
		return nil, err
	}
	f.Payload.Step("script").Script = lines
	// GitLab's runner clones the submodule whole, so that its main exists
	// for `git checkout main`, as in a deploy that runs it.
	f.Payload.SetVar("GIT_SUBMODULE_STRATEGY", "normal")
	f.Payload.SetVar("GIT_SUBMODULE_DEPTH", "0")
	return &settingsWorld{f: f, sr: sr, Head: head}, nil
}

// submoduleEntry is source.git and source.extra for the settings
// submodule.
func submoduleEntry(settingsURL string) []string {
	return []string{
		"git: read-only",
		"extra:",
		"  - path: settings",
		"    ref: refs/heads/main",
		"    submodule: true",
		"    repository: " + settingsURL,
		"    signers: [app-team]",
		"    mode: commit",
	}
}

// deploySettings commits, signed by alice, the application at main's head
// with the settings submodule at gitlink (and .gitmodules naming url,
// relative to the application's URL unless absolute), moves main there and
// points the job at it.
func (s *settingsWorld) deploySettings(gitlink, url string) error {
	f := s.f
	gitmodules := "[submodule \"settings\"]\n\tpath = settings\n\turl = " + url + "\n"
	sha, err := s.sr.CommitGitlinks(RepoApp, f.Hist.Head, map[string]string{"settings": gitlink},
		map[string]string{".gitmodules": gitmodules}, "deploy with settings", Trusted)
	if err != nil {
		return err
	}
	if err := f.Repos.SetBranch(RepoApp, LegitRef, sha); err != nil {
		return err
	}
	setSha(f.Payload, sha)
	return nil
}

// settingsCommit commits check.sh running the canary to repo (on its
// main's head), signed by by, and returns it; branch, if set, is moved
// there.
func (s *settingsWorld) canarySettings(repo, branch string, by Signer) (string, error) {
	sha, err := s.f.Repos.Commit(repo, "refs/heads/main", map[string]string{"check.sh": "#!/bin/bash\n" + s.f.Canary.Code() + "\n"}, "faster settings check", by)
	if err != nil {
		return "", err
	}
	if branch != "" {
		err = s.f.Repos.SetBranch(repo, branch, sha)
	}
	return sha, err
}

// settingsRan is the pass-through evidence of the legitimate submodule
// deploy: GitLab's runner checked the settings out too.
func settingsRan(f *Fixture, o Outcome) error {
	if err := legitRan(f, o); err != nil {
		return err
	}
	if !strings.Contains(o.Trace, SettingsDone) {
		return fmt.Errorf("the settings check did not run")
	}
	return nil
}

func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "submodule-settings-deploy", Category: CatSource, Robustness: true,
			Description: "The legitimate deploy with its settings in a submodule: the entry names acme/settings for path settings; the script runs `git -C settings checkout main` and the settings' check.sh. writ checks out the gitlink's verified commit from the entry's URL, with a .git built from its mirror.",
			Mutate: func(f *Fixture) error {
				s, err := withSettings(f, submoduleScript, submoduleEntry)
				if err != nil {
					return err
				}
				return s.deploySettings(s.Head, "../settings.git")
			},
			Writ:        Expectation{Verdict: Admit, Reason: "writ: checked out verified commit", Detail: SettingsDone},
			PassThrough: settingsRan,
			Shows:       "the deploy ran with the runner's own submodule checkout",
		},
		Scenario{
			Name: "submodule-gitlink-unsigned", Category: CatSource,
			Description: "A signed deploy commit moves the settings submodule to an unsigned commit on acme/settings' main whose check.sh runs the canary: the deploy's signers vouched for the gitlink, the settings' signers never signed it.",
			Mutate: func(f *Fixture) error {
				s, err := withSettings(f, submoduleScript, submoduleEntry)
				if err != nil {
					return err
				}
				bad, err := s.canarySettings(RepoSettings, "main", Unsigned)
				if err != nil {
					return err
				}
				return s.deploySettings(bad, "../settings.git")
			},
			Writ: refuse("signature", "source.extra settings (https://"),
		},
		Scenario{
			Name: "submodule-gitmodules-url-attacker", Category: CatSource,
			Description: "The deploy commit's .gitmodules points the settings submodule at the attacker's server (evil/settings), and its gitlink at a commit only that server has; GitLab's runner clones from .gitmodules.",
			Mutate: func(f *Fixture) error {
				s, err := withSettings(f, submoduleScript, submoduleEntry)
				if err != nil {
					return err
				}
				if _, err := s.sr.NewRepo(RepoEvilSettings, "evil/settings", map[string]string{"prod.tfvars": "region = us-west-2\n", "check.sh": SettingsCheck}, Foreign); err != nil {
					return err
				}
				bad, err := s.canarySettings(RepoEvilSettings, "main", Foreign)
				if err != nil {
					return err
				}
				return s.deploySettings(bad, f.Repos.URL(RepoEvilSettings))
			},
			Writ: refuse("source", `is not on branch "main" of the entry's repository https://`),
		},
		Scenario{
			// Not refused: writ leaves a submodule the entry does not name
			// empty (docs/allowlist.md says why), so the attack's code is
			// never there to run; the pass-through run shows it would.
			Name: "submodule-not-named-by-entry", Category: CatSource, Robustness: true,
			Description: "The deploy's script runs an optional hook (hooks/pre-deploy.sh) when present; a signed deploy commit adds a submodule at hooks from the attacker's server, which GitLab's runner clones. The entry names only the settings submodule.",
			Mutate: func(f *Fixture) error {
				script := func() []string {
					return append(submoduleScript(), "test ! -f hooks/pre-deploy.sh || bash hooks/pre-deploy.sh")
				}
				s, err := withSettings(f, script, submoduleEntry)
				if err != nil {
					return err
				}
				hook, err := s.sr.NewRepo(RepoEvilSettings, "evil/hooks", map[string]string{"pre-deploy.sh": "#!/bin/bash\n" + f.Canary.Code() + "\n"}, Foreign)
				if err != nil {
					return err
				}
				gitmodules := "[submodule \"settings\"]\n\tpath = settings\n\turl = ../settings.git\n" +
					"[submodule \"hooks\"]\n\tpath = hooks\n\turl = " + f.Repos.URL(RepoEvilSettings) + "\n"
				sha, err := s.sr.CommitGitlinks(RepoApp, f.Hist.Head, map[string]string{"settings": s.Head, "hooks": hook},
					map[string]string{".gitmodules": gitmodules}, "add deploy hooks", Trusted)
				if err != nil {
					return err
				}
				if err := f.Repos.SetBranch(RepoApp, LegitRef, sha); err != nil {
					return err
				}
				setSha(f.Payload, sha)
				return nil
			},
			Writ: Expectation{Verdict: Admit, Reason: "writ: submodule hooks is left empty", Detail: LegitDone},
			PassThrough: func(f *Fixture, o Outcome) error {
				if !f.Canary.Fired() {
					return fmt.Errorf("the hook from the unnamed submodule did not run")
				}
				return nil
			},
			Shows: "GitLab's runner cloned the unnamed submodule and ran its hook (canary fired)",
		},
		Scenario{
			Name: "extra-source-unsigned-tip", Category: CatSource,
			Description: "The entry checks out acme/settings' main tip at tools (no submodule); GitLab's server serves an unsigned tip whose check.sh runs the canary. A job left to fetch it itself (`git clone`, as GitLab's runner would have it) runs it.",
			Mutate: func(f *Fixture) error {
				script := func() []string {
					return []string{"test -d tools || git clone -q " + f.Repos.URL(RepoSettings) + " tools", "bash tools/check.sh", LegitScript}
				}
				s, err := withSettings(f, script, func(url string) []string {
					return []string{"extra:", "  - path: tools", "    ref: refs/heads/main", "    repository: " + url, "    signers: [app-team]", "    mode: commit"}
				})
				if err != nil {
					return err
				}
				_, err = s.canarySettings(RepoSettings, "main", Unsigned)
				return err
			},
			Writ: refuse("signature", "source.extra tools (https://"),
		},
	)
}
