#!/usr/bin/env bash
# Installs gitlab-ci-local (pinned) into a cache directory and prints the path
# of its executable. The template tests call it; CI calls it before them.
#
#   ci-templates/test/install-gitlab-ci-local.sh [PREFIX]
#
# PREFIX defaults to $WRIT_GCL_PREFIX, then $HOME/.cache/writ/npm.
# 4.70.1 is the newest release that runs on Node 20; newer ones need Node 22.
set -euo pipefail

version=4.70.1
prefix=${1:-${WRIT_GCL_PREFIX:-$HOME/.cache/writ/npm}}
bin="$prefix/node_modules/.bin/gitlab-ci-local"

if ! command -v npm >/dev/null 2>&1; then
	echo "install-gitlab-ci-local: npm is not installed (apt-get install nodejs npm)" >&2
	exit 1
fi

# gitlab-ci-local copies the work tree with rsync before running jobs.
if ! command -v rsync >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "install-gitlab-ci-local: installing rsync" >&2
		(apt-get install -y -q rsync || { apt-get update -q && apt-get install -y -q rsync; }) >&2
	else
		echo "install-gitlab-ci-local: rsync is missing (apt-get install rsync)" >&2
		exit 1
	fi
fi

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "$version" ]; then
	echo "$bin"
	exit 0
fi

mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "gitlab-ci-local@$version" >&2
if [ "$("$bin" --version)" != "$version" ]; then
	echo "install-gitlab-ci-local: $bin does not report version $version" >&2
	exit 1
fi
echo "$bin"
