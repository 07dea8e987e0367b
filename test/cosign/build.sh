#!/usr/bin/env bash
# Builds the real cosign CLI, pinned, for writ's cosign interoperability
# tests (allowlist/cosign_test.go) and prints the binary's path on stdout.
#
# The binary is cached as ${WRIT_COSIGN_CACHE:-$HOME/.cache/writ}/cosign-<version>-<go>
# so a second run costs nothing. Cold, `go install` downloads cosign's
# modules from the Go module proxy (several hundred MB: cloud KMS SDKs,
# go-containerregistry, Kubernetes clients) and compiles for many minutes on
# a small machine; progress goes to stderr.
#
# Usage:
#   test/cosign/build.sh            build if needed, print the path
#   test/cosign/build.sh --path     print the path only if already built (exit 3 if not)
set -euo pipefail

# v2.6.5 is the newest cosign v2 the Go module proxy served on 2026-11-30;
# it builds with Go 1.26.
version=v2.6.5

mode=build
case "${1:-}" in
'') ;;
--path) mode=path ;;
*) echo "test/cosign/build.sh: unknown argument ${1} (use no argument, or --path)" >&2; exit 1 ;;
esac

command -v go >/dev/null || { echo "test/cosign/build.sh: go is not on PATH" >&2; exit 1; }
gov=$(go env GOVERSION)
dir="${WRIT_COSIGN_CACHE:-$HOME/.cache/writ}/cosign-$version-$gov"
bin="$dir/cosign"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
if [ "$mode" = path ]; then
	exit 3
fi
mkdir -p "$dir"
echo "test/cosign/build.sh: building cosign $version with $gov into $dir (slow when cold)" >&2
# cosign's own go.mod decides its dependencies: install outside any module.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && GOWORK=off GO111MODULE=on CGO_ENABLED=0 GOFLAGS= GOBIN="$tmp" go install "github.com/sigstore/cosign/v2/cmd/cosign@$version") >&2
"$tmp/cosign" version >/dev/null 2>&1 || { echo "test/cosign/build.sh: the built cosign does not run" >&2; exit 1; }
mv "$tmp/cosign" "$bin"
echo "$bin"
