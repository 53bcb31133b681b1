#!/usr/bin/env bash
# End-to-end benchmark of the upload and copy stages: TPC-H lineitem (PostgreSQL database
# dbhaul_bench, table public.lineitem) is extracted, gzipped, uploaded to S3 (moto's S3
# server on 127.0.0.1) and copied into a warehouse (the same PostgreSQL, schema wh), by
# dbhaul and, in the same run, by the native tools one stage after the other:
#   (a) psql \copy (SELECT * FROM lineitem) TO STDOUT csv | pigz -p 2 -1 > native.csv.gz
#   (b) aws s3 cp native.csv.gz s3://bench/native/lineitem.csv.gz
#   (c) aws s3 cp s3://bench/native/lineitem.csv.gz - | gunzip | psql \copy wh.lineitem_native FROM STDIN csv
# dbhaul runs the same table twice, partitioned in 2 key ranges with --parallel 2, gzip -1:
# once in mode "extract" (its extract-only figure) and once in mode "extract-upload-copy"
# (all stages at once, into wh.lineitem). For the copy stage alone, a third run in mode
# "extract-upload" leaves its chunks in S3 and examples/copy_stage.rs loads them into
# wh.lineitem_copy through the copier's own code (read back, SHA-256 check, gunzip, COPY,
# bookkeeping; the 2 subtasks at once), against (c). Afterwards the script checks that the
# warehouse tables hold the source's row count and that wh.lineitem equals public.lineitem as a
# multiset (EXCEPT ALL both ways; slow at SF1, about a minute or two), and fails loudly
# otherwise. It prints one table (seconds, rows/s, MB/s of CSV, dbhaul's peak RSS, ratio =
# native total seconds / dbhaul seconds, >1 means dbhaul is faster) and writes the same
# numbers to bench/out/pipeline.json. MB/s is measured against the uncompressed size of
# native.csv.gz for every row. The source table is read once before the timed runs so
# that every run finds it in the page cache.
#
#   bash bench/pipeline.sh            # scale factor 1 (6,001,215 rows)
#   SF=10 bash bench/pipeline.sh      # larger
#
# Data: bench/lineitem.sh (shared with bench/run.sh) generates bench/out/sf$SF/lineitem.csv
# with tpchgen-cli and loads it into dbhaul_bench.lineitem when the table is missing or has
# another row count. Needs moto[server] (appliance/setup.sh installs it)
# and the aws CLI (pip install awscli when missing). Outputs go to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
command -v aws >/dev/null || python3 -m pip install -q awscli 2>/dev/null || python3 -m pip install -q --break-system-packages awscli

# --- data ------------------------------------------------------------------------------------
. bench/lineitem.sh
source_rows=$("${PSQL[@]}" -c "SELECT count(*) FROM lineitem")

# --- S3: moto on a free port ----------------------------------------------------------------
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
  AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
PORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
EP=http://127.0.0.1:$PORT
moto_server -H 127.0.0.1 -p "$PORT" > "$OUT/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 60); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.5; done
AWS=(aws --endpoint-url "$EP")
"${AWS[@]}" s3 mb s3://bench >/dev/null

# --- warehouse: schema wh, both tables without the primary key -----------------------------
"${PSQL[@]}" -c "DROP SCHEMA IF EXISTS wh CASCADE" -c "CREATE SCHEMA wh" \
  -c "CREATE TABLE wh.lineitem ($cols)" -c "CREATE TABLE wh.lineitem_native ($cols)"

# --- runs ------------------------------------------------------------------------------------
results="$OUT/pipeline.tsv"   # name, seconds, peak KiB (empty for native stages)
: > "$results"
now() { date +%s.%N; }
stage() { # name command: wall seconds of one native stage
  local name=$1 t0 t1; shift
  sync
  t0=$(now)
  bash -o pipefail -c "$*"
  t1=$(now)
  printf '%s\t%s\t\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')" >> "$results"
}
job() { # file mode [task name]
  cat > "$1" <<TOML
[task]
name = "${3:-bench-pipeline}"
mode = "$2"
[source]
connection = "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=$DB;Uid=postgres;"
[[tables]]
name = "public.lineitem"
partition = { column = "l_orderkey", ranges = 2 }
[files]
gzip_level = 1
[target]
url = "s3://bench/dbhaul"
endpoint = "$EP"
[warehouse]
kind = "postgres"
url = "postgresql://postgres@127.0.0.1:5432/$DB"
schema = "wh"
TOML
}
dbhaul() { # name job-file json-out: wall seconds and peak RSS of one dbhaul run
  local name=$1 file=$2 json=$3
  rm -rf "$OUT/work"
  sync
  if ! /usr/bin/time -v -o "$OUT/time.txt" "$BIN" run "$file" --work-dir "$OUT/work" --json --parallel 2 \
      > "$json" 2> "$OUT/dbhaul.stderr"; then
    echo "FAILED: dbhaul run $file ($name); stderr:" >&2
    cat "$OUT/dbhaul.stderr" >&2
    echo "summary:" >&2
    cat "$json" >&2
    exit 1
  fi
  local wall kib
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$OUT/time.txt" \
    | awk -F: '{s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s}')
  kib=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/time.txt")
  printf '%s\t%s\t%s\n' "$name" "$wall" "$kib" >> "$results"
  cp "$OUT/dbhaul.stderr" "$OUT/${json##*/}.stderr"
}

echo "warming the page cache: SELECT count(*) FROM lineitem"
"${PSQL[@]}" -c "SELECT count(*) FROM lineitem" >/dev/null

echo "running: native pipeline, $source_rows rows"
rm -f "$OUT/native.csv.gz"
stage "native extract+gzip (psql, pigz -p 2 -1)" \
  "${PSQL[*]} -c '\\copy (SELECT * FROM lineitem) TO STDOUT WITH (FORMAT csv)' | pigz -p 2 -1 > $OUT/native.csv.gz"
stage "native upload (aws s3 cp)" \
  "${AWS[*]} s3 cp --only-show-errors $OUT/native.csv.gz s3://bench/native/lineitem.csv.gz"
stage "native download+gunzip+copy" \
  "${AWS[*]} s3 cp --only-show-errors s3://bench/native/lineitem.csv.gz - | gunzip | ${PSQL[*]} -c '\\copy wh.lineitem_native FROM STDIN WITH (FORMAT csv)'"
csv_bytes=$(pigz -dc "$OUT/native.csv.gz" | wc -c)
gz_bytes=$(stat -c %s "$OUT/native.csv.gz")

echo "running: dbhaul extract only"
job "$OUT/pipeline-extract-job.toml" extract
dbhaul "dbhaul extract only" "$OUT/pipeline-extract-job.toml" "$OUT/pipeline-extract.json"
rm -rf "$OUT/work"

echo "running: dbhaul extract-upload-copy"
# wh.lineitem is still empty (created above, nothing loads into it before this run); make
# sure of it, and of no bookkeeping rows left from elsewhere.
"${PSQL[@]}" -c "TRUNCATE wh.lineitem" -c "DROP TABLE IF EXISTS wh.dbhaul_loads"
job "$OUT/pipeline-job.toml" extract-upload-copy
dbhaul "dbhaul extract-upload-copy" "$OUT/pipeline-job.toml" "$OUT/pipeline-full.json"

echo "running: the copy stage alone (chunks uploaded by an extract-upload run, loaded by the copier's code)"
job "$OUT/pipeline-upload-job.toml" extract-upload bench-copy
dbhaul "dbhaul extract-upload (for the copy stage)" "$OUT/pipeline-upload-job.toml" "$OUT/pipeline-upload.json"
"${PSQL[@]}" -c "CREATE TABLE wh.lineitem_copy ($cols)"
cargo build --release --locked -q --example copy_stage
sync
target/release/examples/copy_stage "$OUT/pipeline-upload-job.toml" "$OUT/work" wh.lineitem_copy > "$OUT/copy-stage.json"
printf '%s\t%s\t\n' "dbhaul copy stage alone (2 subtasks at once)" \
  "$(python3 -c "import json; print(json.load(open('$OUT/copy-stage.json'))['seconds'])")" >> "$results"
copy_rows=$("${PSQL[@]}" -c "SELECT count(*) FROM wh.lineitem_copy")

# --- checks ----------------------------------------------------------------------------------
fail() { echo "CHECK FAILED: $*" >&2; exit 1; }
echo "checking: row counts and wh.lineitem = public.lineitem (EXCEPT ALL both ways)"
python3 - "$OUT/pipeline-extract.json" "$OUT/pipeline-full.json" "$source_rows" <<'PY' || fail "dbhaul summaries"
import json, sys
n = int(sys.argv[3])
for path in sys.argv[1:3]:
    s = json.load(open(path))
    assert s["ok"], f"{path}: ok is false"
    assert s["rows"] == n, f"{path}: rows {s['rows']} != {n}"
s = json.load(open(sys.argv[2]))
copied = sum(t.get("copied_rows") or 0 for t in s["subtasks"])
assert copied == n, f"{sys.argv[2]}: copied_rows {copied} != {n}"
PY
dbhaul_rows=$("${PSQL[@]}" -c "SELECT count(*) FROM wh.lineitem")
native_rows=$("${PSQL[@]}" -c "SELECT count(*) FROM wh.lineitem_native")
[ "$dbhaul_rows" = "$source_rows" ] || fail "wh.lineitem has $dbhaul_rows rows, source $source_rows"
[ "$native_rows" = "$source_rows" ] || fail "wh.lineitem_native has $native_rows rows, source $source_rows"
[ "$copy_rows" = "$source_rows" ] || fail "wh.lineitem_copy has $copy_rows rows, source $source_rows"
extra=$("${PSQL[@]}" -c "SET work_mem = '256MB'" \
  -c "SELECT count(*) FROM (SELECT * FROM wh.lineitem EXCEPT ALL SELECT * FROM public.lineitem) x")
missing=$("${PSQL[@]}" -c "SET work_mem = '256MB'" \
  -c "SELECT count(*) FROM (SELECT * FROM public.lineitem EXCEPT ALL SELECT * FROM wh.lineitem) x")
[ "$extra" = 0 ] || fail "$extra rows of wh.lineitem are not in public.lineitem"
[ "$missing" = 0 ] || fail "$missing rows of public.lineitem are not in wh.lineitem"
echo "checks passed: $source_rows rows in both warehouse tables, wh.lineitem = public.lineitem"

# --- table -----------------------------------------------------------------------------------
python3 - "$results" "$source_rows" "$csv_bytes" "$gz_bytes" "$SF" "$OUT/pipeline.json" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
n, csv_bytes, gz_bytes, sf = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
secs = {name: float(s) for name, s, _ in rows}
native = [name for name, _, _ in rows if name.startswith("native")]
total = sum(secs[name] for name in native)
rows.insert(len(native), ["native total (a+b+c)", str(total), ""])
cores = open("/proc/cpuinfo").read().count("processor")
print(f"\nTPC-H lineitem SF{sf}: {n} rows, CSV {csv_bytes / 1e6:.0f} MB, gzip -1 {gz_bytes / 1e6:.0f} MB; "
      f"S3 = moto on 127.0.0.1, warehouse = the same PostgreSQL; {cores} cores")
print("| pipeline | seconds | rows/s | MB/s CSV | peak RSS MB | ratio |")
print("|---|---|---|---|---|---|")
out = []
for name, s, kib in rows:
    s = float(s)
    rss = int(kib) / 1024 if kib else None
    ratio = total / s if name.startswith("dbhaul") else None
    if name.startswith("dbhaul copy stage"):
        ratio = secs["native download+gunzip+copy"] / s  # against the native copy stage alone
    if name.startswith("dbhaul extract-upload ("):
        ratio = None
    print(f"| {name} | {s:.1f} | {n / s:,.0f} | {csv_bytes / 1e6 / s:.1f} | "
          f"{'' if rss is None else f'{rss:.0f}'} | {'' if ratio is None else f'{ratio:.2f}'} |")
    out.append(dict(pipeline=name, seconds=s, rows_per_s=n / s, csv_mb_per_s=csv_bytes / 1e6 / s,
                    peak_rss_mb=rss, ratio=ratio))
full = next(r for r in out if r["pipeline"] == "dbhaul extract-upload-copy")
print(f"end-to-end: dbhaul {full['seconds']:.1f} s vs native {total:.1f} s (ratio {full['ratio']:.2f})")
copy = next(r for r in out if r["pipeline"].startswith("dbhaul copy stage"))
print(f"copy stage: dbhaul {copy['seconds']:.1f} s vs native download+gunzip+copy "
      f"{secs['native download+gunzip+copy']:.1f} s (ratio {copy['ratio']:.2f})")
json.dump(dict(sf=sf, rows=n, csv_bytes=csv_bytes, gzip_bytes=gz_bytes, cores=cores, results=out),
          open(sys.argv[6], "w"), indent=2)
PY
