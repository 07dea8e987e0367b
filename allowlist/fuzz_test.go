package allowlist

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse: Parse never panics, and whatever it accepts is free of
// refused characters, indexes consistently, and survives Marshal.
// Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	armored, err := os.ReadFile(filepath.Join(exampleDir, "keys", "alice.asc"))
	if err != nil {
		f.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(exampleDir, FileName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte(edited()))
	f.Add([]byte(setsDoc()))
	load := mapLoader(map[string][]byte{"keys/alice.asc": armored})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, warns, err := Lint(FileName, data, load)
		if err != nil {
			list, ok := err.(ErrorList)
			if !ok || len(list) == 0 || a != nil {
				t.Fatalf("error %T %v with allowlist %v", err, err, a != nil)
			}
			for i, e := range list {
				if e.File != FileName || e.Msg == "" {
					t.Fatalf("malformed error %+v", e)
				}
				if i > 0 && (e.Line < list[i-1].Line || (e.Line == list[i-1].Line && e.Column < list[i-1].Column)) && e.Line != 0 {
					t.Fatalf("errors not sorted: %v", list)
				}
			}
			return
		}
		_ = warns
		if errs := CheckText(data); len(errs) > 0 {
			t.Fatalf("accepted a file CheckText refuses: %v", errs)
		}
		ix := NewIndex(a)
		for _, e := range a.Jobs {
			// What a signature authorises: typed refs only, and no
			// variable that writ sets or that is dangerous unmarked.
			for _, r := range e.Match.Refs {
				if msg := CheckRef(r); msg != "" {
					t.Fatalf("accepted ref %q: %s", r, msg)
				}
				if kind, _, _ := SplitRef(r); e.Source.Mode == ModeTag && kind != RefTag {
					t.Fatalf("accepted branch %q in tag mode", r)
				}
			}
			for _, v := range e.Definition.AllVariables() {
				if ReservedName(v.Name) != "" || (DangerousName(v.Name) != "" && !v.Dangerous) || v.Pattern == TODOPattern {
					t.Fatalf("accepted variable %+v", v)
				}
			}
			// What runs is an image pinned by digest, fixed by the entry.
			if img, err := ExpandImage(&e.Definition, e.Definition.Image); err != nil || (img != "" && checkImage(img) != "") {
				t.Fatalf("accepted image %q: %q %v", e.Definition.Image, img, err)
			}
		}
		for _, e := range a.Jobs {
			got, ok := ix.Lookup(e.Match.Project, e.Match.Job, e.Match.Environments[0], e.Match.Refs[len(e.Match.Refs)-1])
			if !ok || got != e {
				t.Fatalf("Lookup does not find entry %q", e.Name)
			}
		}
		out, err := Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Parse(FileName, out, load)
		if err != nil {
			t.Fatalf("Parse(Marshal(a)): %v\n%s", err, out)
		}
		requireSame(t, b, a)
	})
}

// FuzzVisible: Visible never panics and its output shows every character:
// it holds nothing CheckText refuses and no line break, tab or CR.
// Seeds: testdata/fuzz/FuzzVisible.
func FuzzVisible(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v := Visible(s)
		if !utf8.ValidString(v) {
			t.Fatalf("Visible(%q) = %q is not UTF-8", s, v)
		}
		if strings.ContainsAny(v, "\n\r\t") {
			t.Fatalf("Visible(%q) = %q keeps a line break or tab", s, v)
		}
		if errs := CheckText([]byte(v)); len(errs) > 0 {
			t.Fatalf("Visible(%q) = %q holds refused characters: %v", s, v, errs)
		}
		if strings.HasSuffix(v, " ") {
			t.Fatalf("Visible(%q) = %q ends in an unmarked space", s, v)
		}
		plain := true
		for _, r := range s {
			if r < 0x20 || r > 0x7E {
				plain = false
			}
		}
		if plain && !strings.HasSuffix(s, " ") && v != s {
			t.Fatalf("Visible changed printable ASCII %q to %q", s, v)
		}
	})
}

// FuzzMarshalEntry: any text that Parse can hold in a script item, a
// variable value and a job name comes back from MarshalEntry unchanged.
// Seeds: testdata/fuzz/FuzzMarshalEntry.
func FuzzMarshalEntry(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := &Entry{
			Name:  "fuzz",
			Match: Match{Project: "acme/web", Job: "job " + s, Environments: []string{"production"}, Refs: []string{"refs/heads/main"}},
			Definition: Definition{
				Script:      []string{s, "echo ok"},
				AfterScript: []string{s},
				Variables: []Variable{{Name: "V", Value: s, HasValue: true, Raw: strings.Contains(s, "$")}, {Name: "F", Value: s, HasValue: true, File: true, Raw: true},
					{Name: "LD_X", Value: s, HasValue: true, File: true, Raw: true, Dangerous: true}},
			},
			Source: Source{Repository: "https://gitlab.example.com/acme/web.git", Signers: []string{"web-team"}, Mode: ModeCommit},
		}
		out, err := MarshalEntry(e)
		if !utf8.ValidString(s) {
			if err == nil {
				t.Fatalf("marshalled invalid UTF-8 %q", s)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if errs := CheckText(out); len(errs) > 0 {
			t.Fatalf("MarshalEntry wrote refused characters: %v\n%s", errs, out)
		}
		text := minimalHeader + "signers:\n  web-team:\n    ssh: [" + bobSSH + "]\njobs:\n" + string(out)
		a, err := Parse(FileName, []byte(text), nil)
		acceptable := !strings.ContainsRune(s, 0) && len(e.Match.Job) <= 255 && len(s) <= MaxStringBytes && strings.Count(s, "\n") < MaxScriptLines-1
		if !acceptable {
			if err == nil {
				t.Fatalf("Parse accepted %q", s)
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse(MarshalEntry(%q)):\n%v\n%s", s, err, text)
		}
		clearPos(a)
		got := a.Jobs[0]
		if got.Match.Job != e.Match.Job || got.Definition.Script[0] != s || got.Definition.AfterScript[0] != s ||
			!reflect.DeepEqual(got.Definition.Variables, e.Definition.Variables) {
			t.Fatalf("round trip of %q:\n%s\ngot %#v", s, out, got)
		}
	})
}

// FuzzKeyFile: checking an armored key file from the allowlist repository
// never panics, and accepts only a file whose single key is the pinned one.
// Seeds: testdata/fuzz/FuzzKeyFile.
func FuzzKeyFile(f *testing.F) {
	armored, err := os.ReadFile(filepath.Join(exampleDir, "keys", "alice.asc"))
	if err != nil {
		f.Fatal(err)
	}
	const fpr = "40C8C819C0DCCD991D8E05859F55F7974B5C971B"
	f.Add(armored)
	f.Add(append(append([]byte{}, armored...), armored...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkOpenPGPKey(data, fpr) == "" && !strings.Contains(string(data), "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
			t.Fatal("accepted a file without a public key block")
		}
	})
}
