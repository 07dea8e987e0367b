package allowlist

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestCheckTextAcceptsOrdinaryText(t *testing.T) {
	t.Parallel()
	ok := "schema: writ/v2\n# café, 日本語, emoji 😀, math ≤ ≥, quotes “ ” ‘ ’, dash – —\nscript: [\"echo \\t\"]\n"
	if errs := CheckText([]byte(ok)); len(errs) != 0 {
		t.Fatalf("refused ordinary text: %v", errs)
	}
}

// TestCheckTextRefusesEveryListedCharacter walks every code point the
// format names and checks each is refused, with its position and U+ code.
func TestCheckTextRefusesEveryListedCharacter(t *testing.T) {
	t.Parallel()
	var listed []rune
	add := func(lo, hi rune) {
		for r := lo; r <= hi; r++ {
			listed = append(listed, r)
		}
	}
	add(0x00, 0x09)
	add(0x0B, 0x1F)
	add(0x7F, 0x9F)
	listed = append(listed, 0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFEFF, 0xFFA0)
	add(0x180B, 0x180F)
	add(0x200B, 0x200F)
	add(0x202A, 0x202E)
	add(0x2060, 0x206F)
	add(0xFE00, 0xFE0F)
	add(0xFFF0, 0xFFFB)
	add(0xE0000, 0xE0FFF)
	// And everything Unicode calls a bidirectional control or (by the
	// properties it is derived from) default-ignorable.
	for _, tab := range []*unicode.RangeTable{unicode.Bidi_Control, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector} {
		for _, r16 := range tab.R16 {
			for r := rune(r16.Lo); r <= rune(r16.Hi); r += rune(r16.Stride) {
				listed = append(listed, r)
			}
		}
		for _, r32 := range tab.R32 {
			for r := rune(r32.Lo); r <= rune(r32.Hi); r += rune(r32.Stride) {
				listed = append(listed, r)
			}
		}
	}
	for _, r := range listed {
		if !utf8.ValidRune(r) {
			continue
		}
		text := "ab\nxy" + string(r) + "z\n"
		errs := CheckText([]byte(text))
		want := fmt.Sprintf("U+%04X", r)
		if len(errs) != 1 || errs[0].Line != 2 || errs[0].Column != 3 || !strings.Contains(errs[0].Msg, want) {
			t.Errorf("%s: got %v, want one error at 2:3 naming %s", want, errs, want)
		}
	}
}

func TestCheckTextMessages(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want string
	}{
		{"a\u202eb", "1:2: invisible or bidirectional character U+202E RIGHT-TO-LEFT OVERRIDE: remove it; in a value that really needs it, write \\u202E inside a double-quoted string so reviewers see it"},
		{"\ufeffa", "1:1: byte order mark (U+FEFF) at the start of the file"},
		{"a\r\n", "1:2: carriage return (U+000D CARRIAGE RETURN): use LF line endings only"},
		{"\t", "1:1: tab (U+0009 CHARACTER TABULATION): indent and separate with spaces"},
		{"\xc3", "1:1: invalid UTF-8 byte 0xC3: save the file as UTF-8"},
		{"\xed\xa0\x80", "1:1: invalid UTF-8 byte 0xED"}, // a UTF-16 surrogate
		{"a\U000E0100", "1:2: invisible or bidirectional character U+E0100 VARIATION SELECTOR-17: remove it; in a value that really needs it, write \\U000E0100"},
		{"\n\n  é\u00a0", "3:4: invisible or bidirectional character U+00A0 NO-BREAK SPACE"},
	} {
		errs := CheckText([]byte(c.in))
		if len(errs) == 0 || !strings.HasPrefix(errs[0].Error(), c.want) {
			t.Errorf("CheckText(%q) = %v, want %q…", c.in, errs, c.want)
		}
	}
}

func TestCheckTextBoundsErrors(t *testing.T) {
	t.Parallel()
	errs := CheckText([]byte(strings.Repeat("\u200b", 5000)))
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Msg, "4000 more refused characters") {
		t.Fatalf("got %d errors, last %v", len(errs), errs[len(errs)-1])
	}
}

func TestVisible(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                     "",
		"plain text":           "plain text",
		"café 日本":              "café 日本",
		"a\tb":                 `a\tb`,
		"a\r\nb":               `a\r\nb`,
		"echo \u202eevil":      "echo <U+202E>evil",
		"a\u200bb":             "a<U+200B>b",
		"a\u00a0b":             "a<U+00A0>b",
		"trailing  ":           "trailing<SP><SP>",
		"line \nnext":          `line<SP>\nnext`,
		"  lead":               "  lead",
		"a  b":                 "a  b",
		"   ":                  "<SP><SP><SP>",
		"\x00\x1b\x7f":         "<U+0000><U+001B><U+007F>",
		"\u0085":               "<U+0085>",
		"bad\xffbyte":          "bad<0xFF>byte",
		"\U000E0041":           "<U+E0041>",
		"\ue000":               "<U+E000>", // private use: not printable
		"back\\slash `tick`":   "back\\slash `tick`",
		"\ufeffbom":            "<U+FEFF>bom",
		"emoji 😀":              "emoji 😀",
		"x\u2028y":             "x<U+2028>y",
		"var\ufe0f":            "var<U+FE0F>",
		"\u3164":               "<U+3164>",
		"tab at end\t":         `tab at end\t`,
		"space then tab \t":    `space then tab \t`,
		"many \n\n  \n":        `many<SP>\n\n<SP><SP>\n`,
		strings.Repeat(" ", 3): "<SP><SP><SP>",
	} {
		if got := Visible(in); got != want {
			t.Errorf("Visible(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestVisibleShowsEveryRefusedCharacter: whatever CheckText refuses,
// Visible escapes, so a refusal message never hides it.
func TestVisibleShowsEveryRefusedCharacter(t *testing.T) {
	t.Parallel()
	for r := rune(0); r <= 0x10FFFF; r++ {
		if !utf8.ValidRune(r) || r == '\n' || r == ' ' {
			continue
		}
		refused := len(CheckText([]byte("x"+string(r)))) > 0
		shown := Visible(string(r)) != string(r)
		if refused && !shown {
			t.Fatalf("U+%04X is refused by CheckText but Visible leaves it as is", r)
		}
	}
}

func TestVisibleIsLinear(t *testing.T) {
	t.Parallel()
	// Long runs of spaces once made trailing-space detection quadratic.
	s := "a" + strings.Repeat(" ", 1<<20) + "b"
	if got := Visible(s); got != s {
		t.Fatal("inner spaces changed")
	}
	if got := Visible(strings.Repeat(" ", 1<<20)); got != strings.Repeat("<SP>", 1<<20) {
		t.Fatal("trailing spaces not marked")
	}
}

// TestPrintable8: the eight-byte test agrees with a byte-by-byte one for
// every byte value at every position, and for pairs of bytes around the
// edges of the printable range (where a borrow crosses bytes).
func TestPrintable8(t *testing.T) {
	printable := func(b []byte) bool {
		for _, c := range b {
			if c < 0x20 || c >= 0x7F {
				return false
			}
		}
		return true
	}
	check := func(b []byte) {
		t.Helper()
		if got, want := printable8(binary.LittleEndian.Uint64(b)), printable(b); got != want {
			t.Fatalf("printable8(% x) = %v, want %v", b, got, want)
		}
	}
	edges := []byte{0x00, 0x01, 0x1F, 0x20, 0x21, 0x7E, 0x7F, 0x80, 0x9F, 0xA0, 0xFE, 0xFF}
	for pos := range 8 {
		for v := range 256 {
			b := []byte("abcdefgh")
			b[pos] = byte(v)
			check(b)
			for _, e := range edges {
				for other := range 8 {
					c := bytes.Clone(b)
					c[other] = e
					check(c)
				}
			}
		}
	}
}
