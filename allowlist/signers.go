package allowlist

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"golang.org/x/crypto/ssh"

	"gitlab.com/writ-ci/writ/internal/gitsig"
)

// checkOpenPGPKey checks that an armored key file holds exactly one OpenPGP
// public key and that its primary key has fingerprint fpr (upper-case hex).
// Every armor block is read. More than one key is refused, not ignored:
// whoever loads Armored later trusts what is in it, so the file must hold
// nothing but the pinned key.
func checkOpenPGPKey(data []byte, fpr string) string {
	br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	var found []string
	blocks := 0
	for {
		// armor.Decode wraps its reader in a bufio.Reader of at least 100
		// bytes, and a *bufio.Reader that large is used as it is: passing
		// the same br each time continues after the previous block.
		blk, err := armor.Decode(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Sprintf("is not valid ASCII armor (%v): export the key with gpg --armor --export FINGERPRINT", err)
		}
		blocks++
		switch blk.Type {
		case openpgp.PublicKeyType:
		case openpgp.PrivateKeyType:
			return "contains a PRIVATE key: remove it from the repository and its history, treat the key as compromised, and commit only the public key (gpg --armor --export)"
		default:
			return fmt.Sprintf("contains a %q armor block: keep only the public key block", blk.Type)
		}
		el, err := openpgp.ReadKeyRing(blk.Body)
		_, _ = io.Copy(io.Discard, blk.Body)
		if err != nil {
			return fmt.Sprintf("holds a key that cannot be read (%v): export it again with gpg --armor --export FINGERPRINT", err)
		}
		for _, e := range el {
			if e.PrivateKey != nil {
				return "contains a PRIVATE key: remove it from the repository and its history, treat the key as compromised, and commit only the public key (gpg --armor --export)"
			}
			found = append(found, strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)))
		}
	}
	if blocks > 0 {
		// Jobs are verified with gitsig.NewKeys over these same bytes, and
		// it frames armor strictly where armor.Decode is lenient (a BEGIN
		// line with text after its type, garbage around the block): a file
		// must not pass here and then fail, or trust something else, there.
		if _, err := gitsig.NewKeys([][]byte{data}, nil); err != nil {
			return fmt.Sprintf("is not a well-formed armored key file (%v): export the key again with gpg --armor --export FINGERPRINT", err)
		}
	}
	switch {
	case blocks == 0:
		return "holds no armored OpenPGP public key: export it with gpg --armor --export FINGERPRINT"
	case len(found) == 0:
		return "holds no OpenPGP key this writ can read"
	case len(found) > 1:
		return fmt.Sprintf("holds %d keys (%s): keep only the key %s in the file, so that no other key is trusted", len(found), strings.Join(found, ", "), fpr)
	case found[0] != fpr:
		return fmt.Sprintf("holds the key %s, not %s: fix the fingerprint or the file", found[0], fpr)
	}
	return ""
}

// checkSSHLine checks one allowlist ssh item, a line of git's
// allowed_signers syntax, with the same parser the verifier uses
// (gitsig.ParseAllowedSigners), so the two never disagree about a line. It
// returns the key's SHA256 fingerprint.
func checkSSHLine(line string) (string, string) {
	if strings.ContainsAny(line, "\n\r") {
		return "", "line holds a line break: write one key per list item"
	}
	signers, err := gitsig.ParseAllowedSigners([]byte(line))
	if err != nil {
		return "", strings.TrimPrefix(err.Error(), "allowed_signers line 1: ") + " (write principals, optional options, key type and key, as in git's allowed_signers file)"
	}
	if len(signers) != 1 {
		return "", "line is empty or a comment: write principals, optional options, key type and key"
	}
	s := signers[0]
	if len(s.Namespaces) > 0 && !contains(s.Namespaces, "git") {
		return "", fmt.Sprintf("namespaces=%q does not include git: commits and tags are signed in namespace git; add it or drop the option", strings.Join(s.Namespaces, ","))
	}
	return ssh.FingerprintSHA256(s.Key), ""
}
