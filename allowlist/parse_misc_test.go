package allowlist

import (
	"errors"
	"strings"
	"testing"
)

func TestErrorFormat(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Column: 7, Msg: "bad"}, "a.yaml:3:7: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{Error{File: "a.yaml", Msg: "bad"}, "a.yaml: bad"},
		{Error{Line: 2, Column: 1, Msg: "bad"}, "2:1: bad"},
		{Error{Msg: "bad"}, "bad"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%+v.Error() = %q, want %q", c.e, got, c.want)
		}
	}
	l := ErrorList{{File: "f", Line: 1, Column: 2, Msg: "x"}, {File: "f", Line: 3, Column: 4, Msg: "y"}}
	if got := l.Error(); got != "f:1:2: x\nf:3:4: y" {
		t.Errorf("ErrorList.Error() = %q", got)
	}
}

// TestAllErrorsSorted: every independent problem is reported, in position
// order, whichever part of the parser found it.
func TestAllErrorsSorted(t *testing.T) {
	t.Parallel()
	text := edited(
		setLine(3, `version: "7"`),
		setLine(13, "      job: de\u200bploy"),
		addAfter(15, "      color: blue"),
		setLine(18, "        - 1.0"),
		setLine(21, "      signers: [ops]"),
		setLine(22, "      mode: sign"),
		secondEntry("web-deploy", "staging", "main"),
	)
	_, err := Parse("x.yaml", []byte(text), nil)
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("err = %v", err)
	}
	checkErrorsIn(t, list, "x.yaml", []string{
		"3:10|version must be a whole number",
		"13:14|U+200B ZERO WIDTH SPACE",
		`16:7|unknown key "color" in match`,
		"19:11|script item: 1.0 is read as a number",
		`22:17|signer set "ops" is not defined`,
		`23:13|mode "sign"`,
		`24:5|entry name "web-deploy" is already used at line 10`,
	})
}

func checkErrorsIn(t *testing.T, list ErrorList, file string, want []string) {
	t.Helper()
	for _, e := range list {
		if e.File != file {
			t.Fatalf("error %v has file %q", e, e.File)
		}
		e.File = FileName
	}
	checkErrors(t, list, want)
}

func TestLintWarnsUnusedSignerSet(t *testing.T) {
	t.Parallel()
	text := edited(addAfter(8, "  spare:", "    ssh:", "      - "+bobSSH))
	a, warns, err := Lint(FileName, []byte(text), nil)
	if err != nil || a == nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || warns[0].Line != 9 || warns[0].Column != 3 || !strings.Contains(warns[0].Msg, `signer set "spare" is not used by any entry`) {
		t.Fatalf("warnings = %v", warns)
	}
	// Parse accepts the file: a warning is not an error.
	if _, err := Parse(FileName, []byte(text), nil); err != nil {
		t.Fatal(err)
	}
	// Warnings come back with errors too.
	_, warns, err = Lint(FileName, []byte(strings.Replace(text, "version: 7", "version: x", 1)), nil)
	if err == nil || len(warns) != 1 {
		t.Fatalf("err = %v, warns = %v", err, warns)
	}
}

func TestEmptyJobsAndNoSigners(t *testing.T) {
	t.Parallel()
	a, err := Parse(FileName, []byte(minimalHeader+"jobs: []\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Jobs) != 0 || len(a.Signers) != 0 {
		t.Fatalf("%+v", a)
	}
	if _, err := Parse(FileName, []byte(minimalHeader), nil); err != nil {
		t.Fatal(err)
	}
}

func TestBounds(t *testing.T) {
	t.Parallel()
	t.Run("file size", func(t *testing.T) {
		t.Parallel()
		big := make([]byte, MaxFileBytes+1)
		_, err := Parse(FileName, big, nil)
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Msg, "the file is 67108865 bytes; the limit is 67108864") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("yaml structure", func(t *testing.T) {
		t.Parallel()
		text := minimalHeader + "x: [" + strings.Repeat("a,", maxStructure) + "a]\n"
		_, err := Parse(FileName, []byte(text), nil)
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 || !strings.Contains(list[0].Msg, "YAML structure characters") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("entries", func(t *testing.T) {
		t.Parallel()
		text := minimalHeader + "jobs: [" + strings.Repeat("{},", MaxEntries) + "{}]\n"
		_, err := Parse(FileName, []byte(text), nil)
		var list ErrorList
		if !errors.As(err, &list) || len(list) != 1 || list[0].Line != 5 || list[0].Column != 7 || !strings.Contains(list[0].Msg, "jobs has 100001 entries; the limit is 100000") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("error count", func(t *testing.T) {
		t.Parallel()
		text := minimalHeader + "jobs: [" + strings.Repeat("x,", 2000) + "x]\n"
		_, err := Parse(FileName, []byte(text), nil)
		var list ErrorList
		if !errors.As(err, &list) || len(list) != maxErrors+1 || !strings.Contains(list[maxErrors].Msg, "1001 more problems not listed") {
			t.Fatalf("got %d errors", len(list))
		}
	})
	t.Run("after_script lines", func(t *testing.T) {
		t.Parallel()
		text := edited(addAfter(18, "      after_script:", "        - |", "          "+strings.Repeat("x\n          ", MaxScriptLines)))
		_, err := Parse(FileName, []byte(text), nil)
		if err == nil || !strings.Contains(err.Error(), "after_script has 10001 lines; the limit is 10000") {
			t.Fatalf("err = %v", err)
		}
	})
}
