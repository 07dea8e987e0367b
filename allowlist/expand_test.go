package allowlist

import (
	"slices"
	"strings"
	"testing"
)

// TestExpand pins the runner's expansion rules (GitLab Runner's
// Variables.ExpandValue: os.Expand with its own lookup of the shell's
// special names), which writ must reproduce byte for byte.
func TestExpand(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"A": "a", "B": "b", "A_B": "ab", "EMPTY": "", "REF": "$A", "-": "dash", "A:-d": "odd"}
	lookup := func(n string) string { return vars[n] }
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"$A", "a"},
		{"${A}", "a"},
		{"$A$B", "ab"},
		{"x${A}y", "xay"},
		{"$A_B-c", "ab-c"},   // names run over letters, digits and _
		{"${A}_B", "a_B"},    // braces end the name
		{"$REF", "$A"},       // one level: a value is not expanded again
		{"$$", "$"},          // $$ is a literal $
		{"$$A", "$A"},        // and does not start a reference
		{"$$$A", "$a"},       // $$ then $A
		{"a$", "a$"},         // a final $ stays
		{"a$ b", "a$ b"},     // a $ before no name stays
		{"$é", "$é"},         // a non-ASCII letter is no name
		{"$1$*$#$@$!$?", ""}, // the shell's special names are empty
		{"${1}x", "x"},
		{"$0", ""},
		{"$-", "dash"},       // "-" is looked up like any name
		{"${A:-d}", "odd"},   // no shell defaults: the name is "A:-d"
		{"${MISSING}x", "x"}, // unknown names are empty
		{"${", ""},           // unclosed: eaten
		{"a${}b", "ab"},      // empty braces: eaten
		{"${A", "A"},         // "${" eaten, the rest stays
		{"$EMPTY.", "."},
	} {
		if got := Expand(c.in, lookup); got != c.want {
			t.Errorf("Expand(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestReferences(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"no refs $$A $1 ${2} $", nil},
		{"$A ${B} $A $$C", []string{"A", "B"}},
		{"${A:-x}$-", []string{"A:-x", "-"}},
		{"arn:aws:iam::${ACCOUNT}:role/$ROLE", []string{"ACCOUNT", "ROLE"}},
	} {
		if got := References(c.in); !slices.Equal(got, c.want) {
			t.Errorf("References(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// FuzzExpand: expansion never panics; References names exactly what
// Expand looks up; text without "$" is unchanged; and doubling every "$"
// makes any text literal, which is the advice writ's messages give.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"$A", "${A}", "$$", "${", "${}", "a$", "$1", "${A:-b}", "$é$-", "x${A}${B}$$C$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var looked []string
		out := Expand(s, func(n string) string {
			if !slices.Contains(looked, n) {
				looked = append(looked, n)
			}
			return "<" + n + ">"
		})
		if got, ok := ExpandMax(s, func(n string) string { return "<" + n + ">" }, len(s)*4+16); !ok || got != out {
			t.Fatalf("ExpandMax(%q) = %q %v, Expand %q", s, got, ok, out)
		}
		if refs := References(s); !slices.Equal(refs, looked) {
			t.Fatalf("References(%q) = %q, Expand looked up %q", s, refs, looked)
		}
		if !strings.Contains(s, "$") && out != s {
			t.Fatalf("Expand changed %q to %q", s, out)
		}
		escaped := strings.ReplaceAll(s, "$", "$$")
		if got := Expand(escaped, func(n string) string { t.Fatalf("looked up %q in escaped %q", n, escaped); return "" }); got != s {
			t.Fatalf("Expand(%q) = %q, want the literal %q", escaped, got, s)
		}
	})
}

func TestExpandMaxBounds(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 1000)
	if out, ok := ExpandMax(strings.Repeat("$A", 1000), func(string) string { return long }, 10000); ok || len(out) > 12000 {
		t.Errorf("ok %v, %d bytes", ok, len(out))
	}
	d := &Definition{Variables: []Variable{{Name: "A", Value: long, HasValue: true}, {Name: "B", Value: strings.Repeat("$A", 100), HasValue: true}}}
	if _, err := ExpandImage(d, "x@$B"); err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Errorf("image through B: %v", err)
	}
	if _, err := ExpandImage(d, strings.Repeat("$A", 100)); err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Errorf("image: %v", err)
	}
}
