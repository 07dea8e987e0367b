#!/bin/sh
# writ: bring writ's directories to the sandbox profile's owners and modes
# (root:root 0700), which dpkg does not do for directories an earlier
# package made (root:writ, writ:writ), then tell the operator what is left
# to do. Nothing is enabled or restarted: the runner keeps running its
# current configuration until the operator has written
# /etc/writ/config.toml and the trust root.
set -e
# Parents before children: once a parent is root's and 0700, no one else
# can swap a child for a symlink; a symlink is never followed.
for d in /etc/writ /var/lib/writ /var/lib/writ/builds /var/cache/writ /var/log/writ; do
	if [ -d "$d" ] && [ ! -L "$d" ]; then
		chown root:root "$d"
		chmod 0700 "$d"
	fi
done
if [ ! -e /etc/writ/config.toml ]; then
	echo "writ: copy /etc/writ/config.toml.example to /etc/writ/config.toml (mode 0600), set the allowlist and trust root,"
	echo "writ: then run 'writ --config /etc/writ/config.toml config check' (see /usr/share/doc/writ)."
fi
if [ -e /etc/systemd/system/gitlab-runner.service.d/writ.conf ]; then
	echo "writ: /etc/systemd/system/gitlab-runner.service.d/writ.conf overrides the package's drop-in;"
	echo "writ: remove it unless it runs the runner as root (see /usr/share/doc/writ/install.md)."
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
