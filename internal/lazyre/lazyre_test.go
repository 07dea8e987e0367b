package lazyre

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

func TestLazy(t *testing.T) {
	r := New(`^a([0-9]+)$`)
	if !r.MatchString("a12") || r.MatchString("b12") {
		t.Error("MatchString")
	}
	if m := r.FindStringSubmatch("a7"); len(m) != 2 || m[1] != "7" {
		t.Errorf("FindStringSubmatch = %q", m)
	}
	if got := New(`[^a-z]+`).ReplaceAllString("a-b_c", "-"); got != "a-b-c" {
		t.Errorf("ReplaceAllString = %q", got)
	}
	bad := New(`(`)
	defer func() {
		if recover() == nil {
			t.Error("a bad expression did not panic at first use")
		}
	}()
	bad.MatchString("x")
}

// TestNoEagerRegexps: no package writ links compiles a regular expression
// in a var declaration (at every start of every stage); lazyre.New instead.
func TestNoEagerRegexps(t *testing.T) {
	for _, dir := range []string{"cmd", "allowlist", "executor", "internal", "sandbox"} {
		noEagerRegexps(t, filepath.Join("..", "..", dir))
	}
}

func noEagerRegexps(t *testing.T, root string) {
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "gitlabtest" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			g, ok := decl.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			ast.Inspect(g, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "regexp" && strings.HasPrefix(sel.Sel.Name, "MustCompile") {
						t.Errorf("%s: regexp.%s in a var declaration runs at every start of writ: use lazyre.New", fset.Position(call.Pos()), sel.Sel.Name)
					}
				}
				return true
			})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
