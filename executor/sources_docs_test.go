package executor

import (
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// docsExtraEntry is the worked example of docs/allowlist.md's section on
// source.extra: a deploy repository whose settings are a submodule.
func docsExtraEntry() *allowlist.Entry {
	return &allowlist.Entry{
		Name: "infra-deploy-production",
		Match: allowlist.Match{Project: "acme/identity-devops", Job: "deploy", Environments: []string{"production"},
			Refs: []string{"refs/heads/main"}},
		Definition: allowlist.Definition{Script: []string{
			"git -C settings checkout main",
			"terraform -chdir=terraform plan -var-file=../settings/production.tfvars -out=plan.tfplan",
		}},
		Source: allowlist.Source{
			Repository: "https://gitlab.example.com/acme/identity-devops.git", Signers: []string{"infra-team"}, Mode: allowlist.ModeCommit,
			Git: allowlist.GitReadOnly,
			Extra: []*allowlist.ExtraSource{{
				Path: "settings", Ref: "refs/heads/main", Submodule: true,
				Policy: allowlist.Source{Repository: "https://gitlab.example.com/acme/identity-settings.git",
					Signers: []string{"settings-owners"}, Mode: allowlist.ModeCommit},
			}, {
				Path: "vendor/modules", Ref: "refs/tags/v3.2.0",
				Policy: allowlist.Source{Repository: "https://gitlab.example.com/acme/terraform-modules.git",
					Signers: []string{"infra-team"}, Mode: allowlist.ModeTag},
			}},
		},
	}
}

// TestDocsExtraSources: docs/allowlist.md's worked example is what writ
// writes for the entry, and it parses; the job log lines are what writ
// prints when it admits and checks out such a job.
func TestDocsExtraSources(t *testing.T) {
	e := docsExtraEntry()
	text, err := allowlist.MarshalEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	key := testkeys.SSHKey(t, "dev@example.com").AllowedSignersLine("")
	doc := "schema: writ/v2\nrepository: acme/deploy-allowlist\nversion: 7\nexpires: 2099-01-01T00:00:00Z\nsigners:\n" +
		"  infra-team:\n    ssh: [" + q(key) + "]\n  settings-owners:\n    ssh: [" + q(key) + "]\njobs:\n" + string(text)
	if _, warns, err := allowlist.Lint(allowlist.FileName, []byte(doc), nil); err != nil || len(warns) > 0 {
		t.Fatalf("the docs example does not lint clean: %v %v\n%s", err, warns, doc)
	}
	docsFenced(t, "allowlist.md", "source-extra-entry", "yaml", string(text))

	s := &Snapshot{Entry: e, Environment: "production", Allowlist: AllowlistRef{Version: 7, Commit: "9d1e0c4a2b33f0e1d2c3b4a5968778695a4b3c2d"},
		Repository: e.Source.Repository, Commit: "3f2a9c1d0b7e4f5a6b7c8d9e0f1a2b3c4d5e6f70",
		Signer: "ssh SHA256:hZarcUr+9NDwul+vIePVvqWLD8No7gf+nCYUXElRyoA (dev@example.com)",
		Sources: []VerifiedSource{
			{Path: "settings", Repository: e.Source.Extra[0].Policy.Repository, Ref: "refs/heads/main", Submodule: true,
				Commit: "8b1f0e2d3c4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c", Signer: "ssh SHA256:Qm9vB0b5TW5kW3h6cGx0RXhhbXBsZUtleUZvckRvY3M (ops@example.com)"},
			{Path: "vendor/modules", Repository: e.Source.Extra[1].Policy.Repository, Ref: "refs/tags/v3.2.0",
				Commit: "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d", Signer: "ssh SHA256:hZarcUr+9NDwul+vIePVvqWLD8No7gf+nCYUXElRyoA (dev@example.com)"},
		}}
	var b strings.Builder
	writeAdmitted(&b, s, "")
	b.WriteString("…\n")
	for _, v := range s.Sources {
		writeExtraCheckedOut(&b, v)
	}
	writeSubmoduleEmpty(&b, "docs/theme")
	docsBlock(t, "allowlist.md", "source-extra-log", b.String())
}
