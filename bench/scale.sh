#!/usr/bin/env bash
# Controller scaling benchmark: one controller drives AGENTS agent processes (100 by
# default, each its own `dbhaul agent serve` on loopback, HTTPS, one slot) through a task of
# about 10,000 subtasks (10 SQLite tables of 10,000 rows, each in 1,000 ranges; mode
# extract). While the task runs, a client asks the controller's API in rounds 50 ms apart
# (the tasks list, the agents as the status page asks, the whole task view with every
# subtask, and the health); the script prints the latency percentiles of each and the controller's CPU use
# (user + system seconds over wall seconds, from /proc), and writes bench/out/scale.json.
#
#   bash bench/scale.sh             # 100 agents
#   AGENTS=20 bash bench/scale.sh   # fewer
set -euo pipefail
cd "$(dirname "$0")/.."
AGENTS=${AGENTS:-100}
TABLES=${TABLES:-10}
RANGES=${RANGES:-1000}
. bench/common.sh
OUT=$PWD/bench/out/scale
rm -rf "$OUT"; mkdir -p "$OUT"
trap cleanup EXIT

echo "source: $TABLES SQLite tables of 10,000 rows"
python3 - "$OUT/source.db" "$TABLES" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for t in range(int(sys.argv[2])):
    db.execute(f"CREATE TABLE t{t} (id integer PRIMARY KEY, v text)")
    db.executemany(f"INSERT INTO t{t} VALUES (?, ?)", ((i, f"value {i}") for i in range(1, 10001)))
db.commit()
PY

start_controller "$OUT/controller"
port=$controller_port

echo "agents: configuring, starting and registering $AGENTS"
for i in $(seq "$AGENTS"); do
  start_agent "$OUT/agent$i" "agent$i" 1
done

{
  printf '[task]\nname = "scale"\n[source]\nconnection = "Driver={SQLite3};Database=%s;"\n' "$OUT/source.db"
  for t in $(seq 0 $((TABLES - 1))); do
    printf '[[tables]]\nname = "t%s"\npartition = { column = "id", ranges = %s }\n' "$t" "$RANGES"
  done
} > "$OUT/scale.toml"
"$BIN" tasks create "$OUT/scale.toml" > /dev/null
subtasks=$("$BIN" tasks show scale --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["subtasks"]))')
echo "task: $subtasks subtasks over $AGENTS agents"

python3 - "$port" "$controller" "$subtasks" "$AGENTS" "$OUT/../scale.json" "$BIN" "$OUT/controller" <<'PY'
import http.client, json, os, ssl, subprocess, sys, time
port, pid, subtasks, agents, out, binary = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
# The controller speaks HTTPS and wants its admin token, read from its folder as its owner
# may. Its certificate is self-signed: checked by its fingerprint against controller.crt.
folder = sys.argv[7]
token = open(os.path.join(folder, "admin.token")).read().strip()
pinned = ssl.PEM_cert_to_DER_cert(open(os.path.join(folder, "controller.crt")).read())
context = ssl._create_unverified_context()
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def machine():
    # (busy, total) jiffies of every core: what the agents, the controller and this client share
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
paths = {"tasks list": "/v1/tasks", "agents": "/v1/agents?max_age_s=2",
         "task view (every subtask)": "/v1/tasks/scale", "health": "/v1/health"}
samples = {k: [] for k in paths}
conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
conn.connect()
assert conn.sock.getpeercert(binary_form=True) == pinned, "not the controller's certificate"
def get(path):
    t = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse(); body = r.read()
    assert r.status == 200, (path, r.status, body[:200])
    return time.perf_counter() - t, body
subprocess.run([binary, "tasks", "start", "scale"], check=True, stdout=subprocess.DEVNULL)
cpu0, t0, m0 = cpu(), time.time(), machine()
state = "Running"
while state == "Running" or state == "Pending":
    for name, path in paths.items():
        took, body = get(path)
        samples[name].append(took)
        if name == "task view (every subtask)":
            view = json.loads(body)
            state = view["state"]
            done = sum(1 for s in view["subtasks"] if s["state"] == "Completed")
    time.sleep(0.05)
    if time.time() - t0 > 1800:
        raise SystemExit("the task did not end in 30 minutes")
wall, used, m1 = time.time() - t0, cpu() - cpu0, machine()
busy = (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
assert state == "Completed", view["state"]
# The same requests once the agents are idle: the controller's own latency, without 100
# busy processes on the same cores.
quiet = {k: [] for k in paths}
for _ in range(40):
    for name, path in paths.items():
        quiet[name].append(get(path)[0])
    time.sleep(0.05)
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] * 1000
print(f"\n{agents} agents, {subtasks} subtasks ({done} completed) in {wall:.1f} s on {os.cpu_count()} cores")
print(f"controller CPU: {used:.1f} s over {wall:.1f} s = {used / wall:.2f} cores; peak RSS {rss():.0f} MiB")
print(f"machine CPU while the task ran: {busy * 100:.0f}% of {os.cpu_count()} cores busy")
print("| request | n | p50 ms | p99 ms | max ms | idle machine: p50 ms | p99 ms |")
print("|---|---|---|---|---|---|---|")
rows = []
for name, v in samples.items():
    q = quiet[name]
    print(f"| {name} | {len(v)} | {pct(v, 50):.1f} | {pct(v, 99):.1f} | {max(v) * 1000:.1f} | {pct(q, 50):.1f} | {pct(q, 99):.1f} |")
    rows.append(dict(request=name, n=len(v), p50_ms=pct(v, 50), p99_ms=pct(v, 99), max_ms=max(v) * 1000,
                     idle_p50_ms=pct(q, 50), idle_p99_ms=pct(q, 99)))
json.dump(dict(agents=agents, subtasks=subtasks, seconds=wall, controller_cpu_cores=used / wall,
               machine_busy=busy, controller_peak_rss_mib=rss(), requests=rows), open(out, "w"), indent=2)
PY
