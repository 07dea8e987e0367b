package allowlist

import (
	"reflect"
	"strings"
	"testing"
)

// TestIncrementalExtraSourcesMove: an unchanged entry with extra sources,
// taken from the store in force after lines moved above it, has its extra
// sources at their new lines, as the full parse has them, and the store
// written is the full parse's (found by FuzzIncrementalEdits: sections kept
// the extra sources' lines of the version that wrote them).
func TestIncrementalExtraSourcesMove(t *testing.T) {
	extra := "      extra:\n        - path: settings\n          ref: refs/heads/main\n" +
		"          repository: https://gitlab.example.com/acme/settings.git\n          signers: [team]\n          mode: commit\n"
	v1 := strings.Replace(string(generatedAllowlist(50)), "      mode: commit\n", "      mode: commit\n"+extra, 20)
	_, _, prev, _ := acceptStore(t, []byte(v1), nil)
	for name, v2 := range map[string]string{
		"a comment above":        strings.Replace(v1, "version: 1\n", "version: 2\n# one line more\n", 1),
		"a key added above":      strings.Replace(v1, "version: 1\n", "version: 2\n", 1),
		"an entry added above":   strings.Replace(strings.Replace(v1, "version: 1\n", "version: 2\n", 1), "jobs:\n", "jobs:\n"+strings.NewReplacer("job-49", "job-new", "group/app-4\n", "group/app-new\n").Replace(item([]byte(v1), 49)), 1),
		"an entry removed above": strings.Replace(strings.Replace(v1, "version: 1\n", "version: 2\n", 1), item([]byte(v1), 2), "", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if name == "a key added above" {
				v2 = strings.Replace(v2, "jobs:\n", "      - "+strings.Replace(bobSSH, "AAAAIBjIOV", "AAAAIBjIOW", 1)+"\njobs:\n", 1)
			}
			inc, im, _, incStore := acceptStore(t, []byte(v2), prev)
			if reused(im) == 0 {
				t.Fatal("nothing taken from the store in force")
			}
			full, _, _, fullStore := acceptStore(t, []byte(v2), nil)
			if !reflect.DeepEqual(inc, full) {
				for i := range full.Jobs {
					if !reflect.DeepEqual(inc.Jobs[i], full.Jobs[i]) {
						t.Fatalf("entry %d differs: incremental %+v, full %+v", i, inc.Jobs[i].Source.Extra[0].Pos, full.Jobs[i].Source.Extra[0].Pos)
					}
				}
				t.Fatal("the incremental parse differs from the full parse")
			}
			if string(incStore) != string(fullStore) {
				t.Fatal("the incremental store differs from the full parse's store")
			}
		})
	}
}
