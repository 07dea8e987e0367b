// Package difftest holds writ's differential test suite for signatures on
// git objects: a corpus of allowed_signers files, OpenPGP keyrings and
// signed commits and tags, each judged by writ (gitsig.ParseAllowedSigners,
// gitsig.NewKeys, Keys.VerifyCommit or Keys.VerifyTag) and by the
// reference, git verify-commit and git verify-tag with the real ssh-keygen
// and gpg, under several time zones.
//
// The suite asserts that writ never accepts what the reference rejects,
// and that every case where writ is stricter is listed, with its reason,
// in docs/testing.md. It has no non-test code.
package difftest
