package executor

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"gitlab.com/writ-ci/writ/allowlist"
	"gitlab.com/writ-ci/writ/internal/config"
)

// BenchmarkExpandVariables: the cost of expansion at admission, against
// the definition check it follows (the anchor), for a job with 50 admitted
// variables of which half refer to others. Report the ratio of
// check+expand to check.
func BenchmarkExpandVariables(b *testing.B) {
	o := &Options{Config: &config.Config{Environment: "production"}, Stdout: os.Stdout}
	o.Config.Sandbox.UnsafeNoSandbox = true
	o.Config.Paths.Builds, o.Config.Paths.State = "/b", b.TempDir()
	e := testEntry()
	mods := []func(map[string]any){withVar("REGION", "eu")}
	for i := range 50 {
		name, value := fmt.Sprintf("V%02d", i), strings.Repeat("x", 40)
		if i%2 == 1 {
			value = fmt.Sprintf("pre-${V%02d}-$CI_COMMIT_SHA-post", i-1)
		}
		e.Definition.Variables = append(e.Definition.Variables, allowlist.Variable{Name: name, Value: value, HasValue: true})
		mods = append(mods, withVar(name, value))
	}
	p := decodeT(b, makePayload(b, 7, strings.Repeat("a", 40), e.Definition.Script, mods...))
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			d := &Decision{Environment: "production", Entry: e, Ref: "refs/heads/main"}
			checkDefinition(d, p, e, nil)
		}
	})
	b.Run("check+expand", func(b *testing.B) {
		for b.Loop() {
			d := &Decision{Environment: "production", Entry: e, Ref: "refs/heads/main"}
			vars := checkDefinition(d, p, e, nil)
			o.expandVariables(d, p, e, vars, o.admissionSnapshot(d, p))
			if len(d.Failures) > 0 {
				b.Fatal(d.Failures)
			}
		}
	})
}
