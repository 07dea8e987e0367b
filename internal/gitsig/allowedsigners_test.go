package gitsig

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func testPubKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestParseAllowedSigners(t *testing.T) {
	t.Parallel()
	k1, line1 := testPubKey(t)
	k2, line2 := testPubKey(t)
	data := "# comment\n" +
		"\n" +
		"alice@example.com " + line1 + " alice's laptop\n" +
		"   \t# indented comment\n" +
		`"bob@example.com,Bob Builder" namespaces="git,file",valid-after="20240101utc",VALID-BEFORE="20300101123000Z" ` + line2 + "\r\n" +
		"carol@example.com\t" + line1 + "\r\n" +
		`dave@example.com Namespaces="git,a\"b",valid-before="202603011200z" ` + line1
	got, err := ParseAllowedSigners([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("got %d signers, want 4", len(got))
	}
	a, b, c, d := got[0], got[1], got[2], got[3]
	if a.Line != 3 || strings.Join(a.Principals, "|") != "alice@example.com" || len(a.Namespaces) != 0 ||
		!a.ValidAfter.IsZero() || !a.ValidBefore.IsZero() || string(a.Key.Marshal()) != string(k1.Marshal()) {
		t.Errorf("line 3 parsed as %+v", a)
	}
	if b.Line != 5 || strings.Join(b.Principals, "|") != "bob@example.com|Bob Builder" ||
		strings.Join(b.Namespaces, "|") != "git|file" || string(b.Key.Marshal()) != string(k2.Marshal()) {
		t.Errorf("line 5 parsed as %+v", b)
	}
	if want := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC); !b.ValidAfter.Equal(want) {
		t.Errorf("valid-after %v, want %v", b.ValidAfter, want)
	}
	if want := time.Date(2030, 1, 1, 12, 30, 0, 0, time.UTC); !b.ValidBefore.Equal(want) {
		t.Errorf("valid-before %v, want %v", b.ValidBefore, want)
	}
	if c.Line != 6 || c.Principals[0] != "carol@example.com" {
		t.Errorf("line 6 parsed as %+v", c)
	}
	// \" in an option value is a quote, as in ssh-keygen's opt_dequote.
	if d.Line != 7 || strings.Join(d.Namespaces, "|") != `git|a"b` ||
		!d.ValidBefore.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("line 7 parsed as %+v", d)
	}
}

func TestParseAllowedSignersErrors(t *testing.T) {
	t.Parallel()
	_, line := testPubKey(t)
	keyType, blob, _ := strings.Cut(line, " ")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := ssh.NewPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	shortRSA := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(rsaPub)))

	cases := []struct {
		name, data, want string
	}{
		{"cert-authority", "a@x cert-authority " + line, "line 1: cert-authority: writ does not accept SSH certificates"},
		{"cert-authority among options", "a@x namespaces=\"git\",cert-authority " + line, "cert-authority"},
		{"certificate key type", "a@x ssh-ed25519-cert-v01@openssh.com " + blob, "certificate"},
		{"CR inside a line", "a@x " + line + "\r comment\n", "line 1: carriage return"},
		{"lone CR", "a@x " + line + "\r\r\n", "line 1: carriage return"},
		{"control char", "# ok\na@x " + line + " comment\x01", "line 2: control character"},
		{"C1 control", "a@x " + line + " \u0085", "control character"},
		{"byte order mark", "\ufeffa@x " + line, "line 1: invisible formatting character U+FEFF"},
		{"bidi override", "# ok\na\u202e@x " + line, "line 2: invisible formatting character U+202E"},
		{"invalid utf8", "a@x " + line + " \xff", "UTF-8"},
		{"no key", "a@x", "without a key"},
		{"only options", `a@x namespaces="git"`, "missing key"},
		{"bad base64", "a@x " + keyType + " !!!", "base64"},
		{"type mismatch", "a@x ecdsa-sha2-nistp256 " + blob, "key type field says ecdsa-sha2-nistp256 but the key is ssh-ed25519"},
		{"unknown type", "a@x foo " + blob, "key type field says foo"},
		{"short rsa", "a@x " + shortRSA, "RSA key shorter than 2048 bits"},
		{"unknown option", `a@x no-touch-required ` + line, ""}, // "no-touch-required" is taken as a key type
		{"unknown option with value", `a@x foo="bar" ` + line, `unknown option "foo"`},
		{"unquoted namespaces", `a@x namespaces=git ` + line, "double-quoted value"},
		{"empty namespace", `a@x namespaces="git,,file" ` + line, "empty namespace"},
		{"pattern namespace", `a@x namespaces="g*" ` + line, "writ compares namespaces exactly"},
		{"negated namespace", `a@x namespaces="!file" ` + line, "pattern"},
		{"duplicate option", `a@x namespaces="git",namespaces="file" ` + line, "given twice"},
		{"bad time", `a@x valid-after="2024-01-01" ` + line, "valid-after"},
		{"bad time length", `a@x valid-before="202401" ` + line, "YYYYMMDD"},
		{"bad date", `a@x valid-before="20241301Z" ` + line, "not a valid date"},
		{"epoch", `a@x valid-after="19700101Z" ` + line, "not after 1970-01-01"},
		{"before epoch", `a@x valid-before="19691231235959Z" ` + line, "ssh-keygen refuses"},
		{"local date", `a@x valid-before="20241201" ` + line, `valid-before="20241201" has no time zone`},
		{"local time", `a@x valid-after="202511020130" ` + line, "writ requires UTC"},
		{"Z only", `a@x valid-after="Z" ` + line, "YYYYMMDD"},
		{"UTC only", `a@x valid-after="UTC" ` + line, "YYYYMMDD"},
		{"other zone", `a@x valid-after="20240101EST" ` + line, "YYYYMMDD"},
		{"negated principal", "!old@example.com " + line, `principal "!old@example.com" is a negation`},
		{"negation after principal", "a@x,!a@x " + line, "delete its line"},
		{"negate all", "!* " + line, "negation"},
		{"wildcard principal", "*@example.com " + line, "pattern character"},
		{"question mark principal", "a?@x " + line, "list each identity in full"},
		{"quoted pattern principal", `"a@x,*" ` + line, "pattern"},
		{"blank namespace", `a@x namespaces="git, file" ` + line, "blank"},
		{"escaped quote ends nothing", `a@x namespaces="git\" ` + line, "unterminated"},
		{"text after option value", `a@x namespaces="git"x ` + line, ""},
		{"trailing comma", `a@x namespaces="git", ` + line, "ends with a comma"},
		{"flag option", `a@x namespaces="git",no-touch-required ` + line, "unknown option"},
		{"window reversed", `a@x valid-after="20250101Z",valid-before="20240101Z" ` + line, "is not before"},
		{"unterminated quote", `"a@x ` + line, "unterminated"},
		{"unterminated option quote", `a@x namespaces="git ` + line, "unterminated"},
		{"text after quoted principals", `"a@x"b ` + line, "closing quote"},
		{"empty principal", "a@x,,b@y " + line, "empty principal"},
		{"quote in principal", `a"b@x ` + line, ""},
		{"trailing junk in blob", "a@x " + keyType + " " + blob + "AAAA", ""},
	}
	for _, tc := range cases {
		_, err := ParseAllowedSigners([]byte(tc.data))
		if err == nil {
			t.Errorf("%s: parsed %q without error", tc.name, tc.data)
			continue
		}
		if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

func TestParseAllowedSignersBounds(t *testing.T) {
	t.Parallel()
	if _, err := ParseAllowedSigners(make([]byte, maxAllowedSignersBytes+1)); err == nil {
		t.Error("oversized input accepted")
	}
	if _, err := ParseAllowedSigners([]byte(strings.Repeat("#\n", maxAllowedSignersLines+1))); err == nil {
		t.Error("too many lines accepted")
	}
	if _, err := ParseAllowedSigners([]byte("# " + strings.Repeat("x", maxAllowedSignersLine))); err == nil {
		t.Error("overlong line accepted")
	}
	// Empty input is an empty list, not an error: callers decide whether
	// an empty trust set is acceptable.
	if got, err := ParseAllowedSigners(nil); err != nil || len(got) != 0 {
		t.Errorf("empty input: %v, %v", got, err)
	}
}

// FuzzParseAllowedSigners checks that no input panics or escapes the
// bounds, and that whatever parses is internally consistent.
func FuzzParseAllowedSigners(f *testing.F) {
	f.Add([]byte("alice@example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5OyUwMDnjiuyptKQ6ch1rIQd43Ak33J/AcP2wTqijP comment\n"))
	f.Add([]byte(`"a b,c" namespaces="git,file",valid-after="20240101Z" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5OyUwMDnjiuyptKQ6ch1rIQd43Ak33J/AcP2wTqijP`))
	f.Add([]byte("# only a comment\n\n\t\n"))
	f.Add([]byte("a@x cert-authority ssh-ed25519 AAAA\n"))
	// Forms read as ssh-keygen reads them, and forms refused.
	f.Add([]byte("# crlf\r\na@x Namespaces=\"git,a\\\"b\",valid-after=\"20240101utc\",valid-before=\"202501011200z\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5OyUwMDnjiuyptKQ6ch1rIQd43Ak33J/AcP2wTqijP\r\n"))
	f.Add([]byte("!a@x,*@y,a?b ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5OyUwMDnjiuyptKQ6ch1rIQd43Ak33J/AcP2wTqijP\n"))
	f.Add([]byte(`a@x valid-after="202511020130",namespaces="git\"" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO5OyUwMDnjiuyptKQ6ch1rIQd43Ak33J/AcP2wTqijP`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseAllowedSigners(data)
		if err != nil {
			if got != nil {
				t.Fatal("signers returned along with an error")
			}
			return
		}
		lines := strings.Count(string(data), "\n") + 1
		prev := 0
		for _, s := range got {
			if s.Key == nil || len(s.Principals) == 0 || s.CertAuthority {
				t.Fatalf("inconsistent signer %+v", s)
			}
			if s.Line <= prev || s.Line > lines {
				t.Fatalf("line %d out of order or range (prev %d, lines %d)", s.Line, prev, lines)
			}
			prev = s.Line
			for _, p := range s.Principals {
				if p == "" || strings.ContainsAny(p, patternChars+`"`) {
					t.Fatalf("bad principal %q accepted", p)
				}
			}
			for _, tm := range []time.Time{s.ValidAfter, s.ValidBefore} {
				if !tm.IsZero() && tm.Location() != time.UTC {
					t.Fatalf("validity time %v is not UTC", tm)
				}
			}
			for _, ns := range s.Namespaces {
				if ns == "" || strings.ContainsAny(ns, "*?!") {
					t.Fatalf("bad namespace %q accepted", ns)
				}
			}
		}
		if _, err := NewKeys(nil, got); err != nil {
			t.Fatalf("parsed signers refused by NewKeys: %v", err)
		}
	})
}
