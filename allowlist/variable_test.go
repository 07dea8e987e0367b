package allowlist

import "testing"

func TestVariableAllows(t *testing.T) {
	t.Parallel()
	semver := Variable{Name: "RELEASE", Pattern: `^v[0-9]+\.[0-9]+\.[0-9]+$`}
	pinned := Variable{Name: "TARGET", Value: "web-prod", HasValue: true}
	empty := Variable{Name: "EMPTY", HasValue: true}
	for _, c := range []struct {
		v     Variable
		value string
		want  bool
	}{
		{semver, "v1.2.3", true},
		{semver, "v1.2.3\n", false},         // $ is \z, not "end of line"
		{semver, "v1.2.3\nrm -rf /", false}, // no partial match across lines
		{semver, "xv1.2.3", false},          // anchored at the start
		{semver, "v1.2.3x", false},          // anchored at the end
		{semver, "v1.2", false},             //
		{pinned, "web-prod", true},          //
		{pinned, "web-prod ", false},        // byte for byte
		{pinned, "WEB-PROD", false},         // no case folding
		{pinned, "web\u2010prod", false},    // no normalisation (U+2010 HYPHEN)
		{empty, "", true},                   //
		{empty, " ", false},                 //
		{Variable{Name: "X"}, "", false},    // neither value nor pattern
		{Variable{Name: "X", HasValue: true, Value: "a", Pattern: "^a$"}, "a", false}, // both
		{Variable{Name: "X", Pattern: `^a|b$`}, "ab", false},                          // refused pattern allows nothing
		{Variable{Name: "X", Pattern: `^a|b$`}, "a", false},                           //
		{Variable{Name: "X", Pattern: `(?m)^a$`}, "a", false},                         //
		{Variable{Name: "X", Pattern: `^(a$`}, "a", false},                            // does not compile
		{Variable{Name: "X", Pattern: `^(a|b)$`}, "b", true},                          //
		{Variable{Name: "X", Pattern: `^(a|b)$`}, "ab", false},                        //
		{Variable{Name: "X", Pattern: `^.*$`}, "any\nthing", false},                   // . does not match \n
		{Variable{Name: "X", Pattern: `^(?s).*$`}, "any\nthing", true},                // unless asked to
	} {
		// Twice: the second call uses the cached compiled pattern.
		for i := 0; i < 2; i++ {
			if got := c.v.Allows(c.value); got != c.want {
				t.Errorf("%+v.Allows(%q) = %v, want %v", c.v, c.value, got, c.want)
			}
		}
	}
}
