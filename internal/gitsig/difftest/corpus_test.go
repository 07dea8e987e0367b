package difftest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// Reasons writ is stricter than the reference, shared by several cases.
const (
	whyPattern    = "principals are literal: `*`, `?` and `!` are refused in a trust root (ssh-keygen reads a pattern list)"
	whyLocalTime  = "validity times must be UTC (`Z`/`UTC`): ssh-keygen reads others in each host's zone, as standard time"
	whyNamespace  = "namespaces are compared exactly: patterns, blanks and empty names are refused"
	whyBadLine    = "a file with a line writ cannot read is refused as a whole, not skipped"
	whyCalendar   = "a validity time that is not a calendar date is refused, not normalised"
	whyShortRSA   = "RSA keys shorter than 2048 bits are refused"
	whyDSA        = "DSA keys are refused"
	whyCert       = "SSH certificates and cert-authority lines are refused"
	whyTextMode   = "text-mode OpenPGP signatures are refused: they also verify after line endings change"
	whyWeakHash   = "OpenPGP signatures over SHA-1 or RIPEMD-160 are refused"
	whyFraming    = "exactly one signature block, with nothing after its END line"
	whyCR         = "a carriage return in signature text is refused"
	whyArmoredKey = "OpenPGP keyrings must be armored public keys"
	whyFuture     = "an OpenPGP signature dated more than 10 minutes in the future is refused"
	whyEmptyName  = "an empty principal name is refused"
	whyInvisible  = "invisible formatting characters (byte order mark, zero-width, bidi) are refused"
	whyMargin     = "a git object's date must be an hour inside an SSH validity window: git passes ssh-keygen the date in local time, which it reads as standard time, an hour off under daylight saving time (later in New York's summer, earlier in Dublin's winter)"
)

func ok(name string, build func(w *world) fixture) tcase {
	return tcase{name: name, accept: true, build: build}
}

func no(name string, build func(w *world) fixture) tcase {
	return tcase{name: name, build: build}
}

func stricter(name, why string, build func(w *world) fixture) tcase {
	return tcase{name: name, stricter: why, build: build}
}

// aliceCommit is the shared commit alice signs with SSH at t0.
func (w *world) aliceCommit() string {
	return w.once("alice", func() string { return w.commit(w.alice) })
}

// sshFile judges alice's commit under an allowed_signers file.
func sshFile(file func(w *world) string) func(w *world) fixture {
	return func(w *world) fixture { return fixture{hash: w.aliceCommit(), signers: file(w)} }
}

// aliceLine judges alice's commit under one line for alice's key.
func aliceLine(principals, options string) func(w *world) fixture {
	return sshFile(func(w *world) string { return line(principals, options, w.alice) + "\n" })
}

// pgpCommit judges a commit signed by g with only g's key trusted.
func pgpCommit(g func(w *world) *testkeys.GPG) func(w *world) fixture {
	return func(w *world) fixture {
		k := g(w)
		return fixture{hash: w.commit(k), keyrings: [][]byte{k.ArmoredPublic}}
	}
}

// sshSigned judges a commit whose SSH signature by alice is edited.
func sshSigned(edit func(sig []byte) []byte) func(w *world) fixture {
	return func(w *world) fixture {
		p := w.payload(t0)
		return fixture{hash: w.withSig(p, edit(w.alice.Sign(w.t, p, "git"))), signers: line("alice@example.com", "", w.alice) + "\n"}
	}
}

// pgpSigned judges a commit whose OpenPGP signature by w.pgp is edited.
func pgpSigned(edit func(sig []byte) []byte) func(w *world) fixture {
	return func(w *world) fixture {
		p := w.payload(t0)
		return fixture{hash: w.withSig(p, edit(w.pgp.Sign(w.t, p))), keyrings: [][]byte{w.pgp.ArmoredPublic}}
	}
}

// keyring judges a commit by w.pgp with its key file edited.
func keyring(edit func(w *world, pub []byte) []byte) func(w *world) fixture {
	return func(w *world) fixture {
		c := w.once("pgp", func() string { return w.commit(w.pgp) })
		return fixture{hash: c, keyrings: [][]byte{edit(w, w.pgp.ArmoredPublic)}}
	}
}

// window judges a commit by alice dated at under one option list.
func window(at time.Time, options string) func(w *world) fixture {
	return func(w *world) fixture {
		c := w.once("alice@"+at.String(), func() string { return w.commitAt(w.alice, at) })
		return fixture{hash: c, signers: line("alice@example.com", options, w.alice) + "\n"}
	}
}

func trailingBlanks(_ int, l string) string { return l + " \t " }

func corpus() []tcase {
	var cs []tcase
	cs = append(cs, syntaxCases()...)
	cs = append(cs, principalCases()...)
	cs = append(cs, namespaceCases()...)
	cs = append(cs, validityCases()...)
	cs = append(cs, keyTypeCases()...)
	cs = append(cs, framingCases()...)
	cs = append(cs, openpgpCases()...)
	cs = append(cs, keyringCases()...)
	cs = append(cs, tagCases()...)
	return cs
}

func syntaxCases() []tcase {
	return []tcase{
		ok("syntax/plain", aliceLine("alice@example.com", "")),
		ok("syntax/comment after key", sshFile(func(w *world) string { return line("alice@example.com", "", w.alice) + " alice's laptop\n" })),
		ok("syntax/indented with blanks and tab", sshFile(func(w *world) string { return " \t " + line("alice@example.com", "", w.alice) + "\n" })),
		ok("syntax/tab separators", sshFile(func(w *world) string {
			return strings.ReplaceAll(line("alice@example.com", `namespaces="git"`, w.alice), " ", "\t") + "\n"
		})),
		ok("syntax/comments and blank lines", sshFile(func(w *world) string {
			return "# trusted signers\n\n   # indented comment\n\n" + line("alice@example.com", "", w.alice) + "\n\n"
		})),
		stricter("syntax/byte order mark", whyInvisible, sshFile(func(w *world) string { return "\ufeff# signers\n" + line("alice@example.com", "", w.alice) + "\n" })),
		stricter("syntax/right-to-left override in a principal", whyInvisible, aliceLine("alice@example.com\u202e", "")),
		ok("syntax/no final newline", sshFile(func(w *world) string { return line("alice@example.com", "", w.alice) })),
		ok("syntax/CRLF line endings", sshFile(func(w *world) string {
			return "# signers\r\n" + line("alice@example.com", `namespaces="git"`, w.alice) + " laptop\r\n" + line("bob@example.com", "", w.bob) + "\r\n"
		})),
		ok("syntax/CRLF on the last line only", sshFile(func(w *world) string { return line("alice@example.com", "", w.alice) + "\r\n" })),
		ok("syntax/second line matches", sshFile(func(w *world) string {
			return line("bob@example.com", "", w.bob) + "\n" + line("alice@example.com", "", w.alice) + "\n"
		})),
		ok("syntax/key listed twice, first line for another namespace", sshFile(func(w *world) string {
			return line("alice@example.com", `namespaces="file"`, w.alice) + "\n" + line("alice@example.com", "", w.alice) + "\n"
		})),
		ok("syntax/key listed twice, first line expired", sshFile(func(w *world) string {
			return line("alice@example.com", `valid-before="20200101Z"`, w.alice) + "\n" + line("alice@example.com", "", w.alice) + "\n"
		})),
		no("syntax/key listed twice, both lines expired", sshFile(func(w *world) string {
			return line("alice@example.com", `valid-before="20200101Z"`, w.alice) + "\n" + line("alice@example.com", `valid-after="20300101Z"`, w.alice) + "\n"
		})),
		no("syntax/key not listed", sshFile(func(w *world) string { return line("bob@example.com", "", w.bob) + "\n" })),
		no("syntax/mallory's key under alice's name", sshFile(func(w *world) string { return line("alice@example.com", "", w.mallory) + "\n" })),
		no("syntax/empty file", sshFile(func(w *world) string { return "" })),
		no("syntax/only comments", sshFile(func(w *world) string { return "# " + line("alice@example.com", "", w.alice) + "\n" })),
		no("syntax/no principals", sshFile(func(w *world) string { return keyPart(w.alice) + "\n" })),
		no("syntax/cert-authority", aliceLine("alice@example.com", "cert-authority")),
		no("syntax/unknown option", aliceLine("alice@example.com", `foo="bar"`)),
		no("syntax/unknown flag among options", aliceLine("alice@example.com", `namespaces="git",no-touch-required`)),
		no("syntax/option given twice", aliceLine("alice@example.com", `namespaces="git",namespaces="git"`)),
		no("syntax/option list ends with a comma", aliceLine("alice@example.com", `namespaces="git",`)),
		no("syntax/unterminated option quote", aliceLine("alice@example.com", `namespaces="git`)),
		no("syntax/key type does not match the key", sshFile(func(w *world) string {
			return "alice@example.com ssh-rsa " + strings.Fields(w.alice.PublicLine)[1] + "\n"
		})),
		no("syntax/truncated key", sshFile(func(w *world) string {
			f := strings.Fields(w.alice.PublicLine)
			return "alice@example.com " + f[0] + " " + f[1][:40] + "\n"
		})),
		stricter("syntax/unreadable line before the signer's line", whyBadLine, sshFile(func(w *world) string {
			return "bob@example.com ssh-ed25519 notbase64\n" + line("alice@example.com", "", w.alice) + "\n"
		})),
		stricter("syntax/unreadable line after the signer's line", whyBadLine, sshFile(func(w *world) string {
			return line("alice@example.com", "", w.alice) + "\nbob@example.com ssh-ed25519 notbase64\n"
		})),
		ok("syntax/option names in capitals", aliceLine("alice@example.com", `NAMESPACES="git",Valid-After="20250101Z"`)),
		ok(`syntax/escaped quote in a namespace`, aliceLine("alice@example.com", `namespaces="git,a\"b"`)),
		ok(`syntax/escaped quote in the only other namespace`, aliceLine("alice@example.com", `namespaces="x\"y,git"`)),
		no(`syntax/escaped quote does not close the value`, aliceLine("alice@example.com", `namespaces="git\"`)),
	}
}

func principalCases() []tcase {
	return []tcase{
		ok("principals/several", aliceLine("alice@example.com,al@example.com", "")),
		ok("principals/quoted with a blank", aliceLine(`"Alice Example,alice@example.com"`, "")),
		ok("principals/quoted, with options", aliceLine(`"alice@example.com"`, `namespaces="git"`)),
		// The five accepting disagreements of issue 17: the first three are
		// negations writ once ignored, trusting the key and reporting the
		// negated name; all are now refused, as the reference refuses them.
		no("principals/negated (issue 17)", aliceLine("!alice@example.com", "")),
		no("principals/name and its negation (issue 17)", aliceLine("alice@example.com,!alice@example.com", "")),
		no("principals/negate everything (issue 17)", aliceLine("!*", "")),
		no("principals/negated old key, other key trusted", sshFile(func(w *world) string {
			return line("!old@example.com", "", w.alice) + "\n" + line("bob@example.com", "", w.bob) + "\n"
		})),
		no("principals/negated line and a plain line for the same key", sshFile(func(w *world) string {
			return line("!alice@example.com", "", w.alice) + "\n" + line("alice@example.com", "", w.alice) + "\n"
		})),
		stricter("principals/wildcard domain", whyPattern, aliceLine("*@example.com", "")),
		stricter("principals/star", whyPattern, aliceLine("*", "")),
		stricter("principals/question mark", whyPattern, aliceLine("alice?example.com", "")),
		stricter("principals/pattern among names", whyPattern, aliceLine("alice@example.com,*@example.org", "")),
		stricter("principals/bang inside a name", whyPattern, aliceLine("alice!x@example.com", "")),
		stricter("principals/empty name in list", whyEmptyName, aliceLine("alice@example.com,,bob@example.com", "")),
	}
}

func namespaceCases() []tcase {
	return []tcase{
		ok("namespaces/git", aliceLine("alice@example.com", `namespaces="git"`)),
		ok("namespaces/file,git", aliceLine("alice@example.com", `namespaces="file,git"`)),
		no("namespaces/file only", aliceLine("alice@example.com", `namespaces="file"`)),
		no("namespaces/GIT in capitals", aliceLine("alice@example.com", `namespaces="GIT"`)),
		no("namespaces/empty value", aliceLine("alice@example.com", `namespaces=""`)),
		no("namespaces/unquoted", aliceLine("alice@example.com", `namespaces=git`)),
		stricter("namespaces/star", whyNamespace, aliceLine("alice@example.com", `namespaces="*"`)),
		stricter("namespaces/question mark", whyNamespace, aliceLine("alice@example.com", `namespaces="gi?"`)),
		stricter("namespaces/negated other, then git", whyNamespace, aliceLine("alice@example.com", `namespaces="!file,git"`)),
		no("namespaces/negated git", aliceLine("alice@example.com", `namespaces="!git,*"`)),
		stricter("namespaces/empty name in list", whyNamespace, aliceLine("alice@example.com", `namespaces="git,,file"`)),
		stricter("namespaces/blank after comma", whyNamespace, aliceLine("alice@example.com", `namespaces="git, file"`)),
		no("namespaces/signature made in namespace file", func(w *world) fixture {
			p := w.payload(t0)
			return fixture{hash: w.withSig(p, w.alice.Sign(w.t, p, "file")), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		no("namespaces/signature in namespace file, line allows file", func(w *world) fixture {
			p := w.payload(t0)
			return fixture{hash: w.withSig(p, w.alice.Sign(w.t, p, "file")), signers: line("alice@example.com", `namespaces="file,git"`, w.alice) + "\n"}
		}),
	}
}

// issue17DST are the two DST disagreements of issue 17. git hands
// ssh-keygen the commit date as local wall-clock time and ssh-keygen reads
// it and the window alike, as standard time, so git compares wall-clock
// readings; writ read the window as an instant (EDT where ambiguous).
// Across a change of the clocks the two orders differ: writ accepted both
// commits in New York, git refuses them. writ now refuses zone-less times.
var issue17DST = []struct {
	name       string
	validAfter string
	commit     time.Time
}{
	// 01:15 EST, the second 01:15 of the day the clocks go back.
	{"validity/local time after, repeated hour when clocks go back (issue 17)", "202511020130", time.Date(2025, 11, 2, 6, 15, 0, 0, time.UTC)},
	// 01:45 EST; 02:30 never happens that day.
	{"validity/local time after, skipped hour when clocks go forward (issue 17)", "202503090230", time.Date(2025, 3, 9, 6, 45, 0, 0, time.UTC)},
}

func validityCases() []tcase {
	summer := time.Date(2025, 7, 1, 16, 30, 0, 0, time.UTC)   // 12:30 EDT
	fallBack := time.Date(2025, 11, 2, 5, 45, 0, 0, time.UTC) // 01:45 EDT, before the clocks go back
	spring := time.Date(2025, 3, 9, 7, 15, 0, 0, time.UTC)    // 03:15 EDT
	var cs []tcase
	for _, c := range issue17DST {
		cs = append(cs, stricter(c.name, whyLocalTime, window(c.commit, `valid-after="`+c.validAfter+`"`)))
	}
	return append(cs,
		ok("validity/after, date only", window(t0, `valid-after="20250301Z"`)),
		stricter("validity/after, equal to the commit time", whyMargin, window(t0, `valid-after="202503011200Z"`)),
		no("validity/after, one second after the commit", window(t0, `valid-after="20250301120001Z"`)),
		stricter("validity/after, one second before the commit", whyMargin, window(t0, `valid-after="20250301115959Z"`)),
		ok("validity/after, one hour before the commit", window(t0, `valid-after="20250301110000Z"`)),
		stricter("validity/before, equal to the commit time", whyMargin, window(t0, `valid-before="20250301120000Z"`)),
		stricter("validity/before, one second before the commit", whyMargin, window(t0, `valid-before="20250301115959Z"`)),
		ok("validity/before, one hour after the commit", window(t0, `valid-before="202503011300Z"`)),
		no("validity/before, long past", window(t0, `valid-before="20200101Z"`)),
		no("validity/after, in the future", window(t0, `valid-after="20990101Z"`)),
		ok("validity/window around the commit", window(t0, `valid-after="20250101Z",valid-before="20250401Z"`)),
		no("validity/window reversed", window(t0, `valid-after="20250401Z",valid-before="20250101Z"`)),
		no("validity/window empty", window(t0, `valid-after="20250301Z",valid-before="20250301Z"`)),
		ok("validity/suffix z in lower case", window(t0, `valid-after="20250301z"`)),
		ok("validity/suffix UTC", window(t0, `valid-after="202503011100UTC"`)),
		ok("validity/suffix utc in lower case", window(t0, `valid-before="20250302utc"`)),
		no("validity/suffix EST", window(t0, `valid-after="20250301EST"`)),
		no("validity/ten digits", window(t0, `valid-after="2025030112Z"`)),
		no("validity/dashes", window(t0, `valid-after="2025-03-01Z"`)),
		no("validity/hour 24", window(t0, `valid-after="202503012400Z"`)),
		no("validity/text after the suffix", window(t0, `valid-after="20250301Zx"`)),
		no("validity/February 30th", window(t0, `valid-after="20250230Z"`)),
		stricter("validity/second 60", whyCalendar, window(t0, `valid-after="20250301115960Z"`)),
		stricter("validity/local date", whyLocalTime, window(t0, `valid-after="20250301"`)),
		stricter("validity/local time, before", whyLocalTime, window(t0, `valid-before="202503011800"`)),
		stricter("validity/local time after, summer", whyLocalTime, window(summer, `valid-after="202507011200"`)),
		stricter("validity/local time before, summer", whyLocalTime, window(summer, `valid-before="202507011300"`)),
		stricter("validity/local time after, ambiguous hour when clocks go back", whyLocalTime, window(fallBack, `valid-after="202511020130"`)),
		no("validity/local time before, ambiguous hour when clocks go back", window(fallBack, `valid-before="202511020130"`)),
		stricter("validity/local time after, hour skipped when clocks go forward", whyLocalTime, window(spring, `valid-after="202503090230"`)),
		// git's own one-hour error: with UTC windows, git on a New York host
		// reads the commit date as an hour later than it is.
		stricter("validity/UTC, summer, half an hour inside", whyMargin, window(summer, `valid-after="202507011600Z",valid-before="202507011700Z"`)),
		ok("validity/UTC, summer, an hour inside", window(summer, `valid-after="202507011500Z",valid-before="202507011800Z"`)),
		stricter("validity/UTC, when clocks go back, a second inside", whyMargin, window(fallBack, `valid-after="20251102054459Z",valid-before="20251102054501Z"`)),
		ok("validity/UTC, when clocks go back, an hour inside", window(fallBack, `valid-after="20251102044500Z",valid-before="20251102064500Z"`)),
		stricter("validity/UTC, just after the window when clocks go back", whyMargin, window(fallBack, `valid-before="20251102054459Z"`)),
		no("validity/after the epoch itself", window(t0, `valid-after="19700101Z"`)),
		no("validity/after a date before the epoch", window(t0, `valid-after="19600101Z"`)),
		ok("validity/after the epoch's first minute", window(t0, `valid-after="197001010001Z"`)),
		ok("validity/before the year 9999", window(t0, `valid-before="99991231Z"`)),
		no("validity/before the epoch itself", window(t0, `valid-before="19700101Z"`)),
		ok("validity/UTC, when clocks go forward", window(spring, `valid-after="202503090615Z"`)),
	)
}

func keyTypeCases() []tcase {
	byType := func(typ string) func(w *world) fixture {
		return func(w *world) fixture {
			k := w.sshTypes[typ]
			return fixture{hash: w.commit(k), signers: line("alice@example.com", "", k) + "\n"}
		}
	}
	return []tcase{
		ok("keys/ssh ed25519", aliceLine("alice@example.com", "")),
		ok("keys/ssh ecdsa P-256", byType("ecdsa-256")),
		ok("keys/ssh ecdsa P-384", byType("ecdsa-384")),
		ok("keys/ssh ecdsa P-521", byType("ecdsa-521")),
		ok("keys/ssh rsa 2048", byType("rsa-2048")),
		ok("keys/ssh rsa 3072", byType("rsa-3072")),
		stricter("keys/ssh rsa 1024", whyShortRSA, byType("rsa-1024")),
		stricter("keys/ssh dsa", whyDSA, byType("dsa")),
		ok("keys/ssh signature hash sha256", func(w *world) fixture {
			p := w.payload(t0)
			return fixture{hash: w.withSig(p, w.sshSign(w.alice, p, "git", "-O", "hashalg=sha256")), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		stricter("keys/ssh certificate under cert-authority", whyCert, func(w *world) fixture {
			ca := testkeys.SSHKey(w.t, "ca")
			user := testkeys.SSHKey(w.t, "alice@example.com")
			cert := testkeys.SSHCertificate(w.t, ca, user, "alice@example.com")
			return fixture{hash: w.commit(cert), signers: line("alice@example.com", "cert-authority", ca) + "\n"}
		}),
		no("keys/ssh certificate, its key listed plainly", func(w *world) fixture {
			ca := testkeys.SSHKey(w.t, "ca")
			user := testkeys.SSHKey(w.t, "alice@example.com")
			cert := testkeys.SSHCertificate(w.t, ca, user, "alice@example.com")
			return fixture{hash: w.commit(cert), signers: line("alice@example.com", "", user) + "\n"}
		}),
	}
}

// reflow rewraps an armored block's base64 body at n columns.
func reflow(sig []byte, n int) []byte {
	lines := strings.Split(strings.TrimSuffix(string(sig), "\n"), "\n")
	body := strings.Join(lines[1:len(lines)-1], "")
	var out []string
	out = append(out, lines[0])
	for len(body) > n {
		out = append(out, body[:n])
		body = body[n:]
	}
	out = append(out, body, lines[len(lines)-1])
	return []byte(strings.Join(out, "\n") + "\n")
}

func framingCases() []tcase {
	return []tcase{
		ok("framing/ssh as git writes it", sshSigned(func(s []byte) []byte { return s })),
		ok("framing/ssh rewrapped at 64 columns", sshSigned(func(s []byte) []byte { return reflow(s, 64) })),
		ok("framing/ssh on one line", sshSigned(func(s []byte) []byte { return reflow(s, 1<<20) })),
		no("framing/ssh with a blank line before BEGIN", sshSigned(func(s []byte) []byte { return append([]byte("\n"), s...) })),
		no("framing/ssh with text before BEGIN", sshSigned(func(s []byte) []byte { return append([]byte("hello\n"), s...) })),
		no("framing/ssh with blanks after BEGIN", sshSigned(func(s []byte) []byte {
			return mapLines(s, func(i int, l string) string {
				if i == 0 {
					return l + " "
				}
				return l
			})
		})),
		ok("framing/ssh with blanks after body lines", sshSigned(func(s []byte) []byte {
			return mapLines(s, func(i int, l string) string {
				if strings.HasPrefix(l, "-----") {
					return l
				}
				return l + "  "
			})
		})),
		ok("framing/ssh with blanks after END", sshSigned(func(s []byte) []byte {
			return mapLines(s, func(i int, l string) string {
				if strings.HasPrefix(l, "-----END") {
					return l + "  "
				}
				return l
			})
		})),
		stricter("framing/ssh with text after END", whyFraming, sshSigned(func(s []byte) []byte { return append(s, "trailing text\n"...) })),
		no("framing/ssh with CRLF line endings", sshSigned(func(s []byte) []byte { return bytes.ReplaceAll(s, []byte("\n"), []byte("\r\n")) })),
		no("framing/ssh without END", sshSigned(func(s []byte) []byte { return s[:bytes.Index(s, []byte("-----END"))] })),
		no("framing/ssh with base64 cut short", sshSigned(func(s []byte) []byte {
			return mapLines(s, func(i int, l string) string {
				if i == 1 {
					return l[:len(l)-8]
				}
				return l
			})
		})),
		no("framing/ssh over another payload", func(w *world) fixture {
			p := w.payload(t0)
			other := w.payload(t0)
			return fixture{hash: w.withSig(p, w.alice.Sign(w.t, other, "git")), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		no("framing/ssh over the payload with its message changed", func(w *world) fixture {
			p := w.payload(t0)
			sig := w.alice.Sign(w.t, p, "git")
			return fixture{hash: w.withSig(bytes.Replace(p, []byte("case"), []byte("Case"), 1), sig), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		stricter("framing/two ssh signatures by trusted keys", whyFraming, func(w *world) fixture {
			c := w.commit(nil)
			return fixture{hash: w.repo.DoubleSignedCommit(w.t, c, w.alice, w.bob), signers: line("alice@example.com", "", w.alice) + "\n" + line("bob@example.com", "", w.bob) + "\n"}
		}),
		no("framing/ssh signature by an untrusted key, then a trusted one", func(w *world) fixture {
			c := w.commit(nil)
			return fixture{hash: w.repo.DoubleSignedCommit(w.t, c, w.mallory, w.alice), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		stricter("framing/openpgp then ssh signature", whyFraming, func(w *world) fixture {
			c := w.commit(nil)
			return fixture{hash: w.repo.DoubleSignedCommit(w.t, c, w.pgp, w.alice), signers: line("alice@example.com", "", w.alice) + "\n", keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("framing/ssh blob of version 2", sshSigned(func(s []byte) []byte {
			return sshBlob(s, func(b []byte) []byte { b[9] = 2; return b })
		})),
		no("framing/ssh blob with bytes after the signature", sshSigned(func(s []byte) []byte {
			return sshBlob(s, func(b []byte) []byte { return append(b, 0, 0, 0, 0) })
		})),
		ok("framing/ssh blob with a reserved field set", sshSigned(func(s []byte) []byte {
			return sshBlob(s, func(b []byte) []byte { return setSSHField(b, 2, []byte("x")) })
		})),
		no("framing/ssh blob naming the file namespace", sshSigned(func(s []byte) []byte {
			return sshBlob(s, func(b []byte) []byte { return setSSHField(b, 1, []byte("file")) })
		})),
		ok("framing/openpgp as git writes it", pgpSigned(func(s []byte) []byte { return s })),
		ok("framing/openpgp with armor headers", pgpSigned(func(s []byte) []byte {
			return bytes.Replace(s, []byte("-----\n"), []byte("-----\nVersion: GnuPG v2\nComment: made by difftest\n"), 1)
		})),
		ok("framing/openpgp without checksum line", pgpSigned(func(s []byte) []byte {
			var out []string
			for _, l := range strings.Split(string(s), "\n") {
				if !(strings.HasPrefix(l, "=") && len(l) == 5) {
					out = append(out, l)
				}
			}
			return []byte(strings.Join(out, "\n"))
		})),
		no("framing/openpgp with a wrong checksum", pgpSigned(func(s []byte) []byte {
			return mapLines(s, func(_ int, l string) string {
				if strings.HasPrefix(l, "=") && len(l) == 5 {
					if l == "=AAAA" {
						return "=BBBB"
					}
					return "=AAAA"
				}
				return l
			})
		})),
		ok("framing/openpgp with an unknown armor header", pgpSigned(func(s []byte) []byte {
			return bytes.Replace(s, []byte("-----\n"), []byte("-----\nFoo: bar\n"), 1)
		})),
		ok("framing/openpgp with a Hash armor header", pgpSigned(func(s []byte) []byte {
			return bytes.Replace(s, []byte("-----\n"), []byte("-----\nHash: SHA512\n"), 1)
		})),
		no("framing/openpgp without the blank line after the headers", pgpSigned(func(s []byte) []byte {
			return bytes.Replace(s, []byte("-----\n\n"), []byte("-----\n"), 1)
		})),
		ok("framing/openpgp rewrapped at 76 columns", pgpSigned(func(s []byte) []byte { return reflowPGP(s, 76) })),
		ok("framing/openpgp with blanks after BEGIN", pgpSigned(func(s []byte) []byte {
			return mapLines(s, func(i int, l string) string {
				if i == 0 {
					return l + "  "
				}
				return l
			})
		})),
		ok("framing/openpgp with blanks after every line", pgpSigned(func(s []byte) []byte { return mapLines(s, trailingBlanks) })),
		stricter("framing/openpgp with text after END", whyFraming, pgpSigned(func(s []byte) []byte { return append(s, "trailing text\n"...) })),
		no("framing/openpgp with text before BEGIN", pgpSigned(func(s []byte) []byte { return append([]byte("hello\n"), s...) })),
		stricter("framing/openpgp with CRLF line endings", whyCR, pgpSigned(func(s []byte) []byte { return bytes.ReplaceAll(s, []byte("\n"), []byte("\r\n")) })),
		no("framing/openpgp block holding two signatures", func(w *world) fixture {
			p := w.payload(t0)
			sig := twoPacketSignature(w, w.pgp.Sign(w.t, p), w.pgpBob.Sign(w.t, p))
			return fixture{hash: w.withSig(p, sig), keyrings: [][]byte{w.pgp.ArmoredPublic, w.pgpBob.ArmoredPublic}}
		}),
		no("framing/two openpgp blocks by trusted keys", func(w *world) fixture {
			c := w.commit(nil)
			return fixture{hash: w.repo.DoubleSignedCommit(w.t, c, w.pgp, w.pgpBob), keyrings: [][]byte{w.pgp.ArmoredPublic, w.pgpBob.ArmoredPublic}}
		}),
		no("framing/openpgp message instead of a detached signature", func(w *world) fixture {
			p := w.payload(t0)
			sig := w.gpgRun(w.pgp, "", p, "--armor", "--sign", "--local-user", w.pgp.Fingerprint)
			return fixture{hash: w.withSig(p, sig), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("framing/openpgp over the payload with its message changed", func(w *world) fixture {
			p := w.payload(t0)
			sig := w.pgp.Sign(w.t, p)
			return fixture{hash: w.withSig(bytes.Replace(p, []byte("case"), []byte("Case"), 1), sig), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("framing/unsigned commit", func(w *world) fixture {
			return fixture{hash: w.commit(nil), signers: line("alice@example.com", "", w.alice) + "\n", keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("framing/header added after signing", func(w *world) fixture {
			p := w.payload(t0)
			sig := w.alice.Sign(w.t, p, "git")
			return fixture{hash: w.withSig(withHeader(p, "x-note added later"), sig), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		no("framing/encoding header added after signing", func(w *world) fixture {
			p := w.payload(t0)
			sig := w.pgp.Sign(w.t, p)
			return fixture{hash: w.withSig(withHeader(p, "encoding ISO-8859-1"), sig), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		ok("framing/unknown header, signed", func(w *world) fixture {
			p := withHeader(w.payload(t0), "x-note signed with the commit")
			return fixture{hash: w.withSig(p, w.alice.Sign(w.t, p, "git")), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		ok("framing/gpgsig header before the committer line", func(w *world) fixture {
			p := w.payload(t0)
			sig := w.alice.Sign(w.t, p, "git")
			raw := testkeys.InsertSignature(p, sig)
			head, body, _ := bytes.Cut(raw, []byte("\n\n"))
			lines := strings.Split(string(head), "\n")
			// tree, author, committer, gpgsig…: move committer last.
			moved := append(append([]string{lines[0], lines[1]}, lines[3:]...), lines[2])
			raw = append([]byte(strings.Join(moved, "\n")+"\n\n"), body...)
			return fixture{hash: w.repo.WriteObject(w.t, "commit", raw), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
		stricter("framing/gpgsig header twice, valid one first", whyFraming, func(w *world) fixture {
			p := w.payload(t0)
			raw := testkeys.InsertSignature(p, w.pgp.Sign(w.t, p))
			raw = bytes.Replace(raw, []byte("\n\n"), []byte("\ngpgsig junk\n\n"), 1)
			return fixture{hash: w.repo.WriteObject(w.t, "commit", raw), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("framing/gpgsig header twice, valid one last", func(w *world) fixture {
			p := w.payload(t0)
			raw := testkeys.InsertSignature(withHeader(p, "gpgsig junk"), w.pgp.Sign(w.t, p))
			return fixture{hash: w.repo.WriteObject(w.t, "commit", raw), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("framing/signature in the message only", func(w *world) fixture {
			p := w.payload(t0)
			return fixture{hash: w.withSig(append(p, w.pgp.Sign(w.t, p)...), nil), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		ok("framing/extra gpgsig-sha256 header", func(w *world) fixture {
			raw := w.repo.RawObject(w.t, "commit", w.aliceCommit())
			head, body, _ := bytes.Cut(raw, []byte("\n\n"))
			raw = append(append(head, "\ngpgsig-sha256 -----BEGIN SSH SIGNATURE-----\n junk\n -----END SSH SIGNATURE-----\n\n"...), body...)
			return fixture{hash: w.repo.WriteObject(w.t, "commit", raw), signers: line("alice@example.com", "", w.alice) + "\n"}
		}),
	}
}

// withHeader adds a header line after a commit's other headers.
func withHeader(p []byte, h string) []byte {
	return bytes.Replace(p, []byte("\n\n"), []byte("\n"+h+"\n\n"), 1)
}

// sshBlob decodes an armored SSH signature, edits its binary blob and
// armors it again as ssh-keygen does (70 columns).
func sshBlob(sig []byte, edit func([]byte) []byte) []byte {
	lines := strings.Split(strings.TrimSuffix(string(sig), "\n"), "\n")
	blob, err := base64.StdEncoding.DecodeString(strings.Join(lines[1:len(lines)-1], ""))
	if err != nil {
		panic(err)
	}
	b64 := base64.StdEncoding.EncodeToString(edit(blob))
	out := []string{lines[0]}
	for len(b64) > 70 {
		out = append(out, b64[:70])
		b64 = b64[70:]
	}
	out = append(out, b64, lines[len(lines)-1])
	return []byte(strings.Join(out, "\n") + "\n")
}

// setSSHField replaces string field i of an SSHSIG blob (after the magic
// and version: 0 public key, 1 namespace, 2 reserved, 3 hash algorithm,
// 4 signature).
func setSSHField(blob []byte, i int, v []byte) []byte {
	off := 10
	for n := 0; ; n++ {
		l := int(binary.BigEndian.Uint32(blob[off:]))
		if n == i {
			out := append([]byte{}, blob[:off]...)
			out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
			out = append(out, v...)
			return append(out, blob[off+4+l:]...)
		}
		off += 4 + l
	}
}

// reflowPGP rewraps the base64 body of an armored OpenPGP block, keeping
// the blank line after the headers and the checksum line.
func reflowPGP(sig []byte, n int) []byte {
	lines := strings.Split(strings.TrimSuffix(string(sig), "\n"), "\n")
	var head, body, tail []string
	i := 0
	for ; i < len(lines) && lines[i] != ""; i++ {
		head = append(head, lines[i])
	}
	head = append(head, "")
	for i++; i < len(lines) && !strings.HasPrefix(lines[i], "=") && !strings.HasPrefix(lines[i], "-----"); i++ {
		body = append(body, lines[i])
	}
	tail = lines[i:]
	all := strings.Join(body, "")
	var out []string
	for len(all) > n {
		out = append(out, all[:n])
		all = all[n:]
	}
	out = append(out, all)
	return []byte(strings.Join(append(append(head, out...), tail...), "\n") + "\n")
}

// twoPacketSignature armors the signature packets of a and b as one block.
func twoPacketSignature(w *world, a, b []byte) []byte {
	var packets []byte
	for _, s := range [][]byte{a, b} {
		blk, err := armor.Decode(bytes.NewReader(s))
		if err != nil {
			w.t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(blk.Body); err != nil {
			w.t.Fatal(err)
		}
		packets = append(packets, buf.Bytes()...)
	}
	var out bytes.Buffer
	aw, err := armor.Encode(&out, "PGP SIGNATURE", nil)
	if err != nil {
		w.t.Fatal(err)
	}
	aw.Write(packets)
	aw.Close()
	out.WriteString("\n")
	return out.Bytes()
}

func openpgpCases() []tcase {
	digest := func(algo string) func(w *world) fixture {
		return pgpCommit(func(w *world) *testkeys.GPG { return w.gpgWith(w.pgpRSA, "--digest-algo", algo) })
	}
	return []tcase{
		ok("openpgp/ed25519 primary key", pgpCommit(func(w *world) *testkeys.GPG { return w.pgp })),
		ok("openpgp/rsa2048 primary key", pgpCommit(func(w *world) *testkeys.GPG { return w.pgpRSA })),
		ok("openpgp/signing subkey", pgpCommit(func(w *world) *testkeys.GPG { return w.subkeyKey("Sub Signer") })),
		ok("openpgp/certify-only primary, signing subkey", pgpCommit(func(w *world) *testkeys.GPG {
			return testkeys.GPGKey(w.t, "Cert Only", "certonly@example.com", testkeys.CertifyOnly(), testkeys.SigningSubkey())
		})),
		ok("openpgp/ecdsa nistp256 primary key", pgpCommit(func(w *world) *testkeys.GPG {
			return testkeys.GPGKey(w.t, "Nist P256", "p256@example.com", testkeys.Algorithm("nistp256"))
		})),
		ok("openpgp/ecdsa brainpoolP256r1 primary key", pgpCommit(func(w *world) *testkeys.GPG {
			return testkeys.GPGKey(w.t, "Brainpool", "bp256@example.com", testkeys.Algorithm("brainpoolP256r1"))
		})),
		ok("openpgp/ecdsa nistp384 primary key", pgpCommit(func(w *world) *testkeys.GPG {
			return testkeys.GPGKey(w.t, "Nist P384", "p384@example.com", testkeys.Algorithm("nistp384"))
		})),
		ok("openpgp/key that expires in 2099", pgpCommit(func(w *world) *testkeys.GPG {
			g := testkeys.GPGKey(w.t, "Later Expiry", "later@example.com")
			w.gpgRun(g, "", nil, "--quick-set-expire", g.Fingerprint, "2099-01-01")
			g.ArmoredPublic = w.gpgRun(g, "", nil, "--armor", "--export", g.Fingerprint)
			return g
		})),
		no("openpgp/expired key, signed while valid", pgpCommit(func(w *world) *testkeys.GPG {
			return testkeys.GPGKey(w.t, "Old Key", "old@example.com", testkeys.ExpiredKey())
		})),
		no("openpgp/expired signing subkey, valid primary", pgpCommit(func(w *world) *testkeys.GPG {
			g := testkeys.GPGKey(w.t, "Old Sub", "oldsub@example.com", testkeys.ExpiredKey())
			w.gpgRun(g, "20200101T010000", nil, "--quick-set-expire", g.Fingerprint, "0")
			w.gpgRun(g, "20200101T020000", nil, "--quick-add-key", g.Fingerprint, "ed25519", "sign", "1d")
			out := string(w.gpgRun(g, "", nil, "--with-colons", "--list-keys", g.Fingerprint))
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Split(l, ":"); len(f) > 9 && f[0] == "fpr" && f[9] != g.Fingerprint {
					g.SigningFingerprint = f[9]
				}
			}
			g.ArmoredPublic = w.gpgRun(g, "", nil, "--armor", "--export", g.Fingerprint)
			return g
		})),
		no("openpgp/revoked key", func(w *world) fixture {
			g := testkeys.GPGKey(w.t, "Revoked", "revoked@example.com")
			c := w.commit(g)
			g.Revoke(w.t)
			return fixture{hash: c, keyrings: [][]byte{g.ArmoredPublic}}
		}),
		no("openpgp/revoked signing subkey", func(w *world) fixture {
			g := w.subkeyKey("Revoked Sub")
			c := w.commit(g)
			return fixture{hash: c, keyrings: [][]byte{w.rebind(g, func(e *openpgp.Entity, sub *openpgp.Subkey) { w.revokeSub(e, sub) })}}
		}),
		no("openpgp/signing subkey without back-signature", func(w *world) fixture {
			g := w.subkeyKey("No Backsig")
			c := w.commit(g)
			return fixture{hash: c, keyrings: [][]byte{w.rebind(g, func(e *openpgp.Entity, sub *openpgp.Subkey) {
				sub.Sig.EmbeddedSignature = nil
				w.resign(e, sub)
			})}}
		}),
		no("openpgp/subkey flagged for authentication only", func(w *world) fixture {
			g := w.subkeyKey("Auth Sub")
			c := w.commit(g)
			return fixture{hash: c, keyrings: [][]byte{w.rebind(g, func(e *openpgp.Entity, sub *openpgp.Subkey) {
				sub.Sig.FlagSign, sub.Sig.FlagAuthenticate = false, true
				w.resign(e, sub)
			})}}
		}),
		ok("openpgp/subkey binding signed again, unchanged", func(w *world) fixture {
			g := w.subkeyKey("Rebound Sub")
			c := w.commit(g)
			return fixture{hash: c, keyrings: [][]byte{w.rebind(g, w.resign)}}
		}),
		no("openpgp/primary key that signed, now flagged certify-only", func(w *world) fixture {
			g := testkeys.GPGKey(w.t, "Unflagged", "unflagged@example.com")
			c := w.commit(g)
			return fixture{hash: c, keyrings: [][]byte{w.edited(g, w.unflagPrimary)}}
		}),
		ok("openpgp/primary user ID self-signature signed again, unchanged", func(w *world) fixture {
			g := testkeys.GPGKey(w.t, "Resigned", "resigned@example.com")
			c := w.commit(g)
			return fixture{hash: c, keyrings: [][]byte{w.edited(g, func(e *openpgp.Entity) {
				for name, id := range e.Identities {
					if err := id.SelfSignature.SignUserId(name, e.PrimaryKey, e.PrivateKey, nil); err != nil {
						w.t.Fatal(err)
					}
				}
			})}}
		}),
		ok("openpgp/signature with a notation", pgpCommit(func(w *world) *testkeys.GPG {
			return w.gpgWith(w.pgp, "--sig-notation", "reviewed@example.com=yes")
		})),
		no("openpgp/signature with a critical notation", pgpCommit(func(w *world) *testkeys.GPG {
			return w.gpgWith(w.pgp, "--sig-notation", "'!reviewed@example.com=yes'")
		})),
		ok("openpgp/one of two user IDs revoked", pgpCommit(func(w *world) *testkeys.GPG {
			g := testkeys.GPGKey(w.t, "Two Ids", "twoids@example.com")
			w.gpgRun(g, "", nil, "--quick-add-uid", g.Fingerprint, "Old Id <old-id@example.com>")
			w.gpgRun(g, "", nil, "--quick-revoke-uid", g.Fingerprint, "Old Id <old-id@example.com>")
			g.ArmoredPublic = w.gpgRun(g, "", nil, "--armor", "--export", g.Fingerprint)
			return g
		})),
		no("openpgp/key not in the keyring", func(w *world) fixture {
			return fixture{hash: w.commit(w.pgpMallory), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		ok("openpgp/signer is the second key of the keyring", func(w *world) fixture {
			return fixture{hash: w.commit(w.pgpBob), keyrings: [][]byte{append(append([]byte{}, w.pgp.ArmoredPublic...), w.pgpBob.ArmoredPublic...)}}
		}),
		ok("openpgp/signer in the second keyring", func(w *world) fixture {
			return fixture{hash: w.commit(w.pgpBob), keyrings: [][]byte{w.pgp.ArmoredPublic, w.pgpBob.ArmoredPublic}}
		}),
		stricter("openpgp/signature dated a day ahead", whyFuture, pgpCommit(func(w *world) *testkeys.GPG {
			return w.gpgWith(w.pgp, "--faked-system-time", time.Now().Add(24*time.Hour).UTC().Format("20060102T150405"))
		})),
		stricter("openpgp/hash SHA-1", whyWeakHash, digest("SHA1")),
		stricter("openpgp/hash RIPEMD-160", whyWeakHash, digest("RIPEMD160")),
		ok("openpgp/hash SHA-224", digest("SHA224")),
		ok("openpgp/hash SHA-256", digest("SHA256")),
		ok("openpgp/hash SHA-384", digest("SHA384")),
		ok("openpgp/hash SHA-512", digest("SHA512")),
		stricter("openpgp/text mode", whyTextMode, pgpCommit(func(w *world) *testkeys.GPG { return w.gpgWith(w.pgp, "--textmode") })),
		// The weakness both sides shared in issue 17: a text-mode signature
		// still verifies once the commit's line endings become CRLF.
		stricter("openpgp/text mode, commit rewritten with CRLF", whyTextMode, func(w *world) fixture {
			p := w.payload(t0)
			sig := w.pgpSign(w.pgp, p, "--textmode")
			crlf := crlfMessage(p)
			return fixture{hash: w.withSig(crlf, sig), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("openpgp/binary mode, commit rewritten with CRLF", func(w *world) fixture {
			p := w.payload(t0)
			sig := w.pgpSign(w.pgp, p)
			crlf := crlfMessage(p)
			return fixture{hash: w.withSig(crlf, sig), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
	}
}

// crlfMessage gives a commit's message CRLF line endings.
func crlfMessage(p []byte) []byte {
	head, body, _ := bytes.Cut(p, []byte("\n\n"))
	return append(append(head, "\n\n"...), bytes.ReplaceAll(body, []byte("\n"), []byte("\r\n"))...)
}

func keyringCases() []tcase {
	return []tcase{
		ok("keyring/as gpg exports it", keyring(func(_ *world, k []byte) []byte { return k })),
		ok("keyring/CRLF line endings", keyring(func(_ *world, k []byte) []byte { return bytes.ReplaceAll(k, []byte("\n"), []byte("\r\n")) })),
		ok("keyring/blanks after every armor line", keyring(func(_ *world, k []byte) []byte { return mapLines(k, trailingBlanks) })),
		ok("keyring/text around the block", keyring(func(_ *world, k []byte) []byte {
			return append(append([]byte("Alice's key, exported 2025-03-01:\n\n"), k...), "\n-- \nthanks\n"...)
		})),
		ok("keyring/armor headers", keyring(func(_ *world, k []byte) []byte {
			return bytes.Replace(k, []byte("-----\n"), []byte("-----\nComment: alice\n"), 1)
		})),
		ok("keyring/two blocks, signer second", keyring(func(w *world, k []byte) []byte {
			return append(append([]byte{}, w.pgpMallory.ArmoredPublic...), k...)
		})),
		stricter("keyring/binary", whyArmoredKey, keyring(func(w *world, k []byte) []byte {
			return w.gpgRun(w.pgp, "", nil, "--export", w.pgp.Fingerprint)
		})),
		stricter("keyring/private key block", whyArmoredKey, keyring(func(w *world, k []byte) []byte {
			return w.gpgRun(w.pgp, "", nil, "--armor", "--export-secret-keys", w.pgp.Fingerprint)
		})),
		no("keyring/malformed BEGIN line (issue 12 fuzz finding)", keyring(func(_ *world, k []byte) []byte {
			return append(bytes.Replace(k, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"), []byte("-----BEGIN PGP PUBLIC KEY BLOCKaa007"), 1), "garbage"...)
		})),
		no("keyring/wrong armor checksum", keyring(func(_ *world, k []byte) []byte {
			return mapLines(k, func(_ int, l string) string {
				if strings.HasPrefix(l, "=") && len(l) == 5 {
					if l == "=AAAA" {
						return "=BBBB"
					}
					return "=AAAA"
				}
				return l
			})
		})),
		no("keyring/empty", keyring(func(_ *world, _ []byte) []byte { return nil })),
		no("keyring/base64 cut short", keyring(func(_ *world, k []byte) []byte {
			lines := strings.Split(string(k), "\n")
			return []byte(strings.Join(append(lines[:4], lines[len(lines)-3:]...), "\n"))
		})),
		no("keyring/block type PGP SIGNATURE", keyring(func(_ *world, k []byte) []byte {
			return bytes.ReplaceAll(k, []byte("PGP PUBLIC KEY BLOCK"), []byte("PGP SIGNATURE"))
		})),
		no("keyring/only another key", keyring(func(w *world, _ []byte) []byte { return w.pgpMallory.ArmoredPublic })),
	}
}

func tagCases() []tcase {
	aliceSigners := func(w *world) string { return line("alice@example.com", "", w.alice) + "\n" }
	return []tcase{
		ok("tags/ssh", func(w *world) fixture { return fixture{tag: true, hash: w.tag(w.alice, t0), signers: aliceSigners(w)} }),
		ok("tags/openpgp", func(w *world) fixture {
			return fixture{tag: true, hash: w.tag(w.pgp, t0), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("tags/unsigned annotated tag", func(w *world) fixture {
			return fixture{tag: true, hash: w.tag(nil, t0), signers: aliceSigners(w), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		no("tags/ssh, untrusted key", func(w *world) fixture {
			return fixture{tag: true, hash: w.tag(w.mallory, t0), signers: aliceSigners(w)}
		}),
		ok("tags/ssh inside its window (tagger date)", func(w *world) fixture {
			return fixture{tag: true, hash: w.tag(w.alice, t0), signers: line("alice@example.com", `valid-after="20250301Z",valid-before="20250302Z"`, w.alice) + "\n"}
		}),
		no("tags/ssh outside its window (tagger date)", func(w *world) fixture {
			return fixture{tag: true, hash: w.tag(w.alice, t0), signers: line("alice@example.com", `valid-before="20250228Z"`, w.alice) + "\n"}
		}),
		stricter("tags/ssh, local-time window", whyLocalTime, func(w *world) fixture {
			return fixture{tag: true, hash: w.tag(w.alice, t0), signers: line("alice@example.com", `valid-after="20250228"`, w.alice) + "\n"}
		}),
		no("tags/ssh, message changed", func(w *world) fixture {
			return fixture{tag: true, signers: aliceSigners(w), hash: w.rawTag(w.alice, func(p, s []byte) []byte {
				return append(bytes.Replace(p, []byte("release"), []byte("Release"), 1), s...)
			})}
		}),
		no("tags/openpgp, message changed", func(w *world) fixture {
			return fixture{tag: true, keyrings: [][]byte{w.pgp.ArmoredPublic}, hash: w.rawTag(w.pgp, func(p, s []byte) []byte {
				return append(bytes.Replace(p, []byte("release"), []byte("Release"), 1), s...)
			})}
		}),
		stricter("tags/ssh, text after the signature", whyFraming, func(w *world) fixture {
			return fixture{tag: true, signers: aliceSigners(w), hash: w.rawTag(w.alice, func(p, s []byte) []byte {
				return append(append(p, s...), "trailing text\n"...)
			})}
		}),
		stricter("tags/openpgp, text after the signature", whyFraming, func(w *world) fixture {
			return fixture{tag: true, keyrings: [][]byte{w.pgp.ArmoredPublic}, hash: w.rawTag(w.pgp, func(p, s []byte) []byte {
				return append(append(p, s...), "trailing text\n"...)
			})}
		}),
		stricter("tags/signature block inside the message, then a valid one", whyFraming, func(w *world) fixture {
			return fixture{tag: true, keyrings: [][]byte{w.pgp.ArmoredPublic}, hash: w.rawTag(w.pgp, func(p, s []byte) []byte {
				fake := append(append([]byte{}, p...), "-----BEGIN PGP SIGNATURE-----\nnot a signature\n-----END PGP SIGNATURE-----\n"...)
				return append(fake, w.pgp.Sign(w.t, fake)...)
			})}
		}),
		ok("tags/openpgp with blanks after armor lines", func(w *world) fixture {
			return fixture{tag: true, keyrings: [][]byte{w.pgp.ArmoredPublic}, hash: w.rawTag(w.pgp, func(p, s []byte) []byte {
				return append(p, mapLines(s, trailingBlanks)...)
			})}
		}),
		ok("tags/ssh with blanks after body and END lines", func(w *world) fixture {
			return fixture{tag: true, signers: aliceSigners(w), hash: w.rawTag(w.alice, func(p, s []byte) []byte {
				return append(p, mapLines(s, func(i int, l string) string {
					if i == 0 {
						return l
					}
					return l + "  "
				})...)
			})}
		}),
		no("tags/header added after signing", func(w *world) fixture {
			return fixture{tag: true, keyrings: [][]byte{w.pgp.ArmoredPublic}, hash: w.rawTag(w.pgp, func(p, s []byte) []byte {
				return append(withHeader(p, "x-note added later"), s...)
			})}
		}),
		no("tags/openpgp signature glued to the message's last line", func(w *world) fixture {
			return fixture{tag: true, keyrings: [][]byte{w.pgp.ArmoredPublic}, hash: w.rawTag(w.pgp, func(p, _ []byte) []byte {
				p = bytes.TrimSuffix(p, []byte("\n"))
				return append(p, w.pgp.Sign(w.t, p)...)
			})}
		}),
		no("tags/ssh signature glued to the message's last line", func(w *world) fixture {
			return fixture{tag: true, signers: aliceSigners(w), hash: w.rawTag(w.alice, func(p, _ []byte) []byte {
				p = bytes.TrimSuffix(p, []byte("\n"))
				return append(p, w.alice.Sign(w.t, p, "git")...)
			})}
		}),
		no("tags/openpgp signature, then an ssh one", func(w *world) fixture {
			return fixture{tag: true, signers: aliceSigners(w), keyrings: [][]byte{w.pgp.ArmoredPublic}, hash: w.rawTag(w.pgp, func(p, s []byte) []byte {
				return append(append(p, s...), w.alice.Sign(w.t, p, "git")...)
			})}
		}),
		stricter("tags/openpgp text mode", whyTextMode, func(w *world) fixture {
			return fixture{tag: true, hash: w.tag(w.gpgWith(w.pgp, "--textmode"), t0), keyrings: [][]byte{w.pgp.ArmoredPublic}}
		}),
		ok("tags/openpgp signing subkey", func(w *world) fixture {
			g := w.subkeyKey("Tag Sub")
			return fixture{tag: true, hash: w.tag(g, t0), keyrings: [][]byte{g.ArmoredPublic}}
		}),
		ok("tags/ssh ecdsa", func(w *world) fixture {
			k := w.sshTypes["ecdsa-256"]
			return fixture{tag: true, hash: w.tag(k, t0), signers: line("alice@example.com", `namespaces="git"`, k) + "\n"}
		}),
	}
}
