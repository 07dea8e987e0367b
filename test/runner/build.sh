#!/usr/bin/env bash
# Builds the real GitLab Runner (the nested module in this directory) for
# writ's end-to-end suite and prints the binary's path on stdout.
#
# The binary is cached as
#   ${WRIT_RUNNER_CACHE:-$HOME/.cache/writ}/gitlab-runner-<hash>
# where <hash> covers every file of test/runner/ but *.md, and the Go toolchain, so a
# change to the runner version, a stand-in module or Go rebuilds it and an
# unchanged tree reuses it in milliseconds.
#
# Cold, this downloads the runner's modules from the Go module proxy (several
# hundred MB) and compiles for a few minutes; progress goes to stderr.
#
# Usage:
#   test/runner/build.sh            build if needed, print the path
#   test/runner/build.sh --path     print the path only if already built (exit 3 if not)
set -euo pipefail

die() {
	printf 'test/runner/build.sh: error: %s\n' "$*" >&2
	exit 1
}
say() { printf 'test/runner/build.sh: %s\n' "$*" >&2; }

mode=build
case "${1:-}" in
'') ;;
--path) mode=path ;;
*) die "unknown argument ${1} (use no argument, or --path)" ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd) || die "cannot find the script's directory"
command -v go >/dev/null || die "go is not on PATH; install Go (see go.mod for the version) and retry"
command -v sha256sum >/dev/null || die "sha256sum is not on PATH (coreutils)"

# The nested module must be built on its own, whatever the caller's
# environment says about workspaces or module mode.
export GOWORK=off GO111MODULE=on CGO_ENABLED=0
unset GOFLAGS

go_version=$(go version) || die "'go version' failed"

# Hash: the path and content of every file here, plus the toolchain.
hash=$(
	cd "$here"
	{
		printf '%s\n' "$go_version" "$(go env GOOS GOARCH)"
		find . -type f ! -name '*.md' ! -name '*~' ! -name '.#*' -print0 | LC_ALL=C sort -z |
			while IFS= read -r -d '' f; do
				printf '%s\0' "$f"
				sha256sum <"$f"
			done
	} | sha256sum | cut -c1-20
) || die "cannot hash $here"

cache=${WRIT_RUNNER_CACHE:-${HOME:?HOME is unset; set HOME or WRIT_RUNNER_CACHE}/.cache/writ}
bin="$cache/gitlab-runner-$hash"

usable() { [[ -x $1 ]] && "$1" --version >/dev/null 2>&1; }

if [[ $mode == path ]]; then
	usable "$bin" || exit 3
	printf '%s\n' "$bin"
	exit 0
fi

mkdir -p "$cache" || die "cannot create the cache directory $cache (set WRIT_RUNNER_CACHE to a writable directory)"

# One build at a time per cache: parallel test runs wait for the first.
exec 9>"$cache/.build.lock" || die "cannot open the lock file $cache/.build.lock"
flock 9 || die "cannot lock $cache/.build.lock"

if usable "$bin"; then
	say "reusing $bin"
	printf '%s\n' "$bin"
	exit 0
fi

start=$SECONDS
cd "$here"

say "downloading the GitLab Runner's modules from the Go module proxy (cold: several hundred MB)..."
if ! go mod download -x 2>"$cache/download.log"; then
	tail -n 30 "$cache/download.log" >&2 || true
	die "go mod download failed (full log: $cache/download.log). The build needs the Go module proxy; check GOPROXY and the network."
fi
say "modules ready after $((SECONDS - start))s"

runner_dir=$(go list -m -f '{{.Dir}}' gitlab.com/gitlab-org/gitlab-runner) || die "cannot locate the gitlab-runner module"
version=$(cat "$runner_dir/VERSION" 2>/dev/null || echo unknown)
revision=$(go list -m -f '{{.Version}}' gitlab.com/gitlab-org/gitlab-runner | sed -E 's/.*-([0-9a-f]{12})$/\1/')
pkg=gitlab.com/gitlab-org/gitlab-runner/common
ldflags="-X $pkg.VERSION=$version -X $pkg.REVISION=$revision -X $pkg.BRANCH=writ-e2e"

say "compiling gitlab-runner $version ($revision) with the custom executor (cold: a few minutes on 2 cores)..."
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
# -mod=readonly: go.mod and go.sum here are complete and committed; a build
# that would need to change them is an error, never a silent edit.
go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp" . 2>"$cache/build.log" &
builder=$!
last=$SECONDS
while kill -0 "$builder" 2>/dev/null; do
	sleep 1
	if ((SECONDS - last >= 30)); then
		say "still compiling ($((SECONDS - start))s)..."
		last=$SECONDS
	fi
done
if ! wait "$builder"; then
	cat "$cache/build.log" >&2
	die "go build failed after $((SECONDS - start))s (log: $cache/build.log). If go.sum lacks a module, run 'GOFLAGS=-mod=mod go build .' in test/runner and commit go.mod and go.sum."
fi

usable "$tmp" || die "the built binary $tmp does not run ('--version' failed)"
mv -f "$tmp" "$bin" || die "cannot move the binary into $bin"
trap - EXIT
say "built $bin ($(du -h "$bin" | cut -f1)) in $((SECONDS - start))s"
printf '%s\n' "$bin"
