package main

import (
	"errors"
	"os"
)

// statementCmd prints the approval statement, so that an approver can sign
// it with any Sigstore client (cosign sign-blob) and an auditor verify an
// approval with cosign verify-blob, without trusting writ to say what was
// signed.
type statementCmd struct {
	Dir string `help:"Checkout of the allowlist repository." default:"." type:"existingdir"`
}

func (c *statementCmd) Run(g *globals) error {
	// The same statement approve signs.
	_, stmt, err := currentStatement(c.Dir)
	if err != nil {
		return err
	}
	// Exactly the signed bytes: no added newline, nothing else on stdout.
	_, err = g.stdout.Write(stmt)
	return err
}

// cosignPassword reads an encrypted key's password as cosign does, from
// COSIGN_PASSWORD (which may be set and empty).
func cosignPassword() ([]byte, error) {
	pw, ok := os.LookupEnv("COSIGN_PASSWORD")
	if !ok {
		return nil, errors.New("the key is encrypted: set COSIGN_PASSWORD to its password (as for cosign)")
	}
	return []byte(pw), nil
}
