package allowlist

import (
	"fmt"
	"strings"
	"testing"
)

func TestIndexLookup(t *testing.T) {
	t.Parallel()
	a := parseExample(t)
	ix := NewIndex(a)
	for _, c := range []struct {
		project, job, env, ref string
		want                   string
	}{
		{"acme/web", "deploy", "production", "refs/heads/main", "web-deploy-production"},
		{"acme/web", "deploy", "staging", "refs/heads/main", "web-deploy-staging"},
		{"acme/web", "deploy", "staging", "refs/heads/release", "web-deploy-staging"},
		{"acme/infra", "release: tag", "production", "refs/tags/v1.4.0", "infra-release"},
		{"acme/infra", "release: tag", "staging", "refs/tags/v1.4.0", "infra-release"},
		{"acme/web", "deploy", "production", "refs/heads/release", ""}, // ref not listed for production
		{"acme/web", "deploy", "Production", "refs/heads/main", ""},    // exact, case-sensitive
		{"acme/web", "deploy ", "production", "refs/heads/main", ""},   // no trimming
		{"acme/web", "Deploy", "production", "refs/heads/main", ""},    //
		{"acme/web/", "deploy", "production", "refs/heads/main", ""},   //
		{"acme", "web\x00deploy", "production", "refs/heads/main", ""}, // separators cannot be smuggled
		{"acme/web", "deploy", "production", "main", ""},               // short names never match
		{"acme/web", "deploy", "production", "refs/tags/main", ""},     // nor a tag of the branch's name
		{"", "", "", "", ""},
	} {
		e, ok := ix.Lookup(c.project, c.job, c.env, c.ref)
		if got := ""; ok {
			got = e.Name
			if got != c.want {
				t.Errorf("Lookup(%q, %q, %q, %q) = %s, want %q", c.project, c.job, c.env, c.ref, got, c.want)
			}
		} else if c.want != "" {
			t.Errorf("Lookup(%q, %q, %q, %q) found nothing, want %s", c.project, c.job, c.env, c.ref, c.want)
		}
	}
	near := ix.Near("acme/web", "deploy")
	if len(near) != 2 || near[0].Name != "web-deploy-production" || near[1].Name != "web-deploy-staging" {
		t.Fatalf("Near = %v", near)
	}
	near[0] = nil // the caller's copy; the index must not change
	if ix.Near("acme/web", "deploy")[0] == nil {
		t.Fatal("Near returned the index's own slice")
	}
	if len(ix.Near("acme/web", "build")) != 0 {
		t.Fatal("Near found entries for another job")
	}
	if e, ok := ix.Entry("infra-release"); !ok || e.Match.Project != "acme/infra" {
		t.Fatal("Entry(infra-release) not found")
	}
	if _, ok := ix.Entry("nope"); ok {
		t.Fatal("Entry(nope) found")
	}
}

func TestIndexFailsClosedOnAmbiguity(t *testing.T) {
	t.Parallel()
	// Parse refuses overlapping entries; an Allowlist built in code can
	// still hold them, and then neither may be selected.
	mk := func(name string, refs ...string) *Entry {
		return &Entry{Name: name, Match: Match{Project: "a/b", Job: "j", Environments: []string{"prod"}, Refs: refs}}
	}
	ix := NewIndex(&Allowlist{Jobs: []*Entry{mk("one", "main", "x"), mk("two", "main", "y"), mk("one", "z"), nil}})
	if e, ok := ix.Lookup("a/b", "j", "prod", "main"); ok {
		t.Fatalf("ambiguous lookup selected %s", e.Name)
	}
	if e, ok := ix.Lookup("a/b", "j", "prod", "y"); !ok || e.Name != "two" {
		t.Fatal("unambiguous lookup failed")
	}
	if _, ok := ix.Entry("one"); ok {
		t.Fatal("duplicate name selected")
	}
	if len(ix.Near("a/b", "j")) != 3 {
		t.Fatal("Near lost entries")
	}
	if _, ok := NewIndex(nil).Lookup("a/b", "j", "prod", "main"); ok {
		t.Fatal("empty index matched")
	}
}

// generatedAllowlist returns an allowlist text with n entries over n/10 projects.
func generatedAllowlist(n int) []byte {
	var b strings.Builder
	b.WriteString("schema: writ/v2\nrepository: acme/deploy-allowlist\nversion: 1\nexpires: 2027-03-01T00:00:00Z\n")
	b.WriteString("signers:\n  team:\n    ssh:\n      - " + bobSSH + "\njobs:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `  - name: job-%d
    match:
      project: group/app-%d
      job: deploy-%d
      environments: [production, staging]
      refs: [refs/heads/main, refs/heads/release]
    definition:
      image: registry.example.com/deploy@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      script:
        - ./deploy.sh --target app-%d
        - ./verify.sh
      variables:
        RELEASE: {pattern: '^v[0-9]+$'}
      timeout: 15m
    source:
      repository: https://gitlab.example.com/group/app-%d.git
      signers: [team]
      mode: commit
`, i, i/10, i%10, i, i/10)
	}
	return []byte(b.String())
}

func TestGeneratedAllowlist(t *testing.T) {
	t.Parallel()
	a, err := Parse(FileName, generatedAllowlist(1000), nil)
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(a)
	if e, ok := ix.Lookup("group/app-42", "deploy-3", "staging", "refs/heads/release"); !ok || e.Name != "job-423" {
		t.Fatalf("lookup: %v %v", e, ok)
	}
}

func BenchmarkParseIndex10000(b *testing.B) {
	data := generatedAllowlist(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, err := Parse(FileName, data, nil)
		if err != nil {
			b.Fatal(err)
		}
		NewIndex(a)
	}
}

func BenchmarkLookup(b *testing.B) {
	a, err := Parse(FileName, generatedAllowlist(10000), nil)
	if err != nil {
		b.Fatal(err)
	}
	ix := NewIndex(a)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := ix.Lookup("group/app-542", "deploy-3", "staging", "release"); !ok {
			b.Fatal("not found")
		}
	}
}
