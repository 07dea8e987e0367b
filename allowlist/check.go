package allowlist

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// An allowlist is reviewed by people who read it in a browser or an editor,
// and then enforced by a program that reads its bytes. Every character that
// can make those two readings differ is refused before YAML parsing: carriage
// returns and other control characters, tabs, byte order marks, and Unicode
// characters that are invisible, reorder text (bidirectional controls), or
// look like an ordinary space. A value that really needs such a character can
// still carry it as an escape in a double-quoted YAML string ("\u202E"),
// which a reviewer sees.

// invisibleNames names the characters refused as invisible or
// bidirectional, beyond those caught by Unicode properties, and gives the
// property-caught ones a readable name in messages.
var invisibleNames = map[rune]string{
	0x00A0:  "NO-BREAK SPACE",
	0x00AD:  "SOFT HYPHEN",
	0x034F:  "COMBINING GRAPHEME JOINER",
	0x061C:  "ARABIC LETTER MARK",
	0x115F:  "HANGUL CHOSEONG FILLER",
	0x1160:  "HANGUL JUNGSEONG FILLER",
	0x1680:  "OGHAM SPACE MARK",
	0x17B4:  "KHMER VOWEL INHERENT AQ",
	0x17B5:  "KHMER VOWEL INHERENT AA",
	0x180B:  "MONGOLIAN FREE VARIATION SELECTOR ONE",
	0x180C:  "MONGOLIAN FREE VARIATION SELECTOR TWO",
	0x180D:  "MONGOLIAN FREE VARIATION SELECTOR THREE",
	0x180E:  "MONGOLIAN VOWEL SEPARATOR",
	0x180F:  "MONGOLIAN FREE VARIATION SELECTOR FOUR",
	0x2000:  "EN QUAD",
	0x2001:  "EM QUAD",
	0x2002:  "EN SPACE",
	0x2003:  "EM SPACE",
	0x2004:  "THREE-PER-EM SPACE",
	0x2005:  "FOUR-PER-EM SPACE",
	0x2006:  "SIX-PER-EM SPACE",
	0x2007:  "FIGURE SPACE",
	0x2008:  "PUNCTUATION SPACE",
	0x2009:  "THIN SPACE",
	0x200A:  "HAIR SPACE",
	0x200B:  "ZERO WIDTH SPACE",
	0x200C:  "ZERO WIDTH NON-JOINER",
	0x200D:  "ZERO WIDTH JOINER",
	0x200E:  "LEFT-TO-RIGHT MARK",
	0x200F:  "RIGHT-TO-LEFT MARK",
	0x2028:  "LINE SEPARATOR",
	0x2029:  "PARAGRAPH SEPARATOR",
	0x202A:  "LEFT-TO-RIGHT EMBEDDING",
	0x202B:  "RIGHT-TO-LEFT EMBEDDING",
	0x202C:  "POP DIRECTIONAL FORMATTING",
	0x202D:  "LEFT-TO-RIGHT OVERRIDE",
	0x202E:  "RIGHT-TO-LEFT OVERRIDE",
	0x202F:  "NARROW NO-BREAK SPACE",
	0x205F:  "MEDIUM MATHEMATICAL SPACE",
	0x2060:  "WORD JOINER",
	0x2061:  "FUNCTION APPLICATION",
	0x2062:  "INVISIBLE TIMES",
	0x2063:  "INVISIBLE SEPARATOR",
	0x2064:  "INVISIBLE PLUS",
	0x2066:  "LEFT-TO-RIGHT ISOLATE",
	0x2067:  "RIGHT-TO-LEFT ISOLATE",
	0x2068:  "FIRST STRONG ISOLATE",
	0x2069:  "POP DIRECTIONAL ISOLATE",
	0x206A:  "INHIBIT SYMMETRIC SWAPPING",
	0x206B:  "ACTIVATE SYMMETRIC SWAPPING",
	0x206C:  "INHIBIT ARABIC FORM SHAPING",
	0x206D:  "ACTIVATE ARABIC FORM SHAPING",
	0x206E:  "NATIONAL DIGIT SHAPES",
	0x206F:  "NOMINAL DIGIT SHAPES",
	0x2800:  "BRAILLE PATTERN BLANK",
	0x3000:  "IDEOGRAPHIC SPACE",
	0x3164:  "HANGUL FILLER",
	0xFEFF:  "ZERO WIDTH NO-BREAK SPACE (BYTE ORDER MARK)",
	0xFFA0:  "HALFWIDTH HANGUL FILLER",
	0xFFF9:  "INTERLINEAR ANNOTATION ANCHOR",
	0xFFFA:  "INTERLINEAR ANNOTATION SEPARATOR",
	0xFFFB:  "INTERLINEAR ANNOTATION TERMINATOR",
	0xE0001: "LANGUAGE TAG",
}

// c0Names are the names of the C0 control characters, by code point.
var c0Names = [32]string{
	"NULL", "START OF HEADING", "START OF TEXT", "END OF TEXT",
	"END OF TRANSMISSION", "ENQUIRY", "ACKNOWLEDGE", "BELL",
	"BACKSPACE", "CHARACTER TABULATION", "LINE FEED", "LINE TABULATION",
	"FORM FEED", "CARRIAGE RETURN", "SHIFT OUT", "SHIFT IN",
	"DATA LINK ESCAPE", "DEVICE CONTROL ONE", "DEVICE CONTROL TWO", "DEVICE CONTROL THREE",
	"DEVICE CONTROL FOUR", "NEGATIVE ACKNOWLEDGE", "SYNCHRONOUS IDLE", "END OF TRANSMISSION BLOCK",
	"CANCEL", "END OF MEDIUM", "SUBSTITUTE", "ESCAPE",
	"INFORMATION SEPARATOR FOUR", "INFORMATION SEPARATOR THREE", "INFORMATION SEPARATOR TWO", "INFORMATION SEPARATOR ONE",
}

// runeName returns a readable name for a refused or escaped rune.
func runeName(r rune) string {
	switch {
	case r >= 0 && r < 0x20:
		return c0Names[r]
	case r == 0x7F:
		return "DELETE"
	case r >= 0x80 && r <= 0x9F:
		return "C1 CONTROL"
	case r >= 0xFE00 && r <= 0xFE0F:
		return fmt.Sprintf("VARIATION SELECTOR-%d", r-0xFE00+1)
	case r >= 0xE0100 && r <= 0xE01EF:
		return fmt.Sprintf("VARIATION SELECTOR-%d", r-0xE0100+17)
	case r >= 0xE0020 && r <= 0xE007F:
		return "TAG CHARACTER"
	case r >= 0xFFF0 && r <= 0xFFF8:
		return "RESERVED SPECIAL"
	}
	if n, ok := invisibleNames[r]; ok {
		return n
	}
	return "INVISIBLE OR FORMATTING CHARACTER"
}

// isControl reports C0 controls, DEL and C1 controls.
func isControl(r rune) bool {
	return r < 0x20 || (r >= 0x7F && r <= 0x9F)
}

// isInvisible reports the characters refused because a reader cannot see
// them, they reorder the text around them, or they pass for a plain space.
func isInvisible(r rune) bool {
	if r < 0x80 {
		return false
	}
	if _, ok := invisibleNames[r]; ok {
		return true
	}
	switch {
	case r >= 0x180B && r <= 0x180F,
		r >= 0x200B && r <= 0x200F,
		r >= 0x202A && r <= 0x202E,
		r >= 0x2060 && r <= 0x206F,
		r >= 0xFE00 && r <= 0xFE0F,
		r >= 0xFFF0 && r <= 0xFFFB,
		r >= 0xE0000 && r <= 0xE0FFF:
		return true
	}
	// Default_Ignorable_Code_Point is derived from these three properties;
	// refusing all of Cf is slightly wider than the derived property, which
	// is the safe direction.
	if unicode.Is(unicode.Bidi_Control, r) ||
		unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) ||
		unicode.Is(unicode.Variation_Selector, r) ||
		unicode.Is(unicode.Cf, r) {
		return true
	}
	// Whitespace other than the ASCII space looks like a space but is not one.
	return unicode.IsSpace(r)
}

// isNoncharacter reports Unicode noncharacters, which have no business in text.
func isNoncharacter(r rune) bool {
	return (r >= 0xFDD0 && r <= 0xFDEF) || r&0xFFFE == 0xFFFE
}

// maxErrors bounds the errors kept for one file, so a hostile file cannot
// make the error list itself exhaust memory.
const maxErrors = 1000

// CheckText reports every character of data that an allowlist must not
// contain: invalid UTF-8, a byte order mark, carriage returns, tabs, other
// C0 and C1 control characters and DEL, Unicode noncharacters, and
// invisible, bidirectional or space-like characters. Positions are 1-based;
// columns count characters (runes), as YAML does. Line feeds are the only
// control character allowed. The File of each Error is empty; Parse fills it.
// At most 1000 errors are kept; a final Error says how many more there were.
func CheckText(data []byte) ErrorList {
	errs, _ := checkText(data)
	return errs
}

// checkText is CheckText that also reports whether any problem is one the
// YAML parser cannot read past or would count lines differently for
// (anything but tabs and invisible characters).
func checkText(data []byte) (errs ErrorList, fatal bool) {
	more := 0
	add := func(line, col int, format string, a ...any) {
		if len(errs) >= maxErrors {
			more++
			return
		}
		errs = append(errs, &Error{Line: line, Column: col, Msg: fmt.Sprintf(format, a...)})
	}
	line, col := 1, 1
	for i := 0; i < len(data); {
		if i+8 <= len(data) && printable8(binary.LittleEndian.Uint64(data[i:])) {
			// Eight at once: a large file is checked several times
			// faster than byte by byte.
			i += 8
			col += 8
			continue
		}
		switch c := data[i]; {
		case c >= 0x20 && c < 0x7F:
			// Printable ASCII, nearly all of a real file: nothing to
			// refuse.
			i++
			col++
			continue
		case c == '\n':
			i++
			line, col = line+1, 1
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fatal = true
			add(line, col, "invalid UTF-8 byte 0x%02X: save the file as UTF-8", data[i])
		case r == '\n':
			line, col = line+1, 0
		case i == 0 && r == 0xFEFF:
			fatal = true
			add(line, col, "byte order mark (U+FEFF) at the start of the file: save the file as UTF-8 without a BOM")
		case r == '\r':
			fatal = true
			add(line, col, "carriage return (U+000D CARRIAGE RETURN): use LF line endings only (for example with dos2unix)")
		case r == '\t':
			add(line, col, "tab (U+0009 CHARACTER TABULATION): indent and separate with spaces; in a value that needs a tab, write \\t inside a double-quoted string")
		case isControl(r):
			fatal = true
			add(line, col, "control character U+%04X %s: remove it; in a value that needs it, write \\u%04X inside a double-quoted string", r, runeName(r), r)
		case isNoncharacter(r):
			fatal = true
			add(line, col, "noncharacter U+%04X: remove it", r)
		case isInvisible(r):
			// The YAML parser counts LINE SEPARATOR and PARAGRAPH
			// SEPARATOR as line breaks, which would skew positions.
			fatal = fatal || r == 0x2028 || r == 0x2029
			add(line, col, "invisible or bidirectional character U+%04X %s: remove it; in a value that really needs it, write %s inside a double-quoted string so reviewers see it", r, runeName(r), escapeRune(r))
		}
		i += size
		col++
	}
	if more > 0 {
		errs = append(errs, &Error{Line: line, Column: col, Msg: fmt.Sprintf("%d more refused characters not listed", more)})
	}
	return errs, fatal
}

// printable8 reports whether each of the eight bytes of x is printable
// ASCII (0x20 to 0x7E). It never says yes to any other byte: with no high
// bit set, subtracting 0x20 from a byte borrows exactly when it is below
// 0x20, and x^0x7F has a zero byte exactly where x has 0x7F.
func printable8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	below := (x - 0x20*ones) & ^x
	del := x ^ 0x7F*ones
	isDel := (del - ones) & ^del
	return (x|below|isDel)&highs == 0
}

// escapeRune is the YAML double-quoted escape for r.
func escapeRune(r rune) string {
	if r > 0xFFFF {
		return fmt.Sprintf("\\U%08X", r)
	}
	return fmt.Sprintf("\\u%04X", r)
}

// Visible renders s so that every character a reader could miss or misread
// shows: tab, carriage return and line feed become \t, \r and \n; other
// control characters, invisible, bidirectional, space-like, unassigned and
// otherwise non-printable characters become <U+XXXX>; bytes that are not
// UTF-8 become <0xXX>; and each space at the end of s or before a line feed
// becomes <SP>. Printable text, including backslashes, is left as it is, so
// Visible is for display: compare the original strings, never the renderings.
func Visible(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, "<0x%02X>", s[i])
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == ' ':
			// Handle the whole run of spaces at once so that long runs
			// cost linear time.
			j := i
			for j < len(s) && s[j] == ' ' {
				j++
			}
			mark := " "
			if j == len(s) || s[j] == '\n' {
				mark = "<SP>"
			}
			b.WriteString(strings.Repeat(mark, j-i))
			i = j
			continue
		case isControl(r) || isNoncharacter(r) || isInvisible(r) || !unicode.IsPrint(r):
			fmt.Fprintf(&b, "<U+%04X>", r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
