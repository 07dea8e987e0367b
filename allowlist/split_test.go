package allowlist

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// wholeParse is the whole-file parse, whatever the size.
func wholeParse(data []byte, load FileLoader) (*Allowlist, ErrorList, error) {
	p := &parser{file: FileName, data: data, load: load}
	a := p.run()
	errs, warns := p.finish()
	if len(errs) > 0 {
		return nil, warns, errs
	}
	return a, warns, nil
}

// checkSplit asserts the property the split parse rests on: when it
// succeeds, the whole-file parse succeeds too, with the same allowlist.
func checkSplit(t *testing.T, data []byte, load FileLoader) bool {
	t.Helper()
	a, ok := parseSplit(FileName, data, load)
	if !ok {
		return false
	}
	b, warns, err := wholeParse(data, load)
	if err != nil || len(warns) > 0 {
		t.Fatalf("split parse accepted what the whole parse refuses: %v %v\n%s", err, warns, data)
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("split parse differs from the whole parse\n%s", data)
	}
	return true
}

func TestSplitParseEqualsWhole(t *testing.T) {
	t.Parallel()
	data := generatedAllowlist(3000)
	load := mapLoader(nil)
	if !checkSplit(t, data, load) {
		t.Fatal("a generated allowlist was not split")
	}
	example, err := os.ReadFile(filepath.Join(exampleDir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	armored, err := os.ReadFile(filepath.Join(exampleDir, "keys", "alice.asc"))
	if err != nil {
		t.Fatal(err)
	}
	if !checkSplit(t, example, mapLoader(map[string][]byte{"keys/alice.asc": armored})) {
		t.Fatal("the example allowlist was not split")
	}
}

// TestSplitParseLayouts: layouts the split must either read exactly as the
// whole parse does or leave to it.
func TestSplitParseLayouts(t *testing.T) {
	t.Parallel()
	base := string(generatedAllowlist(3))
	head, jobs, _ := strings.Cut(base, "jobs:\n")
	cases := map[string]struct {
		text  string
		split bool // must the split be taken?
	}{
		"plain":                             {base, true},
		"tail after jobs":                   {head + "jobs:\n" + jobs + "# done\n", true},
		"jobs first":                        {strings.Replace(head, "schema:", "jobs:\n"+strings.TrimSuffix(jobs, "\n")+"\nschema:", 1), true},
		"compact list":                      {head + "jobs:\n" + dedentList(jobs), true},
		"comment at column 0 between items": {head + "jobs:\n" + strings.Replace(jobs, "  - name: job-1", "# about job-1\n  - name: job-1", 1), true},
		"quoted text spanning an item line": {head + "jobs:\n" + strings.Replace(jobs, "./verify.sh", "\"./verify.sh\n  - name: x\"", 1), false},
		"flow list":                         {head + "jobs: [" + "]\n", false},
		"jobs inside quoted text":           {strings.Replace(base, "expires: 2027-03-01T00:00:00Z", "expires: \"2027-03-01T00:00:00Z", 1), false},
		"jobs twice":                        {base + "jobs:\n" + jobs, false},
		"second document":                   {base + "---\nschema: x\n", false},
		"item not a mapping":                {head + "jobs:\n  - just text\n" + jobs, false},
		"tagged item":                       {head + "jobs:\n  - !!map\n    name: a\n" + jobs, false},
		// Items are decoded in runs (decodeRun): many runs, a run cut
		// by an item larger than a run's bytes, an item whose content
		// starts on the line after its dash, and quoted text that makes
		// one item of two in the middle of a run.
		"many runs":                {string(generatedAllowlist(100)), true},
		"item larger than a run":   {strings.Replace(string(generatedAllowlist(100)), "--target app-41\n", "--target app-41 "+strings.Repeat("x", runBytes)+"\n", 1), true},
		"content after the dash":   {strings.Replace(string(generatedAllowlist(100)), "  - name: job-45\n", "  -\n    name: job-45\n", 1), true},
		"quoted text inside a run": {strings.Replace(string(generatedAllowlist(100)), "--target app-50\n", "\"--target app-50\n  - name: x\"\n", 1), false},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := checkSplit(t, []byte(c.text), mapLoader(nil))
			if got != c.split {
				t.Fatalf("split taken: %v, want %v\n%s", got, c.split, c.text)
			}
		})
	}
}

// dedentList moves a block list from indentation 2 to 0 (the compact form).
func dedentList(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "  ")
	}
	return strings.Join(lines, "")
}

// FuzzSplitParse: a split parse that succeeds equals the whole-file parse.
// Seeds: testdata/fuzz/FuzzSplitParse.
func FuzzSplitParse(f *testing.F) {
	f.Add(generatedAllowlist(2))
	example, err := os.ReadFile(filepath.Join(exampleDir, FileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(setsDoc()))
	armored, err := os.ReadFile(filepath.Join(exampleDir, "keys", "alice.asc"))
	if err != nil {
		f.Fatal(err)
	}
	load := mapLoader(map[string][]byte{"keys/alice.asc": armored})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		checkSplit(t, data, load)
	})
}

// BenchmarkParseMemory compares the split parse of a 20,000-entry
// allowlist with the whole-file parse of the same bytes: see B/op.
func BenchmarkParseMemory(b *testing.B) {
	data := generatedAllowlist(20000)
	b.Run("split", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := parseSplit(FileName, data, nil); !ok {
				b.Fatal("not split")
			}
		}
	})
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := wholeParse(data, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
