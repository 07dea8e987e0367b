package config

import (
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/config.md from the config struct")

// docComments reads the doc (or line) comment of every field of every
// struct type in this package's sources, keyed "Type.Field".
func docComments(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			prev := ""
			for _, fld := range st.Fields.List {
				text := strings.TrimSpace(fld.Doc.Text())
				if text == "" {
					text = strings.TrimSpace(fld.Comment.Text())
				}
				for _, id := range fld.Names {
					// "CertFile and KeyFile are …" documents both fields.
					if text == "" && strings.Contains(prev, id.Name) {
						text = prev
					}
					out[ts.Name.Name+"."+id.Name] = strings.Join(strings.Fields(text), " ")
				}
				prev = text
			}
			return false
		})
	}
	return out
}

// TestReference fails when docs/config.md differs from what the config
// struct says. Regenerate with `make docs`.
func TestReference(t *testing.T) {
	docs := docComments(t)
	got := Reference(docs)
	path := filepath.Join("..", "..", "docs", "config.md")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != string(got) {
		t.Fatalf("docs/config.md is out of date with internal/config (run `make docs`): %v", err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(got), "`"+k[strings.LastIndex(k, ".")+1:]+"`") {
			t.Errorf("key %s missing from the reference", k)
		}
	}
}

// TestEveryKeyDocumented: a key without a comment is a key nobody can
// configure with confidence.
func TestEveryKeyDocumented(t *testing.T) {
	docs := docComments(t)
	walkKeys(reflect.TypeOf(Config{}), "", func(key string, f reflect.StructField) {
		if docs[ownerOf(key)+"."+f.Name] == "" {
			t.Errorf("config key %s (%s.%s) has no doc comment: add one, it becomes its line in docs/config.md", key, ownerOf(key), f.Name)
		}
	})
}

// TestEffectiveRoundTrips: what `writ config check` prints is itself a
// valid config that means the same.
func TestEffectiveRoundTrips(t *testing.T) {
	c, err := Parse([]byte(minimalConfig + "[job.env]\nFOO = \"bar\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Effective()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(out)
	if err != nil {
		t.Fatalf("effective config does not parse: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c, c2) {
		t.Fatalf("round trip differs:\n%+v\n%+v", c, c2)
	}
}

func TestLogLevelValidated(t *testing.T) {
	if _, err := Parse([]byte(minimalConfig + "[log]\nlevel = \"verbose\"\n")); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Fatalf("log.level verbose: %v", err)
	}
}

func TestDidYouMean(t *testing.T) {
	for in, want := range map[string]string{
		"environment = \"p\"\n[allowlist]\nurll = \"x\"\n":             "allowlist.urll (did you mean allowlist.url?)",
		"environment = \"p\"\n[trust]\nurl = \"x\"\n":                  "trust.url (did you mean allowlist.url?)",
		"environment = \"p\"\n[log]\nlevle = \"debug\"\n":              "log.levle (did you mean log.level?)",
		"environment = \"p\"\n[job]\nshel = \"/bin/sh\"\n":             "job.shel (did you mean job.shell?)",
		"environment = \"p\"\n[allowlist]\ncompletely_different = 1\n": "allowlist.completely_different (docs",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want it to contain %q", in, err, want)
		}
	}
}

func TestRelativePathsResolveAgainstTheConfigFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(minimalConfig+"[paths]\nstate = \"state\"\n[log]\nfile = \"log/writ.log\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Load through a relative path from elsewhere: still the file's directory.
	t.Chdir(dir)
	c, err := Load("config.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Paths.State != filepath.Join(dir, "state") || c.Log.File != filepath.Join(dir, "log/writ.log") || !filepath.IsAbs(c.Path) {
		t.Fatalf("state %s, log %s, path %s", c.Paths.State, c.Log.File, c.Path)
	}
}

// TestDocsConfigExamplesParse: every TOML example of writ's config in docs/
// is a config writ accepts (paths aside), so no example teaches a key that
// does not exist.
func TestDocsConfigExamplesParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blocks := strings.Split(string(data), "```toml\n")
		for _, b := range blocks[1:] {
			body, _, _ := strings.Cut(b, "```")
			if !strings.HasPrefix(body, "environment =") {
				continue // a runner config.toml, not writ's
			}
			n++
			if _, err := Parse([]byte(body)); err != nil {
				t.Errorf("%s: a config example does not parse: %v\n%s", f, err, body)
			}
		}
	}
	if n < 3 {
		t.Errorf("found %d config examples in docs/, expected at least 3", n)
	}
}
