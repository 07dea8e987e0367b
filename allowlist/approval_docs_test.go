package allowlist

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsShowTheStatement keeps the statement docs/allowlist.md shows for
// its complete example identical to what writ signs for it.
func TestDocsShowTheStatement(t *testing.T) {
	t.Parallel()
	files := map[string][]byte{}
	for _, p := range []string{FileName, "keys/alice.asc"} {
		b, err := os.ReadFile(filepath.Join(exampleDir, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		files[p] = b
	}
	a, err := Parse(FileName, files[FileName], func(p string) ([]byte, error) {
		return os.ReadFile(filepath.Join(exampleDir, filepath.FromSlash(p)))
	})
	if err != nil {
		t.Fatal(err)
	}
	load, loaded := RecordLoads(func(p string) ([]byte, error) { return files[p], nil })
	if _, err := Parse(FileName, files[FileName], load); err != nil {
		t.Fatal(err)
	}
	stmt, err := VersionStatement(a, files[FileName], loaded)
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join("..", "docs", "allowlist.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "```text\n"+string(stmt)+"```\n") {
		t.Fatalf("docs/allowlist.md does not show the statement of its complete example; it is:\n%s", stmt)
	}
}

// TestDocsShowTheSourceStatement keeps the source approval statement
// docs/allowlist.md shows identical to what writ signs for it.
func TestDocsShowTheSourceStatement(t *testing.T) {
	t.Parallel()
	stmt, err := SourceStatement{Repository: "https://gitlab.example.com/acme/app.git",
		Commit: "0123456789abcdef0123456789abcdef01234567", Environments: []string{"staging", "production"}}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join("..", "docs", "allowlist.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "```text\n"+string(stmt)+"```\n") {
		t.Fatalf("docs/allowlist.md does not show the source statement; it is:\n%s", stmt)
	}
	if !strings.Contains(string(md), SourceApprovalNamespace) || !strings.Contains(string(md), SourceApprovalRefPrefix+"<commit>/<label>") {
		t.Fatal("docs/allowlist.md does not name the SSH namespace or the ref layout")
	}
}
