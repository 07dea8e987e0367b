package allowlist

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedExample is the worked example of docs/allowlist.md: the entry of
// issue 18's seed pipeline (a terraform deploy from GitLab's unsigned
// merge commits). test/e2e's TestSeedPipeline runs its entry on the real
// runner.
const seedExample = "testdata/seed/allowlist.yaml"

// TestSeedExample: the worked example is valid without warnings, is
// exactly what Marshal writes for it (so the docs show writ's own
// canonical form), and docs/allowlist.md shows it byte for byte.
func TestSeedExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(seedExample)
	if err != nil {
		t.Fatal(err)
	}
	a, warns, err := Lint(FileName, data, nil)
	if err != nil || len(warns) > 0 {
		t.Fatalf("the worked example does not lint clean:\n%v\n%v", err, warns)
	}
	if src := a.Jobs[0].Source; !src.ApprovalsOnly() || !src.ApprovedHistory() || src.Approvals.Threshold != 2 {
		t.Fatalf("the worked example's source is %+v", src)
	}
	out, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, data) {
		t.Fatalf("%s is not in writ's canonical form; Marshal writes:\n%s", seedExample, out)
	}
	md, err := os.ReadFile(filepath.Join("..", "docs", "allowlist.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(md), "## Worked example: a terraform deploy from GitLab merge commits")
	if !ok {
		t.Fatal("docs/allowlist.md has no worked-example section")
	}
	_, block, ok := strings.Cut(rest, "```yaml\n")
	if !ok {
		t.Fatal("the worked-example section has no yaml block")
	}
	block, _, _ = strings.Cut(block, "```\n")
	if block != string(data) {
		t.Fatalf("docs/allowlist.md's worked example differs from %s", seedExample)
	}
}
