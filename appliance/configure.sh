#!/usr/bin/env bash
# dbhaul-configure: set up this machine's extraction agent and start it. Asks the agent's
# password (twice) and port, makes its TLS key and certificate, then enables and starts
# the dbhaul-agent service and prints the port and certificate fingerprint, which the
# controller's `dbhaul agents register NAME --host THIS_HOST --port PORT --fingerprint FP`
# needs. Run it again to change the password or the port; the certificate is kept.
# Arguments go to `dbhaul agent configure` (--port N, --parallel N, --password-stdin, ...).
set -euo pipefail
prefix="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
dir="$prefix/var/agent"

if [ "$(id -un)" = dbhaul ]; then
  "$prefix/bin/dbhaul" agent configure --dir "$dir" "$@"
elif [ "$(id -u)" -eq 0 ]; then
  # The service runs as dbhaul: its files must be dbhaul's, readable by nobody else.
  runuser -u dbhaul -- "$prefix/bin/dbhaul" agent configure --dir "$dir" "$@"
else
  echo "dbhaul-configure: run it as root (sudo $0) or as the dbhaul user" >&2
  exit 2
fi

if [ -d /run/systemd/system ]; then
  systemctl enable dbhaul-agent >/dev/null 2>&1
  # A running agent reads its new settings when it starts again.
  systemctl restart dbhaul-agent
  echo "dbhaul-agent service enabled and started (logs: $prefix/log/agent.log)"
else
  echo "no systemd here: start the agent with: $prefix/bin/dbhaul agent serve --dir $dir"
fi
"$prefix/bin/dbhaul" agent status --dir "$dir"
