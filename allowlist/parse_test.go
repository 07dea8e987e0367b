package allowlist

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// exampleDir holds the complete example allowlist shown in docs/allowlist.md.
const exampleDir = "testdata/example"

// dirLoader loads key files from a directory, as writ does from a checkout.
func dirLoader(dir string) FileLoader {
	return func(p string) ([]byte, error) {
		if !filepath.IsLocal(p) {
			return nil, errors.New("path outside the repository")
		}
		return os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
	}
}

func parseExample(t testing.TB) *Allowlist {
	t.Helper()
	data, err := os.ReadFile(path.Join(exampleDir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	a, warns, err := Lint(FileName, data, dirLoader(exampleDir))
	if err != nil {
		t.Fatalf("example does not parse:\n%v", err)
	}
	if len(warns) > 0 {
		t.Fatalf("example has warnings:\n%v", warns)
	}
	return a
}

func TestExample(t *testing.T) {
	t.Parallel()
	a := parseExample(t)
	armored, err := os.ReadFile(filepath.Join(exampleDir, "keys", "alice.asc"))
	if err != nil {
		t.Fatal(err)
	}
	const bob = "bob@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjIOV/BS6JM97dS43zzOp7fyifDILED8hT/pHDdvUO9"
	img := "registry.example.com/deploy@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	want := &Allowlist{
		Schema:     SchemaV2,
		Repository: "acme/deploy-allowlist",
		Version:    7,
		Expires:    time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC),
		Signers: map[string]*SignerSet{
			"web-team": {
				Name: "web-team",
				OpenPGP: []OpenPGPKey{{
					Fingerprint: "40C8C819C0DCCD991D8E05859F55F7974B5C971B",
					File:        "keys/alice.asc",
					Armored:     armored,
				}},
				SSH: []string{`bob@example.com namespaces="git" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjIOV/BS6JM97dS43zzOp7fyifDILED8hT/pHDdvUO9`},
				Pos: Pos{10, 3},
			},
			"release-managers": {Name: "release-managers", SSH: []string{bob}, Pos: Pos{16, 3}},
		},
		Jobs: []*Entry{
			{
				Name:  "web-deploy-production",
				Match: Match{Project: "acme/web", Job: "deploy", Environments: []string{"production"}, Refs: []string{"refs/heads/main"}},
				Definition: Definition{
					Image: img,
					Script: []string{
						`./deploy.sh --target "$DEPLOY_TARGET" --release "$RELEASE"`,
						"if [ -n \"$NOTIFY\" ]; then\n  ./notify.sh \"deployed $RELEASE\"\nfi\n",
					},
					AfterScript: []string{"./cleanup.sh"},
					Variables: []Variable{
						{Name: "DEPLOY_TARGET", Value: "web-prod", HasValue: true},
						{Name: "RELEASE", Pattern: `^v[0-9]+\.[0-9]+\.[0-9]+$`},
						{Name: "NOTIFY", Value: "", HasValue: true},
					},
					Timeout: 15 * time.Minute,
				},
				Source: Source{
					Repository:   "https://gitlab.example.com/acme/web.git",
					Signers:      []string{"web-team"},
					Mode:         ModeCommit,
					DescendsFrom: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
				},
				Pos: Pos{21, 5},
			},
			{
				Name:  "web-deploy-staging",
				Match: Match{Project: "acme/web", Job: "deploy", Environments: []string{"staging"}, Refs: []string{"refs/heads/main", "refs/heads/release"}},
				Definition: Definition{
					Image:     img,
					Services:  []string{"registry.example.com/postgres:16@sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"},
					Script:    []string{"./deploy.sh --target web-staging"},
					Variables: []Variable{{Name: "KUBECONFIG", Pattern: `^apiVersion: v1\n(.|\n)*$`, File: true}},
					Artifacts: true,
					Cache:     true,
				},
				Source: Source{Repository: "git@gitlab.example.com:acme/web.git", Signers: []string{"web-team"}, Mode: ModeStrict},
				Pos:    Pos{47, 5},
			},
			{
				Name:       "infra-release",
				Match:      Match{Project: "acme/infra", Job: "release: tag", Environments: []string{"production", "staging"}, Refs: []string{"refs/tags/v1.4.0"}},
				Definition: Definition{Script: []string{"make release"}, Dependencies: true},
				Source: Source{
					Repository: "ssh://git@gitlab.example.com/acme/infra.git",
					Signers:    []string{"release-managers"},
					Mode:       ModeTag,
					Pin:        "3f786850e387550fdab836ed7e6dc881de23001b",
				},
				Pos: Pos{68, 5},
			},
		},
	}
	if !reflect.DeepEqual(a, want) {
		for i := range want.Jobs {
			if i < len(a.Jobs) && !reflect.DeepEqual(a.Jobs[i], want.Jobs[i]) {
				t.Errorf("job %d:\n got %#v\nwant %#v", i, a.Jobs[i], want.Jobs[i])
			}
		}
		for k := range want.Signers {
			if !reflect.DeepEqual(a.Signers[k], want.Signers[k]) {
				t.Errorf("signers %s:\n got %#v\nwant %#v", k, a.Signers[k], want.Signers[k])
			}
		}
		t.Fatalf("example parsed differently from what it says")
	}
	if strings.Contains(string(armored), "PRIVATE") {
		t.Fatal("example key file holds a private key")
	}
}

// TestDocsShowTheExample keeps docs/allowlist.md's example identical to
// the example file the tests parse.
func TestDocsShowTheExample(t *testing.T) {
	t.Parallel()
	md, err := os.ReadFile(filepath.Join("..", "docs", "allowlist.md"))
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(path.Join(exampleDir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "## A complete example")
	if !ok {
		t.Fatal("docs/allowlist.md has no \"## A complete example\" section")
	}
	_, block, ok := strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("the example section has no yaml block")
	}
	block, _, _ = strings.Cut(block, "```\n")
	if block != string(example) {
		t.Fatalf("docs/allowlist.md's example differs from %s/%s", exampleDir, FileName)
	}
}
