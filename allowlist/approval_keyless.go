package allowlist

// Keyless Sigstore approvals: a bundle holding a Fulcio certificate for an
// OIDC identity and a Rekor entry with its inclusion proof, verified fully
// offline against a trusted_root.json pinned in the environment and the
// identities the environment names.

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"gitlab.com/writ-ci/writ/internal/fsutil"
)

// maxTrustedRootBytes bounds trusted_root.json (the public good instance's
// is about 10 KiB).
const maxTrustedRootBytes = 1 << 20

// SigstoreIdentity is a keyless approver: the OIDC issuer and the subject
// (the certificate's subject alternative name: an email, or a CI workload
// URI) Fulcio certified. Subject is compared exactly; SubjectRegexp, a Go
// regular expression anchored with ^ and $, matches several subjects, each
// of which counts as its own signer. Exactly one of the two is set.
type SigstoreIdentity struct {
	Issuer        string
	Subject       string
	SubjectRegexp string
}

func (id SigstoreIdentity) String() string {
	if id.SubjectRegexp != "" {
		return fmt.Sprintf("issuer %q, subject matching %q", id.Issuer, id.SubjectRegexp)
	}
	return fmt.Sprintf("issuer %q, subject %q", id.Issuer, id.Subject)
}

func (id SigstoreIdentity) certificateIdentity() (verify.CertificateIdentity, error) {
	switch {
	case id.Issuer == "":
		return verify.CertificateIdentity{}, errors.New("issuer is empty; name the OIDC issuer exactly (https://token.actions.githubusercontent.com, https://gitlab.com, …)")
	case (id.Subject == "") == (id.SubjectRegexp == ""):
		return verify.CertificateIdentity{}, errors.New("set exactly one of subject and subject_regexp")
	case id.SubjectRegexp != "":
		// sigstore-go matches unanchored; an unanchored pattern would let
		// any subject containing it approve.
		if !strings.HasPrefix(id.SubjectRegexp, "^") || !strings.HasSuffix(id.SubjectRegexp, "$") {
			return verify.CertificateIdentity{}, fmt.Errorf("subject_regexp %q must be anchored: start it with ^ and end it with $", id.SubjectRegexp)
		}
		if _, err := regexp.Compile(id.SubjectRegexp); err != nil {
			return verify.CertificateIdentity{}, fmt.Errorf("subject_regexp: %v", err)
		}
	}
	return verify.NewShortCertificateIdentity(id.Issuer, "", id.Subject, id.SubjectRegexp)
}

// LoadTrustedRoot reads a Sigstore trusted_root.json: the Fulcio
// certificate authorities and Rekor logs keyless approvals are verified
// against. Pin it in the environment (fetch it once with `cosign trusted-root
// create` or from Sigstore's TUF repository, and review it): writ never
// fetches or updates it.
func LoadTrustedRoot(path string) (*root.TrustedRoot, error) {
	b, err := fsutil.ReadFileLimit(path, maxTrustedRootBytes)
	if err != nil {
		return nil, fmt.Errorf("sigstore trusted root: %w", err)
	}
	tr, err := root.NewTrustedRootFromJSON(b)
	if err != nil {
		return nil, fmt.Errorf("sigstore trusted root %s: %w", path, err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 || len(tr.RekorLogs()) == 0 {
		return nil, fmt.Errorf("sigstore trusted root %s names no Fulcio certificate authority or no Rekor log; keyless approvals need both", path)
	}
	return tr, nil
}

// ApprovalOption configures an ApprovalVerifier.
type ApprovalOption func(*ApprovalVerifier) error

// WithKeylessApprovals makes bundles signed with a Fulcio certificate count
// as approvals when they verify against trusted (typically LoadTrustedRoot's)
// and the certificate names one of identities.
//
// Verification is offline and complete: the certificate chains to a Fulcio
// CA of trusted, the bundle's Rekor entry has an inclusion proof whose
// checkpoint a trusted log signed, and the entry's signed time (its
// inclusion promise) falls within the certificate's ten-minute validity and
// the CA's and log's validity periods. A bundle without its log entry, or
// with a proof that does not verify, does not count: without the log, a
// leaked short-lived key could sign with any date.
func WithKeylessApprovals(trusted root.TrustedMaterial, identities []SigstoreIdentity) ApprovalOption {
	return func(v *ApprovalVerifier) error {
		if trusted == nil {
			return errors.New("keyless approvals: no trusted root (trust.sigstore_trusted_root)")
		}
		if len(identities) == 0 {
			return errors.New("keyless approvals: no identities (trust.sigstore_identities)")
		}
		k := &keylessVerifier{}
		for i, id := range identities {
			ci, err := id.certificateIdentity()
			if err != nil {
				return fmt.Errorf("sigstore identity #%d: %w", i+1, err)
			}
			k.ids = append(k.ids, verify.WithCertificateIdentity(ci))
			k.names = append(k.names, id.String())
		}
		var err error
		k.verifier, err = verify.NewVerifier(trusted, verify.WithTransparencyLog(1), verify.WithObserverTimestamps(1))
		if err != nil {
			return fmt.Errorf("keyless approvals: %w", err)
		}
		v.keyless = k
		return nil
	}
}

// keylessVerifier is the trusted material and identities of keyless
// approvals.
type keylessVerifier struct {
	verifier *verify.Verifier
	ids      []verify.PolicyOption
	names    []string
}

// verifyKeyless checks a certificate-based approval and returns its signer:
// "sigstore-identity:" and the certified issuer and subject.
func (v *ApprovalVerifier) verifyKeyless(statement []byte, b *bundle.Bundle) (string, error) {
	if v.keyless == nil {
		return "", errors.New("the Sigstore bundle is a keyless (certificate) signature, and no keyless identities are trusted (trust.sigstore_identities, trust.sigstore_trusted_root)")
	}
	k := v.keyless
	opts := append([]verify.PolicyOption{}, k.ids...)
	res, err := k.verifier.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(statement)), opts...))
	if err != nil {
		var idErr *verify.ErrNoMatchingCertificateIdentity
		if errors.As(err, &idErr) {
			return "", fmt.Errorf("the keyless approval's certificate names an identity that is not trusted (trusted: %s): %v", strings.Join(k.names, "; "), err)
		}
		return "", fmt.Errorf("the keyless approval does not verify against the trusted root: %v", err)
	}
	cert := res.Signature.Certificate
	if cert == nil {
		return "", errors.New("the keyless approval verified without a certificate")
	}
	return "sigstore-identity:" + cert.Extensions.Issuer + " " + cert.SubjectAlternativeName, nil
}
