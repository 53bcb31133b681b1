#!/usr/bin/env bash
# dbhaul-agent-start, dbhaul-agent-stop, dbhaul-agent-status (installed next to the
# binary under these three names): the agent's service, as users of extraction agents
# expect to find it. Status says whether the agent runs, on which port, with which
# certificate fingerprint, then what systemd knows.
set -euo pipefail
prefix="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"
action="${1:-$(basename "$0")}"
action="${action#dbhaul-agent-}"
case "$action" in
  start | stop)
    systemctl "$action" dbhaul-agent
    echo "dbhaul-agent: $action done"
    ;;
  status)
    "$prefix/bin/dbhaul" agent status --dir "$prefix/var/agent" || true
    if [ -d /run/systemd/system ]; then systemctl --no-pager status dbhaul-agent || true; fi
    ;;
  *)
    echo "usage: dbhaul-agent-start | dbhaul-agent-stop | dbhaul-agent-status" >&2
    exit 2
    ;;
esac
