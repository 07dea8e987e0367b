// Package gitsig verifies OpenPGP and SSH signatures on git commits and
// tags, and SSH signatures on detached messages, against a fixed set of
// trusted keys.
//
// It is used for allowlist commits (keys from writ's configuration) and for
// application commits (keys from the allowlist's signer sets). Signature
// bytes come from repositories GitLab hosts, so they are parsed strictly:
// exactly one signature block, nothing before or after it, one signature
// packet inside it.
//
// The signed payload is the object without its gpgsig and gpgsig-sha256
// headers, as go-git produces it. A gpgsig-sha256 header added to a signed
// commit therefore leaves it verifying under a new hash with the same
// content; callers that pin commits compare hashes, which that changes.
package gitsig

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signer identifies who made a verified signature.
type Signer struct {
	// Kind is "openpgp" or "ssh".
	Kind string
	// Fingerprint is, for OpenPGP, the primary key fingerprint in upper-case
	// hex (also when a subkey signed); for SSH, "SHA256:…" as ssh-keygen -l
	// prints it.
	Fingerprint string
	// Principal is, for SSH, the principals of the matching allowed_signers
	// line joined by ","; for OpenPGP, the primary user ID. SSH principals
	// are literal names (ParseAllowedSigners refuses patterns), so each is
	// an identity the line gives the key; git reports the first.
	Principal string
}

// Signer kinds.
const (
	KindOpenPGP = "openpgp"
	KindSSH     = "ssh"
)

// Keys is a set of trusted keys built once; verification is per call and
// safe for concurrent use.
type Keys struct {
	openpgp openpgp.EntityList
	ssh     []AllowedSigner
}

const (
	maxKeyringBytes = 8 << 20
	publicKeyType   = "PGP PUBLIC KEY BLOCK"
	privateKeyType  = "PGP PRIVATE KEY BLOCK"
)

// NewKeys builds a key set from armored OpenPGP public keys and parsed
// allowed_signers lines. Every armor block of every input is read (a
// keyring file often concatenates several); text outside blocks is
// ignored. A private key block, a block of another type, an input without
// any block, or a key that does not parse is an error, so a broken
// keyring never silently trusts fewer keys than the operator meant.
func NewKeys(openpgpArmored [][]byte, ssh []AllowedSigner) (*Keys, error) {
	k := &Keys{}
	for i, data := range openpgpArmored {
		el, err := readArmoredKeys(data)
		if err != nil {
			return nil, fmt.Errorf("OpenPGP keys #%d: %w", i+1, err)
		}
		k.openpgp = append(k.openpgp, el...)
	}
	for _, s := range ssh {
		if s.CertAuthority {
			return nil, fmt.Errorf("allowed_signers line %d: cert-authority: writ does not accept SSH certificates", s.Line)
		}
		if s.Key == nil {
			return nil, fmt.Errorf("allowed_signers line %d: no key", s.Line)
		}
		k.ssh = append(k.ssh, s)
	}
	return k, nil
}

// Fingerprints lists the trusted OpenPGP primary key fingerprints (upper
// hex) and SSH key fingerprints ("SHA256:…"), sorted and without
// duplicates.
func (k *Keys) Fingerprints() []string {
	seen := map[string]bool{}
	var out []string
	add := func(f string) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, e := range k.openpgp {
		add(fingerprint(e.PrimaryKey))
	}
	for _, s := range k.ssh {
		add(sshFingerprint(s.Key))
	}
	sort.Strings(out)
	return out
}

func fingerprint(pk *packet.PublicKey) string {
	return strings.ToUpper(hex.EncodeToString(pk.Fingerprint))
}

// readArmoredKeys reads every armor block in data.
func readArmoredKeys(data []byte) (openpgp.EntityList, error) {
	if len(data) > maxKeyringBytes {
		return nil, fmt.Errorf("%d bytes is more than the %d accepted", len(data), maxKeyringBytes)
	}
	blocks, err := splitArmor(data)
	if err != nil {
		return nil, err
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no armored key block found; export keys with gpg --armor --export")
	}
	var el openpgp.EntityList
	for i, b := range blocks {
		switch b.typ {
		case publicKeyType:
		case privateKeyType:
			return nil, fmt.Errorf("block %d (line %d) is a private key; give only public keys (gpg --armor --export)", i+1, b.line)
		default:
			return nil, fmt.Errorf("block %d (line %d) is a %q block, want %q", i+1, b.line, b.typ, publicKeyType)
		}
		ab, err := armor.Decode(bytes.NewReader(b.data))
		if err != nil {
			return nil, fmt.Errorf("block %d (line %d): %v", i+1, b.line, err)
		}
		body, err := io.ReadAll(io.LimitReader(ab.Body, maxKeyringBytes))
		if err != nil {
			return nil, fmt.Errorf("block %d (line %d): %v", i+1, b.line, err)
		}
		if err := checkArmorChecksum(string(b.data), body); err != nil {
			return nil, fmt.Errorf("block %d (line %d): %v; export the key again with gpg --armor --export", i+1, b.line, err)
		}
		packets := packet.NewReader(bytes.NewReader(body))
		n := 0
		for {
			e, err := openpgp.ReadEntity(packets)
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("block %d (line %d), key %d: %v", i+1, b.line, n+1, err)
			}
			if e.PrivateKey != nil {
				return nil, fmt.Errorf("block %d (line %d) holds a private key; give only public keys", i+1, b.line)
			}
			el = append(el, e)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("block %d (line %d) holds no key", i+1, b.line)
		}
	}
	return el, nil
}

type armorBlock struct {
	typ  string
	line int
	data []byte
}

// splitArmor cuts data into its armor blocks, from a "-----BEGIN X-----"
// line to the matching "-----END X-----" line.
func splitArmor(data []byte) ([]armorBlock, error) {
	var blocks []armorBlock
	var cur *armorBlock
	start := 0
	lineNo := 0
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		lineNo++
		line := strings.TrimRight(string(data[off:next]), "\r\n \t")
		switch {
		case strings.HasPrefix(line, "-----BEGIN ") && strings.HasSuffix(line, "-----"):
			if cur != nil {
				return nil, fmt.Errorf("line %d: %s inside the block started on line %d", lineNo, line, cur.line)
			}
			cur = &armorBlock{typ: strings.TrimSuffix(strings.TrimPrefix(line, "-----BEGIN "), "-----"), line: lineNo}
			start = off
		case strings.HasPrefix(line, "-----END ") && strings.HasSuffix(line, "-----"):
			typ := strings.TrimSuffix(strings.TrimPrefix(line, "-----END "), "-----")
			if cur == nil {
				return nil, fmt.Errorf("line %d: %s without a BEGIN line", lineNo, line)
			}
			if typ != cur.typ {
				return nil, fmt.Errorf("line %d: %s ends a %q block", lineNo, line, cur.typ)
			}
			cur.data = data[start:next]
			blocks = append(blocks, *cur)
			cur = nil
		}
		off = next
	}
	if cur != nil {
		return nil, fmt.Errorf("block started on line %d has no END line", cur.line)
	}
	return blocks, nil
}

// HasOpenPGP reports whether any OpenPGP key is trusted.
func (k *Keys) HasOpenPGP() bool { return len(k.openpgp) > 0 }
