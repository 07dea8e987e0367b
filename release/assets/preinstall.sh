#!/bin/sh
# writ: create the accounts before the package's files are unpacked, so
# that dpkg and rpm give writ's directories their owners.
#   writ      runs GitLab Runner's custom executor; owns state, cache, audit log
#   writ-job  runs admitted job scripts (job.user); owns nothing of writ's
set -e
nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin
if ! getent group writ >/dev/null; then
	groupadd --system writ
fi
if ! getent passwd writ >/dev/null; then
	useradd --system --gid writ --home-dir /var/lib/writ --no-create-home --shell "$nologin" \
		--comment "writ allowlist executor" writ
fi
if ! getent group writ-job >/dev/null; then
	groupadd --system writ-job
fi
if ! getent passwd writ-job >/dev/null; then
	useradd --system --gid writ-job --home-dir /nonexistent --no-create-home --shell "$nologin" \
		--comment "writ job scripts" writ-job
fi
exit 0
