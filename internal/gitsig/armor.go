package gitsig

import (
	"encoding/base64"
	"errors"
	"strings"
)

// trimArmorBlanks removes blanks (spaces, tabs) at the ends of the lines
// of an armored signature, which gpg ignores on every line and ssh-keygen
// on every line but the BEGIN line: an SSH BEGIN line with blanks after
// it is left as it is, and refused, as ssh-keygen refuses it. The
// signature text is not what is signed, so this makes no two signed
// objects equal; it only accepts what mail clients and editors do to
// armor.
func trimArmorBlanks(sig string) string {
	if !strings.ContainsAny(sig, " \t") {
		return sig
	}
	lines := strings.Split(sig, "\n")
	for i, l := range lines {
		if i == 0 && strings.HasPrefix(l, sshSigBegin) {
			continue
		}
		lines[i] = strings.TrimRight(l, " \t")
	}
	return strings.Join(lines, "\n")
}

// checkArmorChecksum checks the "=XXXX" CRC-24 line of an armored OpenPGP
// block (RFC 4880, section 6.1) against body, the decoded data. The line
// is optional, as for gpg; when present it must match, as gpg requires.
// The armor decoder writ uses does not check it.
func checkArmorChecksum(armored string, body []byte) error {
	for _, l := range strings.Split(armored, "\n") {
		l = strings.TrimRight(l, " \t\r")
		if !strings.HasPrefix(l, "=") {
			continue
		}
		want, err := base64.StdEncoding.DecodeString(l[1:])
		if err != nil || len(want) != 3 {
			return errors.New("armor checksum line is not =XXXX")
		}
		got := crc24(body)
		if uint32(want[0])<<16|uint32(want[1])<<8|uint32(want[2]) != got {
			return errors.New("armor checksum does not match the data: the armored text was changed or damaged")
		}
		return nil
	}
	return nil
}

// crc24 is the OpenPGP armor checksum (RFC 4880, section 6.1).
func crc24(data []byte) uint32 {
	const (
		crc24Init = 0xb704ce
		crc24Poly = 0x1864cfb
	)
	crc := uint32(crc24Init)
	for _, b := range data {
		crc ^= uint32(b) << 16
		for i := 0; i < 8; i++ {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= crc24Poly
			}
		}
	}
	return crc & 0xffffff
}
