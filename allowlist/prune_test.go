package allowlist

import (
	"os"
	"path/filepath"
	"testing"

	"gitlab.com/writ-ci/writ/internal/config"
)

// TestPruneStoresRemovesKilledWrites: what a writer killed mid-store leaves
// in the cache (the sections' temp file and the store's own atomic-write
// temp file, each as large as a store) is removed at the next acceptance;
// the store in force stays.
func TestPruneStoresRemovesKilledWrites(t *testing.T) {
	dir := t.TempDir()
	a := &Accepter{cfg: &config.Config{Paths: config.Paths{Cache: dir}}}
	keep, old := "aa", "bb"
	files := map[string]bool{
		filepath.Base(a.cachePath(keep)):                   true,
		filepath.Base(a.cachePath(old)):                    false,
		".allowlist-sections-123":                          false,
		"." + filepath.Base(a.cachePath(old)) + ".tmp-456": false,
		"unrelated": true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a.pruneStores(keep)
	for name, stays := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if exists := err == nil; exists != stays {
			t.Errorf("%s: exists %v, want %v", name, exists, stays)
		}
	}
}
