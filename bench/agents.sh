#!/usr/bin/env bash
# Partitions across agents: TPC-H lineitem (PostgreSQL, `bench/lineitem.sh`) in 4 key ranges,
# mode extract (native COPY path, gzip 1), run as a controller task over 1, 2 and 4 agent
# processes (4 slots in all: 4, 2 and 1 each), next to `dbhaul run --parallel 4` in this
# process. On one machine the agents share its cores, so the curve shows what the
# controller and the agents cost over `dbhaul run`, not more hardware; on several machines
# each agent brings its own. Prints wall seconds from `tasks start` to the end of `tasks
# wait`, rows/s and the ratio to `dbhaul run`; writes bench/out/agents.json.
#
#   bash bench/agents.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
. bench/lineitem.sh
RUN=$PWD/$OUT/agents
rm -rf "$RUN"; mkdir -p "$RUN"
trap cleanup EXIT
job() { # task
  cat > "$RUN/$1.toml" <<TOML
[task]
name = "$1"
[source]
connection = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=$DB;Uid=postgres;"
[[tables]]
name = "public.lineitem"
partition = { column = "l_orderkey", ranges = 4 }
[files]
gzip_level = 1
TOML
  echo "$RUN/$1.toml"
}
results="$RUN/results.tsv"
: > "$results"

echo "running: dbhaul run --parallel 4"
start=$EPOCHREALTIME
"$BIN" run "$(job local)" --parallel 4 --work-dir "$RUN/work" --json > /dev/null
printf 'dbhaul run, --parallel 4\t%s\n' "$(awk "BEGIN { print $EPOCHREALTIME - $start }")" >> "$results"
rm -rf "$RUN/work"

for agents in 1 2 4; do
  cleanup
  dir="$RUN/n$agents"; mkdir -p "$dir"
  start_controller "$dir/controller"
  for i in $(seq "$agents"); do
    start_agent "$dir/agent$i" "agent$i" $((4 / agents))
  done
  "$BIN" tasks create "$(job "agents$agents")" > /dev/null
  echo "running: a task over $agents agent(s)"
  start=$EPOCHREALTIME
  "$BIN" tasks start "agents$agents" > /dev/null
  "$BIN" tasks wait "agents$agents" --timeout 1800 > /dev/null
  printf 'task over %s agent(s), %s slot(s) each\t%s\n' "$agents" $((4 / agents)) "$(awk "BEGIN { print $EPOCHREALTIME - $start }")" >> "$results"
  spread=$("$BIN" tasks show "agents$agents" --json | python3 -c 'import json,sys; print(len({s["agent"] for s in json.load(sys.stdin)["subtasks"]}))')
  [ "$spread" = "$agents" ] || { echo "the task ran on $spread agents, not $agents" >&2; exit 1; }
done
cleanup

python3 - "$results" "$expected" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
n = int(sys.argv[2])
local = float(rows[0][1])
print(f"\nlineitem, {n} rows, 4 key ranges, mode extract; {open('/proc/cpuinfo').read().count('processor')} cores")
print("| run | wall s | rows/s | vs dbhaul run |")
print("|---|---|---|---|")
out = []
for name, secs in rows:
    secs = float(secs)
    print(f"| {name} | {secs:.1f} | {n / secs:,.0f} | {local / secs:.2f}x |")
    out.append(dict(run=name, rows=n, seconds=secs, rows_per_s=n / secs, vs_run=local / secs))
json.dump(out, open(sys.argv[1].replace("agents/results.tsv", "agents.json"), "w"), indent=2)
PY
