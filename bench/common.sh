# Sourced by every benchmark script after `cd` to the repository: the scale factor, the
# output folder and the benchmark database, the set-up (idempotent), the release build,
# and the helpers that start a controller's agents on loopback.
SF=${SF:-1}
OUT=bench/out
DB=dbhaul_bench
mkdir -p "$OUT"
bash appliance/setup.sh >/dev/null
cargo build --release --locked -q
BIN=$PWD/target/release/dbhaul

# Daemons started here; `cleanup` stops them (the scripts trap it on EXIT).
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=(); }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "nothing listens on $1" >&2; exit 1; }

# start_controller DIR: a controller on a free loopback port; exports DBHAUL_CONTROLLER and
# sets `controller` to its pid and `controller_port` to its port.
start_controller() {
  controller_port=$(free_port)
  "$BIN" controller serve --dir "$1" --listen "127.0.0.1:$controller_port" > "$1.log" 2>&1 &
  controller=$!; pids+=("$controller")
  wait_port "$controller_port"
  export DBHAUL_CONTROLLER="https://127.0.0.1:$controller_port"
  # The CLI reads the admin token and pins the certificate from the controller's folder.
  export DBHAUL_CONTROLLER_DIR="$1"
}

# start_agent DIR NAME SLOTS: configure an agent, serve it on a free loopback port and
# register it with the controller in DBHAUL_CONTROLLER, its fingerprint confirmed.
start_agent() {
  local dir=$1 name=$2 slots=$3 password=Agent2Secret port report fingerprint
  port=$(free_port)
  report=$(echo "$password" | "$BIN" agent configure --dir "$dir" --port "$port" --listen 127.0.0.1 \
    --host 127.0.0.1 --name "$name" --parallel "$slots" --password-stdin --json)
  fingerprint=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["fingerprint"])' "$report")
  "$BIN" agent serve --dir "$dir" > "$dir.log" 2>&1 &
  pids+=("$!")
  wait_port "$port"
  echo "$password" | "$BIN" agents register "$name" --host 127.0.0.1 --port "$port" \
    --password-stdin --fingerprint "$fingerprint" > /dev/null
}
