package allowlist

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// clearPos zeroes the positions Parse records, which Marshal changes.
func clearPos(a *Allowlist) *Allowlist {
	for _, s := range a.Signers {
		s.Pos = Pos{}
	}
	for _, s := range a.VariableSets {
		s.Pos = Pos{}
	}
	for _, e := range a.Jobs {
		e.Pos = Pos{}
		for _, x := range e.Source.Extra {
			x.Pos = Pos{}
		}
	}
	return a
}

func requireSame(t testing.TB, got, want *Allowlist) {
	t.Helper()
	clearPos(got)
	clearPos(want)
	if !got.Expires.Equal(want.Expires) {
		t.Fatalf("expires %v, want %v", got.Expires, want.Expires)
	}
	g, w := *got, *want
	g.Expires, w.Expires = time.Time{}, time.Time{}
	if reflect.DeepEqual(&g, &w) {
		return
	}
	for i := range w.Jobs {
		if i >= len(g.Jobs) || !reflect.DeepEqual(g.Jobs[i], w.Jobs[i]) {
			var ge *Entry
			if i < len(g.Jobs) {
				ge = g.Jobs[i]
			}
			t.Fatalf("entry %d differs:\n got %#v\nwant %#v", i, ge, w.Jobs[i])
		}
	}
	t.Fatalf("allowlists differ:\n got %#v\nwant %#v", &g, &w)
}

// mapLoader serves key files from memory.
func mapLoader(files map[string][]byte) FileLoader {
	return func(p string) ([]byte, error) {
		if b, ok := files[p]; ok {
			return b, nil
		}
		return nil, os.ErrNotExist
	}
}

func TestMarshalExampleRoundTrip(t *testing.T) {
	t.Parallel()
	a := parseExample(t)
	out, err := Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("marshalled.yaml", out, dirLoader(exampleDir))
	if err != nil {
		t.Fatalf("Parse(Marshal(example)):\n%v\n---\n%s", err, out)
	}
	requireSame(t, b, parseExample(t))
	// Marshal is deterministic and a fixed point.
	again, err := Marshal(b)
	if err != nil || string(again) != string(out) {
		t.Fatalf("Marshal is not stable:\n%s\n---\n%s", out, again)
	}
}

// minimalHeader is the top of an allowlist that MarshalEntry output is appended to.
const minimalHeader = "schema: writ/v2\nrepository: acme/deploy-allowlist\nversion: 7\nexpires: 2027-03-01T00:00:00Z\n"

func TestMarshalEntryRoundTrip(t *testing.T) {
	t.Parallel()
	a := parseExample(t)
	for _, e := range a.Jobs {
		out, err := MarshalEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(out), "  - name: "+e.Name+"\n") {
			t.Fatalf("entry does not start as a jobs list item:\n%s", out)
		}
		// Keep only the signer sets this entry uses (unused sets warn).
		doc := minimalHeader + "signers:\n"
		for _, s := range e.Source.Signers {
			doc += "  " + s + ":\n    ssh: [" + bobSSH + "]\n"
		}
		doc += "jobs:\n" + string(out)
		b, err := Parse(FileName, []byte(doc), nil)
		if err != nil {
			t.Fatalf("Parse(entry %s):\n%v\n---\n%s", e.Name, err, doc)
		}
		clearPos(b)
		e2 := *e
		e2.Pos = Pos{}
		if !reflect.DeepEqual(b.Jobs[0], &e2) {
			t.Fatalf("entry %s round trip:\n got %#v\nwant %#v", e.Name, b.Jobs[0], &e2)
		}
	}
}

func TestMarshalEntryStyles(t *testing.T) {
	t.Parallel()
	e := &Entry{
		Name:  "web",
		Match: Match{Project: "acme/web", Job: "deploy: prod", Environments: []string{"production"}, Refs: []string{"refs/heads/main", "refs/tags/v1.0"}},
		Definition: Definition{
			Script: []string{
				"./deploy.sh --target web",
				"echo \"line one\"\necho two\n",
				"echo \u202e hidden",
				"true",
				"1.0",
				"sed 's/\\./x/'",
				"printf 'a\\tb'\t",
			},
			Variables: []Variable{
				{Name: "RELEASE", Pattern: `^v[0-9]+\.[0-9]+$`},
				{Name: "EMPTY", HasValue: true},
			},
			Timeout: 90 * time.Minute,
		},
		Source: Source{Repository: "git@gitlab.example.com:acme/web.git", Signers: []string{"web-team"}, Mode: ModeCommit},
	}
	out, err := MarshalEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"      job: 'deploy: prod'\n",
		"      refs: [refs/heads/main, refs/tags/v1.0]\n",
		"        - ./deploy.sh --target web\n",
		"        - |\n          echo \"line one\"\n          echo two\n",
		`        - "echo \u202E hidden"` + "\n",
		"        - 'true'\n",
		"        - '1.0'\n",
		`        - sed 's/\./x/'` + "\n",
		`        - "printf 'a\\tb'\t"` + "\n",
		`        RELEASE: {pattern: '^v[0-9]+\.[0-9]+$'}` + "\n",
		"        EMPTY: {value: ''}\n",
		"      timeout: 1h30m\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if errs := CheckText(out); len(errs) > 0 {
		t.Fatalf("MarshalEntry wrote characters CheckText refuses: %v\n%s", errs, out)
	}
}

func TestMarshalRefusesInvalidUTF8(t *testing.T) {
	t.Parallel()
	e := &Entry{Name: "x", Definition: Definition{Script: []string{"a\xffb"}}}
	if _, err := MarshalEntry(e); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("err = %v", err)
	}
	if _, err := MarshalEntry(nil); err == nil {
		t.Fatal("nil entry marshalled")
	}
	if _, err := Marshal(nil); err == nil {
		t.Fatal("nil allowlist marshalled")
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		15 * time.Minute:                  "15m",
		90 * time.Minute:                  "1h30m",
		24 * time.Hour:                    "24h",
		time.Hour + time.Second:           "1h1s",
		1500 * time.Millisecond:           "1.5s",
		2*time.Minute + 30*time.Second:    "2m30s",
		10*time.Second + time.Millisecond: "10.001s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(formatDuration(d)); err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v", formatDuration(d), back, err)
		}
	}
}

// trickyStrings exercise every quoting decision of Marshal.
var trickyStrings = []string{
	"plain", "./deploy.sh --target web", "a: b", "a:", "a #b", "#c", "- x", "-x", "? x", "[x]", "{x}",
	"'", "\"", "''", "\\", "a\\nb", "true", "True", "yes", "No", "on", "null", "~", "<<", "=",
	"1", "1.0", "0x1F", "1_000", ".5", ".inf", "+1", "2024-01-01", "2024-01-01T00:00:00Z", "@x", "`x`", "%x",
	"&a", "*a", "!a", "|", ">", " lead", "trail ", " ", "", "a\tb", "a\rb", "\n", "a\n", "a\n\n", "\na", "a\nb",
	" a\nb", "a \nb", "a\n b\n", "x\n\ny\n", "é", "日本", "a\u00a0b", "a\u202eb", "a\u200bb", "\ufeff", "a\U000E0041",
	"a\x1bb", "a\x7fb", "a\u0085b", "a\u2028b", "\U0001F600", "a,b", "a]b", "a}b", "x: |", "---", "...", "--- x",
	"#!/bin/sh\nset -eu\n", "echo $HOME", "${X:-y}", "a  b", "a\u3000b", "\ufdd0", "a'b\"c",
}

func randomString(r *rand.Rand) string {
	if r.Intn(3) == 0 {
		return trickyStrings[r.Intn(len(trickyStrings))]
	}
	var b strings.Builder
	for n := r.Intn(12); n > 0; n-- {
		b.WriteString(trickyStrings[r.Intn(len(trickyStrings))])
	}
	return b.String()
}

func randomHex(r *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[r.Intn(16)]
	}
	return string(b)
}

// randomAllowlist makes a valid allowlist whose strings are as awkward as
// the schema allows.
func randomAllowlist(r *rand.Rand, armored []byte) (*Allowlist, map[string][]byte) {
	files := map[string][]byte{}
	a := &Allowlist{
		Schema:     SchemaV2,
		Repository: "acme/" + randomHex(r, 6),
		Version:    r.Int63n(1<<62) + 1,
		Expires:    time.Unix(r.Int63n(1<<33), int64(r.Intn(1e9))).UTC(),
		Signers:    map[string]*SignerSet{},
	}
	nsets := 1 + r.Intn(3)
	var sets []string
	for i := 0; i < nsets; i++ {
		name := fmt.Sprintf("set-%d.%s", i, randomHex(r, 3))
		s := &SignerSet{Name: name}
		if r.Intn(2) == 0 {
			file := fmt.Sprintf("keys/k%d.asc", i)
			files[file] = armored
			s.OpenPGP = []OpenPGPKey{{Fingerprint: "40C8C819C0DCCD991D8E05859F55F7974B5C971B", File: file, Armored: armored}}
		}
		if len(s.OpenPGP) == 0 || r.Intn(2) == 0 {
			opts := []string{"", `namespaces="git" `, `namespaces="file,git",valid-after="20240101Z" `}[r.Intn(3)]
			s.SSH = []string{"bob@example.com " + opts + strings.TrimPrefix(bobSSH, "bob@example.com ")}
		}
		a.Signers[name] = s
		sets = append(sets, name)
	}
	for i, n := 0, r.Intn(6); i < n; i++ {
		e := &Entry{
			Name: fmt.Sprintf("e%d-%s", i, randomHex(r, 4)),
			Match: Match{
				Project:      "grp/app" + randomHex(r, 2),
				Job:          fmt.Sprintf("job %d %s", i, strings.ReplaceAll(randomString(r), "\x00", "")),
				Environments: []string{"production"},
				Refs:         []string{"refs/heads/main"},
			},
		}
		if len(e.Match.Job) > 255 || !utf8.ValidString(e.Match.Job) {
			e.Match.Job = fmt.Sprintf("job %d", i)
		}
		if r.Intn(2) == 0 {
			e.Match.Environments = append(e.Match.Environments, "staging")
			e.Match.Refs = append(e.Match.Refs, "refs/tags/v1.2.3", "refs/heads/feature/x")
		}
		d := &e.Definition
		for j, n := 0, 1+r.Intn(5); j < n; j++ {
			d.Script = append(d.Script, randomString(r))
		}
		for j, n := 0, r.Intn(3); j < n; j++ {
			d.AfterScript = append(d.AfterScript, randomString(r))
		}
		if r.Intn(2) == 0 {
			d.Image = "registry.example.com:5000/team/img:1.0@sha256:" + randomHex(r, 64)
			d.Services = []string{"postgres@sha256:" + randomHex(r, 64)}
		}
		for j, n := 0, r.Intn(4); j < n; j++ {
			v := Variable{Name: fmt.Sprintf("V_%d", j)}
			if r.Intn(2) == 0 {
				v.Value, v.HasValue = randomString(r), true
			} else {
				v.Pattern = []string{`^v[0-9]+\.[0-9]+$`, `^(a|b)$`, `^$`, `^[^']*"x"\\$`, "^\u00e9+$"}[r.Intn(5)]
			}
			v.File = r.Intn(2) == 0
			// A pinned value with "$" refers to names the entry does not
			// admit unless it is raw.
			v.Raw = r.Intn(4) == 0 || strings.Contains(v.Value, "$")
			if r.Intn(3) == 0 {
				v.Name, v.Dangerous = fmt.Sprintf("LD_%d", j), true
			}
			d.Variables = append(d.Variables, v)
		}
		if r.Intn(3) == 0 {
			// A set of the allowlist's, included by this entry.
			if a.VariableSets == nil {
				a.VariableSets = map[string]*VariableSet{}
			}
			name := fmt.Sprintf("set-%d", i)
			set := &VariableSet{Name: name, Variables: []Variable{
				{Name: fmt.Sprintf("S%d_ACCOUNT", i), Value: randomHex(r, 12), HasValue: true},
				{Name: fmt.Sprintf("S%d_ROLE", i), Value: fmt.Sprintf("arn:aws:iam::${S%d_ACCOUNT}:role/x", i), HasValue: true},
			}}
			a.VariableSets[name] = set
			d.VariableSets = []string{name}
			d.Included = set.Variables
			d.Variables = append(d.Variables, Variable{Name: "IMAGE_DIGEST", Value: "sha256:" + randomHex(r, 64), HasValue: true})
			d.Image = "registry.example.com/team/img@$IMAGE_DIGEST"
		}
		if r.Intn(2) == 0 {
			d.Timeout = time.Duration(1+r.Int63n(int64(24*time.Hour)/int64(time.Millisecond))) * time.Millisecond
		}
		d.Artifacts, d.Cache, d.Dependencies = r.Intn(2) == 0, r.Intn(2) == 0, r.Intn(2) == 0
		e.Source = Source{
			Repository: []string{"https://gitlab.example.com/acme/web.git", "git@host:acme/web.git", "ssh://git@host:2222/acme/web.git", "file:///srv/git/web.git"}[r.Intn(4)],
			Signers:    []string{sets[r.Intn(len(sets))]},
			Mode:       []SourceMode{ModeCommit, ModeTag, ModeStrict}[r.Intn(3)],
		}
		if e.Source.Mode == ModeTag {
			// Tag mode admits tags only.
			e.Match.Refs = []string{"refs/tags/v1.0"}
		}
		if r.Intn(2) == 0 {
			e.Source.Pin = randomHex(r, []int{40, 64}[r.Intn(2)])
			e.Source.DescendsFrom = randomHex(r, 40)
			e.Source.AllowRollback = true
		}
		a.Jobs = append(a.Jobs, e)
	}
	// Drop unused sets, which would only warn, and nil the empty maps the
	// way Parse leaves them.
	used := map[string]bool{}
	for _, e := range a.Jobs {
		for _, s := range e.Source.Signers {
			used[s] = true
		}
	}
	for n := range a.Signers {
		if !used[n] {
			delete(a.Signers, n)
		}
	}
	return a, files
}

func TestMarshalRoundTripProperty(t *testing.T) {
	t.Parallel()
	armored, err := os.ReadFile(filepath.Join(exampleDir, "keys", "alice.asc"))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 500; i++ {
		a, files := randomAllowlist(r, armored)
		out, err := Marshal(a)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if errs := CheckText(out); len(errs) > 0 {
			t.Fatalf("case %d: Marshal wrote refused characters: %v\n%s", i, errs, out)
		}
		b, warns, err := Lint(FileName, out, mapLoader(files))
		if err != nil || len(warns) > 0 {
			t.Fatalf("case %d: Parse(Marshal(a)): %v %v\n---\n%s", i, err, warns, out)
		}
		requireSame(t, b, a)
	}
}
