package gitsig

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gitlab.com/writ-ci/writ/internal/testkeys"
)

// breakChecksum replaces the "=XXXX" line of an armored block with
// another valid-looking checksum.
func breakChecksum(t *testing.T, armored []byte) []byte {
	t.Helper()
	lines := strings.Split(string(armored), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "=") && len(l) == 5 {
			if l == "=AAAA" {
				lines[i] = "=BBBB"
			} else {
				lines[i] = "=AAAA"
			}
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatalf("no checksum line in:\n%s", armored)
	return nil
}

// The armor checksum is optional, as for gpg, but must match when present:
// the decoder does not check it, and gpg refuses a mismatch. Blanks at the
// ends of armor lines are ignored, as gpg ignores them.
func TestVerifyCommitOpenPGPArmor(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	payload := r.RawObject(t, "commit", r.Commit(t, map[string]string{"a.txt": "a"}, "payload", nil))
	sig := g.Sign(t, payload)
	keys := gpgKeys(t, g.ArmoredPublic)
	verify := func(sig []byte) error {
		_, err := keys.VerifyCommit(openCommit(t, r, r.SignedCommit(t, payload, sig)), time.Now())
		return err
	}
	wantErr(t, verify(breakChecksum(t, sig)), "armor checksum does not match")
	var noCRC []string
	for _, l := range strings.Split(string(sig), "\n") {
		if !strings.HasPrefix(l, "=") {
			noCRC = append(noCRC, l)
		}
	}
	if err := verify([]byte(strings.Join(noCRC, "\n"))); err != nil {
		t.Errorf("without checksum line: %v", err)
	}
	blanks := strings.ReplaceAll(string(sig), "\n", " \t\n")
	if err := verify([]byte(blanks)); err != nil {
		t.Errorf("blanks after armor lines: %v", err)
	}
}

func TestNewKeysArmorChecksum(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	_, err := NewKeys([][]byte{breakChecksum(t, g.ArmoredPublic)}, nil)
	wantErr(t, err, "block 1 (line 1): armor checksum does not match", "export the key again")
	if _, err := NewKeys([][]byte{bytes.ReplaceAll(g.ArmoredPublic, []byte("\n"), []byte("\r\n"))}, nil); err != nil {
		t.Errorf("CRLF keyring: %v", err)
	}
}

func TestCRC24(t *testing.T) {
	t.Parallel()
	// RFC 4880's initial value is the checksum of no data; the other is
	// the checksum of "123456789" in the CRC-24/OPENPGP catalogue entry.
	for in, want := range map[string]uint32{"": 0xb704ce, "123456789": 0x21cf02} {
		if got := crc24([]byte(in)); got != want {
			t.Errorf("crc24(%q) = %06x, want %06x", in, got, want)
		}
	}
}

// git signs in binary mode; a text-mode signature would also verify over
// the commit with CRLF line endings, so it is refused.
func TestVerifyCommitTextModeRefused(t *testing.T) {
	t.Parallel()
	g := testkeys.GPGKey(t, "Alice", "alice@example.com")
	r := testkeys.GitRepo(t)
	payload := r.RawObject(t, "commit", r.Commit(t, map[string]string{"a.txt": "a"}, "payload", nil))
	cmd := exec.Command(g.Program, "--textmode", "--armor", "--detach-sign", "--local-user", g.SigningFingerprint)
	cmd.Stdin = bytes.NewReader(payload)
	sig, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	_, err = gpgKeys(t, g.ArmoredPublic).VerifyCommit(openCommit(t, r, r.SignedCommit(t, payload, sig)), time.Now())
	wantErr(t, err, "text mode", "binary mode")
}

// A commit's date must be an hour inside an SSH validity window (git's
// own reading is an hour off on hosts with daylight saving time); a
// detached signature's time is judged exactly.
func TestVerifyCommitSSHWindowMargin(t *testing.T) {
	t.Parallel()
	k := testkeys.SSHKey(t, "bob@example.com")
	r := testkeys.GitRepo(t)
	r.When = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	c := openCommit(t, r, r.Commit(t, map[string]string{"a.txt": "a"}, "signed", k))
	// Judged as of the commit's date, so that only the commit date is
	// checked against the window (as git checks it), whatever writ also
	// requires at now.
	at := c.Committer.When
	for _, opt := range []string{`valid-after="202503011130Z"`, `valid-before="202503011230Z"`} {
		_, err := sshKeys(t, k.AllowedSignersLine("", opt)).VerifyCommit(c, at)
		wantErr(t, err, "at least 1h inside the window")
	}
	if _, err := sshKeys(t, k.AllowedSignersLine("", `valid-after="202503011100Z",valid-before="202503011300Z"`)).VerifyCommit(c, at); err != nil {
		t.Errorf("an hour inside both ends: %v", err)
	}
	msg := []byte("approval")
	sig := k.Sign(t, msg, "file")
	if _, err := sshKeys(t, k.AllowedSignersLine("", `valid-after="202503011130Z"`)).VerifySSH(msg, sig, "file", at); err != nil {
		t.Errorf("detached signature inside its window: %v", err)
	}
}
