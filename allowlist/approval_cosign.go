package allowlist

// cosign interoperability for Sigstore approvals: cosign's encrypted key
// files, read with the library cosign itself uses.

import (
	"crypto"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// PasswordFunc returns the password of an encrypted private key. It is
// called only for an encrypted key, so an unencrypted key never prompts.
type PasswordFunc func() ([]byte, error)

// LoadSigstoreKeyWithPassword is LoadSigstoreKey that also reads encrypted
// keys, decrypting them with password:
//
//   - cosign's key files ("ENCRYPTED SIGSTORE PRIVATE KEY", and the older
//     "ENCRYPTED COSIGN PRIVATE KEY"), as `cosign generate-key-pair` writes
//     them: scrypt and NaCl secretbox around a PKCS#8 key;
//   - PKCS#8 "ENCRYPTED PRIVATE KEY" (openssl pkcs8 -topk8 -v2 aes-256-cbc).
//
// They are decrypted by sigstore's cryptoutils, the code cosign itself reads
// its keys with, so a key cosign can use, writ can use. The key must still
// be ECDSA P-256 or Ed25519.
func LoadSigstoreKeyWithPassword(pemPath string, password PasswordFunc) (crypto.Signer, error) {
	if password == nil {
		return nil, errors.New("sigstore signing key: no password function")
	}
	return loadSigstoreKey(pemPath, password)
}

// decryptSigstoreKey decrypts the encrypted PEM key in pemBytes.
func decryptSigstoreKey(pemBytes []byte, password PasswordFunc) (any, error) {
	if password == nil {
		return nil, errors.New("the key is encrypted: give its password (COSIGN_PASSWORD for `writ allowlist approve`), or use an unencrypted PKCS#8 key")
	}
	pw, err := password()
	if err != nil {
		return nil, fmt.Errorf("password of the encrypted key: %w", err)
	}
	if pw == nil {
		// An empty password is a password (cosign allows one); nil would
		// make cryptoutils skip decryption.
		pw = []byte{}
	}
	key, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, func(bool) ([]byte, error) { return pw, nil })
	if err != nil {
		return nil, fmt.Errorf("cannot decrypt the key (wrong password?): %v", err)
	}
	return key, nil
}
