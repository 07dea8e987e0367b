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
// Principals are comma-separated and may be enclosed in double quotes.
// Options are comma-separated: namespaces="a,b", valid-after="…",
// valid-before="…" (YYYYMMDD[HHMM[SS]], with a trailing Z for UTC, else
// local time, as ssh-keygen reads them). cert-authority lines are refused
// because writ does not accept SSH certificates. Blank lines and lines
// starting with # are skipped.
//
// Unlike ssh-keygen, namespace patterns are not expanded: "*", "?" and "!"
// are refused so that a list always means exactly what it says.
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
		for _, r := range string(raw) {
			switch {
			case r == '\r':
				return nil, fmt.Errorf("allowed_signers line %d: carriage return; save the file with LF line endings", n)
			case r == '\t':
			case unicode.IsControl(r):
				return nil, fmt.Errorf("allowed_signers line %d: control character %U", n, r)
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

// nextToken splits off the first blank-separated token of s. A double
// quote starts a quoted run, in which blanks do not end the token; quotes
// do not nest and have no escape, as in ssh-keygen's option syntax.
func nextToken(s string) (tok, rest string, err error) {
	inQuote := false
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
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

// splitOptions splits a comma-separated option list, keeping commas
// inside double quotes.
func splitOptions(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

func parseSignerOptions(opts string, s *AllowedSigner) error {
	seen := map[string]bool{}
	for _, opt := range splitOptions(opts) {
		name, value, hasValue := strings.Cut(opt, "=")
		lname := strings.ToLower(name)
		if seen[lname] {
			return fmt.Errorf("option %s given twice", lname)
		}
		seen[lname] = true
		if lname == "cert-authority" {
			return fmt.Errorf("cert-authority: writ does not accept SSH certificates; list each signer's plain public key instead")
		}
		var v string
		switch lname {
		case "namespaces", "valid-after", "valid-before":
			if !hasValue || len(value) < 2 || value[0] != '"' || value[len(value)-1] != '"' || strings.Count(value, `"`) != 2 {
				return fmt.Errorf(`option %s needs a double-quoted value, for example %s="..."`, lname, lname)
			}
			v = value[1 : len(value)-1]
		case "":
			return fmt.Errorf("empty option in %q", opts)
		default:
			return fmt.Errorf("unknown option %q (accepted: namespaces, valid-after, valid-before)", name)
		}
		switch lname {
		case "namespaces":
			for _, ns := range strings.Split(v, ",") {
				if ns == "" {
					return fmt.Errorf("namespaces: empty namespace in %q", v)
				}
				if strings.ContainsAny(ns, "*?! \t") {
					return fmt.Errorf("namespaces: %q is a pattern; writ compares namespaces exactly, list them in full (for example \"git\")", ns)
				}
				s.Namespaces = append(s.Namespaces, ns)
			}
		case "valid-after":
			t, err := parseSignerTime(v)
			if err != nil {
				return fmt.Errorf("valid-after: %w", err)
			}
			s.ValidAfter = t
		case "valid-before":
			t, err := parseSignerTime(v)
			if err != nil {
				return fmt.Errorf("valid-before: %w", err)
			}
			s.ValidBefore = t
		}
	}
	if !s.ValidAfter.IsZero() && !s.ValidBefore.IsZero() && !s.ValidAfter.Before(s.ValidBefore) {
		return fmt.Errorf("valid-after %s is not before valid-before %s", s.ValidAfter.Format(time.RFC3339), s.ValidBefore.Format(time.RFC3339))
	}
	return nil
}

// parseSignerTime reads ssh-keygen's YYYYMMDD[HHMM[SS]][Z] time format.
func parseSignerTime(v string) (time.Time, error) {
	loc := time.Local
	digits := v
	if strings.HasSuffix(v, "Z") {
		loc, digits = time.UTC, v[:len(v)-1]
	}
	for _, c := range []byte(digits) {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", v)
		}
	}
	var layout string
	switch len(digits) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", v)
	}
	t, err := time.ParseInLocation(layout, digits, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a valid date: %v", v, err)
	}
	return t, nil
}
