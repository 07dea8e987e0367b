package gitsig

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// AllowedSigner is one line of git's allowed_signers file.
type AllowedSigner struct {
	// Principals are the identities the line names, in file order.
	Principals []string
	// Namespaces the key may sign in; empty means any.
	Namespaces []string
	// ValidAfter and ValidBefore bound when signatures are accepted; zero
	// means unbounded.
	ValidAfter, ValidBefore time.Time
	// CertAuthority is never true in a parsed file: writ does not accept
	// SSH certificates, and ParseAllowedSigners refuses such lines.
	CertAuthority bool
	// Key is the trusted public key.
	Key ssh.PublicKey
	// Line is the 1-based line number in the parsed data.
	Line int
}

// Limits that keep parsing bounded whatever the input.
const (
	maxAllowedSignersBytes = 1 << 20
	maxAllowedSignersLines = 10000
	maxAllowedSignersLine  = 16 << 10
	minRSABits             = 2048
)

// ParseAllowedSigners parses data in the syntax of ssh-keygen's
// allowed_signers file, as git's gpg.ssh.allowedSignersFile uses it:
//
//	principals [options] keytype base64-key [comment]
//
// It reads what ssh-keygen reads (see docs/allowlist.md), with a few
// refusals where ssh-keygen's reading is ambiguous or too loose for a
// trust root; each refusal is an error naming the line and the fix:
//
//   - Principals are literal identities. ssh-keygen reads them as a
//     pattern list, where "!" negates and "*" and "?" match any text, so
//     "!old@example.com" trusts nobody there but a key-only reader would
//     trust it; writ refuses the pattern characters *, ? and ! outright.
//   - Namespaces are compared exactly; patterns, blanks and empty names
//     are refused.
//   - valid-after and valid-before must be in UTC (suffix Z or UTC, any
//     case). Without it ssh-keygen reads the time in each host's local
//     zone, as standard time even under daylight saving time, so hosts
//     disagree by hours. Times at or before the Unix epoch, which
//     ssh-keygen refuses, are refused.
//   - Invisible formatting characters (byte order mark, zero-width,
//     bidi) are refused: they make one name look like another.
//   - cert-authority lines and certificate key types are refused: writ
//     does not accept SSH certificates.
//
// Lines end with LF or CRLF; blank lines and lines starting with # are
// skipped. An option value may hold \" for a double quote, as in
// ssh-keygen.
func ParseAllowedSigners(data []byte) ([]AllowedSigner, error) {
	if len(data) > maxAllowedSignersBytes {
		return nil, fmt.Errorf("allowed_signers: %d bytes is more than the %d accepted", len(data), maxAllowedSignersBytes)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("allowed_signers: not valid UTF-8")
	}
	lines := bytes.Split(data, []byte("\n"))
	if len(lines) > maxAllowedSignersLines+1 {
		return nil, fmt.Errorf("allowed_signers: more than %d lines", maxAllowedSignersLines)
	}
	var out []AllowedSigner
	for i, raw := range lines {
		n := i + 1
		if len(raw) > maxAllowedSignersLine {
			return nil, fmt.Errorf("allowed_signers line %d: longer than %d bytes", n, maxAllowedSignersLine)
		}
		// CRLF line endings, as a file saved on Windows has them, are
		// read as ssh-keygen reads them; a CR anywhere else is refused.
		raw = bytes.TrimSuffix(raw, []byte("\r"))
		for _, r := range string(raw) {
			switch {
			case r == '\r':
				return nil, fmt.Errorf("allowed_signers line %d: carriage return inside the line; end lines with LF or CRLF only", n)
			case r == '\t':
			case unicode.IsControl(r):
				return nil, fmt.Errorf("allowed_signers line %d: control character %U", n, r)
			case unicode.Is(unicode.Cf, r):
				// A byte order mark, zero-width or bidi character makes
				// a name look like another one; ssh-keygen keeps it.
				return nil, fmt.Errorf("allowed_signers line %d: invisible formatting character %U; remove it (save the file as UTF-8 without a byte order mark)", n, r)
			}
		}
		line := strings.TrimLeft(string(raw), " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseAllowedSignerLine(line)
		if err != nil {
			return nil, fmt.Errorf("allowed_signers line %d: %w", n, err)
		}
		s.Line = n
		out = append(out, s)
	}
	return out, nil
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// nextToken splits off the first blank-separated token of s, as
// ssh-keygen's sshkey_advance_past_options does: a double quote starts a
// quoted run, in which blanks do not end the token, and \" is a literal
// quote that neither starts nor ends one.
func nextToken(s string) (tok, rest string, err error) {
	inQuote := false
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if c == '\\' && i+1 < len(s) && s[i+1] == '"' {
			i++
			continue
		}
		if c == '"' {
			inQuote = !inQuote
			continue
		}
		if !inQuote && isBlank(c) {
			break
		}
	}
	if inQuote {
		return "", "", fmt.Errorf("unterminated double quote")
	}
	return s[:i], strings.TrimLeft(s[i:], " \t"), nil
}

// patternChars are the characters OpenSSH's match_pattern_list gives a
// meaning to in principals and namespaces.
const patternChars = "*?!"

func parseAllowedSignerLine(line string) (AllowedSigner, error) {
	var s AllowedSigner

	// Principals: a quoted string, or up to the first blank.
	var principals string
	if line[0] == '"' {
		end := strings.IndexByte(line[1:], '"')
		if end < 0 {
			return s, fmt.Errorf("unterminated double quote in principals")
		}
		principals = line[1 : 1+end]
		line = line[2+end:]
		if line != "" && !isBlank(line[0]) {
			return s, fmt.Errorf("principals: text follows the closing quote; separate the key with a space")
		}
		line = strings.TrimLeft(line, " \t")
	} else {
		i := strings.IndexAny(line, " \t")
		if i < 0 {
			return s, fmt.Errorf("principals without a key; expected: principals [options] keytype base64-key")
		}
		principals, line = line[:i], strings.TrimLeft(line[i:], " \t")
	}
	for _, p := range strings.Split(principals, ",") {
		if strings.TrimSpace(p) == "" {
			return s, fmt.Errorf("empty principal in %q", principals)
		}
		if strings.Contains(p, `"`) {
			return s, fmt.Errorf("principal %q contains a double quote", p)
		}
		if strings.ContainsAny(p, patternChars) {
			return s, principalPatternError(p)
		}
		s.Principals = append(s.Principals, p)
	}

	tok, rest, err := nextToken(line)
	if err != nil {
		return s, err
	}
	if tok == "" {
		return s, fmt.Errorf("missing key; expected: principals [options] keytype base64-key")
	}
	// A key type never contains '=' or '"' and is never an option name, so
	// this tells an option list from the key type without guessing.
	if strings.ContainsAny(tok, `="`) || strings.EqualFold(tok, "cert-authority") || strings.Contains(tok, ",") {
		if err := parseSignerOptions(tok, &s); err != nil {
			return s, err
		}
		if tok, rest, err = nextToken(rest); err != nil {
			return s, err
		}
	}
	keyType := tok
	blob64, _, _ := strings.Cut(rest, " ")
	blob64, _, _ = strings.Cut(blob64, "\t")
	if keyType == "" || blob64 == "" {
		return s, fmt.Errorf("missing key; expected: principals [options] keytype base64-key")
	}
	key, err := parseSignerKey(keyType, blob64)
	if err != nil {
		return s, err
	}
	s.Key = key
	return s, nil
}

// principalPatternError explains why a principal holding a pattern
// character is refused. OpenSSH matches the principal git asks about
// against the line's principals as a pattern list, so "!x" is a negation
// that makes the line trust nobody, and "*" trusts any name; a reader that
// matched on the key alone would trust the first and report a name no one
// holds. A trust root should say exactly who signs, so writ takes neither
// reading.
func principalPatternError(p string) error {
	if strings.HasPrefix(p, "!") {
		return fmt.Errorf("principal %q is a negation: ssh-keygen reads principals as a pattern list, where a line whose principals are all negated trusts nobody, and writ does not take patterns in a trust root; to stop trusting a key, delete its line", p)
	}
	return fmt.Errorf("principal %q holds a pattern character (one of %s): ssh-keygen reads principals as a pattern list, and writ does not take patterns in a trust root; list each identity in full, for example alice@example.com", p, patternChars)
}

func parseSignerKey(keyType, blob64 string) (ssh.PublicKey, error) {
	if strings.HasSuffix(keyType, "-cert-v01@openssh.com") {
		return nil, fmt.Errorf("key type %s is an SSH certificate; writ does not accept certificates, list the plain public key instead", keyType)
	}
	blob, err := base64.StdEncoding.Strict().DecodeString(blob64)
	if err != nil {
		return nil, fmt.Errorf("key is not valid base64: %v", err)
	}
	key, err := ssh.ParsePublicKey(blob)
	if err != nil {
		return nil, fmt.Errorf("cannot parse %s key: %v", keyType, err)
	}
	if key.Type() != keyType {
		return nil, fmt.Errorf("key type field says %s but the key is %s", keyType, key.Type())
	}
	switch key.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
	case ssh.KeyAlgoRSA:
		ck, ok := key.(ssh.CryptoPublicKey)
		if !ok {
			return nil, fmt.Errorf("cannot read RSA key size")
		}
		type sizer interface{ Size() int }
		if sz, ok := ck.CryptoPublicKey().(sizer); !ok || sz.Size()*8 < minRSABits {
			return nil, fmt.Errorf("RSA key shorter than %d bits; use an ed25519 key", minRSABits)
		}
	default:
		return nil, fmt.Errorf("key type %s is not accepted; use ed25519, ECDSA or RSA (%d bits or more)", key.Type(), minRSABits)
	}
	return key, nil
}

// parseSignerOptions reads a comma-separated option list the way
// ssh-keygen's sshsigopt_parse does: names in any case, values in double
// quotes with \" for a quote, no option twice, nothing unknown.
func parseSignerOptions(opts string, s *AllowedSigner) error {
	seen := map[string]bool{}
	rest := opts
	for {
		end := strings.IndexAny(rest, "=,")
		if end < 0 {
			end = len(rest)
		}
		name := rest[:end]
		lname := strings.ToLower(name)
		if lname == "cert-authority" {
			return fmt.Errorf("cert-authority: writ does not accept SSH certificates; list each signer's plain public key instead")
		}
		if name == "" {
			return fmt.Errorf("empty option in %q", opts)
		}
		switch lname {
		case "namespaces", "valid-after", "valid-before":
		default:
			return fmt.Errorf("unknown option %q (accepted: namespaces, valid-after, valid-before)", name)
		}
		if seen[lname] {
			return fmt.Errorf("option %s given twice", lname)
		}
		seen[lname] = true
		if end == len(rest) || rest[end] != '=' || end+1 == len(rest) || rest[end+1] != '"' {
			return fmt.Errorf(`option %s needs a double-quoted value, for example %s="..."`, lname, lname)
		}
		v, after, ok := dequote(rest[end+1:])
		if !ok {
			return fmt.Errorf("option %s: unterminated double quote", lname)
		}
		if err := setSignerOption(s, lname, v); err != nil {
			return err
		}
		if after == "" {
			break
		}
		if after[0] != ',' {
			return fmt.Errorf("option %s: text follows the closing quote; separate options with commas", lname)
		}
		if rest = after[1:]; rest == "" {
			return fmt.Errorf("option list %q ends with a comma", opts)
		}
	}
	if !s.ValidAfter.IsZero() && !s.ValidBefore.IsZero() && !s.ValidAfter.Before(s.ValidBefore) {
		return fmt.Errorf("valid-after %s is not before valid-before %s", s.ValidAfter.Format(time.RFC3339), s.ValidBefore.Format(time.RFC3339))
	}
	return nil
}

// dequote reads a double-quoted value at the start of s, with \" standing
// for a quote (any other backslash is literal), as OpenSSH's opt_dequote
// does, and returns the value and what follows the closing quote.
func dequote(s string) (value, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		case s[i] == '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", false
}

func setSignerOption(s *AllowedSigner, name, v string) error {
	switch name {
	case "namespaces":
		for _, ns := range strings.Split(v, ",") {
			if ns == "" {
				return fmt.Errorf("namespaces: empty namespace in %q", v)
			}
			if strings.ContainsAny(ns, patternChars+" \t") {
				return fmt.Errorf("namespaces: %q is a pattern or holds a blank; writ compares namespaces exactly, list them in full (for example \"git\")", ns)
			}
			s.Namespaces = append(s.Namespaces, ns)
		}
	case "valid-after":
		t, err := parseSignerTime(name, v)
		if err != nil {
			return err
		}
		s.ValidAfter = t
	case "valid-before":
		t, err := parseSignerTime(name, v)
		if err != nil {
			return err
		}
		s.ValidBefore = t
	}
	return nil
}

// parseSignerTime reads ssh-keygen's YYYYMMDD[HHMM[SS]] time format with
// its UTC suffix, Z or UTC in any case. A time without the suffix is
// refused: ssh-keygen reads it in the local time zone of each host that
// verifies, and as standard time even while daylight saving time is in
// force (mktime with tm_isdst 0), so two hosts, or one host and a person,
// would disagree about the window by up to a day.
func parseSignerTime(name, v string) (time.Time, error) {
	digits, utc := v, false
	switch {
	case len(v) > 1 && strings.EqualFold(v[len(v)-1:], "Z"):
		digits, utc = v[:len(v)-1], true
	case len(v) > 3 && strings.EqualFold(v[len(v)-3:], "UTC"):
		digits, utc = v[:len(v)-3], true
	}
	bad := fmt.Errorf("%s=%q is not YYYYMMDD[HHMM[SS]]Z, for example %s=\"20260131Z\"", name, v, name)
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return time.Time{}, bad
		}
	}
	layout, ok := signerTimeLayouts[len(digits)]
	if !ok {
		return time.Time{}, bad
	}
	if !utc {
		return time.Time{}, localTimeError(name, v, layout)
	}
	t, err := time.ParseInLocation(layout, digits, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s=%q is not a valid date: %v", name, v, err)
	}
	// ssh-keygen refuses times before the Unix epoch and takes the epoch
	// itself for "no time given", so it drops such a line (and git with
	// it) where a reader of the date would trust the key.
	if t.Unix() <= 0 {
		return time.Time{}, fmt.Errorf("%s=%q is not after 1970-01-01 00:00:00 UTC, which ssh-keygen refuses; remove the option or give a later time", name, v)
	}
	return t, nil
}

var signerTimeLayouts = map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}

// localTimeError refuses a time without a zone and shows its UTC form as
// this host's local wall-clock time reads it, for the operator to check.
func localTimeError(name, v, layout string) error {
	msg := fmt.Sprintf("%s=%q has no time zone: ssh-keygen reads it in the local time zone of each host, as standard time even in summer, so hosts disagree about it; writ requires UTC", name, v)
	local, err := time.ParseInLocation(layout, v, time.Local)
	if err != nil {
		return fmt.Errorf("%s: write %s=\"%sZ\" with the time in UTC", msg, name, v)
	}
	u := local.UTC()
	utcForm := u.Format("20060102150405")
	switch {
	case len(v) == 8 && u.Hour() == 0 && u.Minute() == 0 && u.Second() == 0:
		utcForm = u.Format("20060102")
	case u.Second() == 0:
		utcForm = u.Format("200601021504")
	}
	zone, _ := local.Zone()
	return fmt.Errorf("%s: write %s=\"%sZ\" if you meant %s in this host's zone (%s)", msg, name, utcForm, local.Format("2006-01-02 15:04:05"), zone)
}
