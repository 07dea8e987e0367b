#!/bin/sh
# writ: tell the operator what is left to do. Nothing is enabled or
# restarted: the runner keeps running its current configuration until the
# operator has written /etc/writ/config.toml and the trust root.
set -e
if [ ! -e /etc/writ/config.toml ]; then
	echo "writ: copy /etc/writ/config.toml.example to /etc/writ/config.toml, set the allowlist and trust root,"
	echo "writ: then run 'writ --config /etc/writ/config.toml config check' (see /usr/share/doc/writ)."
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
