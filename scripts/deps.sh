#!/usr/bin/env bash
# Installs what writ's tests need on a fresh Debian machine: git, gpg,
# ssh-keygen, bash, Node.js/npm (for gitlab-ci-local). Each is installed only
# when missing, from Debian's packages.
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v gpg >/dev/null || need+=(gnupg)
command -v gpg-agent >/dev/null || need+=(gpg-agent)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v bash >/dev/null || need+=(bash)
command -v npm >/dev/null || need+=(npm)
# The differential signature suite runs git, gpg and ssh-keygen under TZ=America/New_York and Europe/Dublin.
[ -e /usr/share/zoneinfo/America/New_York ] || need+=(tzdata)
[ -x /usr/bin/time ] || need+=(time)  # peak RSS of whole processes in benchmarks
# etcd: the fleet state store's tests run a real 3-member cluster.
command -v etcd >/dev/null || need+=(etcd-server)
if [ "${#need[@]}" -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# git http-backend serves the test repositories over smart HTTP.
if ! git --exec-path >/dev/null 2>&1 || [ ! -x "$(git --exec-path)/git-http-backend" ]; then
  echo "deps: git http-backend is missing from $(git --exec-path)" >&2
  exit 1
fi
