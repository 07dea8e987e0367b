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
