#!/usr/bin/env bash
# Table shapes: `dbhaul run` (mode extract, gzip level 1, one subtask) against each
# database's native pipeline on the same table in the same run, each pair one right after
# the other. PostgreSQL's native pipeline is
# `psql \copy (SELECT * FROM t) TO STDOUT WITH (FORMAT csv) | pigz -p 2 -1`, MariaDB's
# `mariadb --quick -B -N -e 'SELECT * FROM t' | pigz -p 2 -1`. The shapes:
#   0. lineitem: TPC-H lineitem as loaded, varchar/char columns, for comparison;
#   1. lineitem_text: TPC-H lineitem with its character columns as `text` (LOBs to ODBC);
#   2. the same through a DSN (an odbc.ini of its own in bench/out, ODBCINI);
#   3. the same with `[task] sorting = "if_possible"` (key-ordered, resumable read);
#   4. tags_docs: ROWS rows of `id bigint, tags text[], doc jsonb, note text`;
#   5. lobs_big: LOB_ROWS rows of a TEXT_MB MB `text` and a BLOB_MB MB `bytea` each
#      (here dbhaul's peak RSS is the figure: under 100 MB);
#   6. MariaDB lineitem_text: MARIA_ROWS rows of lineitem, l_comment as `TEXT`.
# Prints, per shape, rows, wall seconds of each side, the ratio native s / dbhaul s (above
# 1 means dbhaul is faster), both sides' peak RSS and compressed size, and the path dbhaul
# read through (from its debug log: native COPY, or ODBC and why); appends the same rows
# to bench/out/shapes.tsv. The tables are made once and kept while their size is right.
#
#   bash bench/shapes.sh          # SF1 lineitem, 1,000,000 rows of arrays and jsonb, 10 LOB rows
#   SF=0.1 ROWS=200000 LOB_ROWS=1 MARIA_ROWS=200000 bash bench/shapes.sh    # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
. bench/lineitem.sh
ROWS=${ROWS:-1000000}
LOB_ROWS=${LOB_ROWS:-10}
TEXT_MB=${TEXT_MB:-100}
BLOB_MB=${BLOB_MB:-50}
MARIA_ROWS=${MARIA_ROWS:-1000000}
MARIA=(mariadb -h 127.0.0.1 -u root --local-infile=1 "$DB")

# --- data -------------------------------------------------------------------------------
# pg_has QUERY WANT: whether QUERY returns WANT (a missing table gives "").
pg_has() { [ "$("${PSQL[@]}" -c "$1" 2>/dev/null || true)" = "$2" ]; }

# 1-3. lineitem with text columns, from the lineitem that bench/lineitem.sh loaded.
if ! pg_has "SELECT count(*) FROM lineitem_text" "$expected"; then
  echo "making lineitem_text ($expected rows)"
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS lineitem_text" -c "CREATE TABLE lineitem_text (
      l_orderkey bigint, l_partkey bigint, l_suppkey bigint, l_linenumber int, l_quantity decimal(15,2),
      l_extendedprice decimal(15,2), l_discount decimal(15,2), l_tax decimal(15,2), l_returnflag text,
      l_linestatus text, l_shipdate date, l_commitdate date, l_receiptdate date, l_shipinstruct text,
      l_shipmode text, l_comment text)" \
    -c "INSERT INTO lineitem_text SELECT * FROM lineitem" \
    -c "ALTER TABLE lineitem_text ADD PRIMARY KEY (l_orderkey, l_linenumber)" \
    -c "VACUUM ANALYZE lineitem_text"
fi

# 4. Arrays of 3-8 short words (one in 20 with a quote or a comma), jsonb objects of 10
# keys with nested arrays and an object, notes of 20-200 characters. `i` in the subqueries
# makes them run again for each row.
if ! pg_has "SELECT count(*) FROM tags_docs" "$ROWS"; then
  echo "making tags_docs ($ROWS rows)"
  "${PSQL[@]}" -v rows="$ROWS" > /dev/null <<'SQL'
DROP TABLE IF EXISTS tags_docs;
CREATE TABLE tags_docs (id bigint PRIMARY KEY, tags text[], doc jsonb, note text);
SELECT setseed(0.42);
WITH v AS (SELECT '{red,green,blue,north,south,east,west,alpha,beta,gamma,delta,fast,slow,new,used,open,
                    closed,paid,due,small,large,steel,wood,glass,paper,cotton,wool,retail,bulk,export,
                    import,draft,final,urgent,hold,spring,summer,autumn,winter,misc}'::text[] AS w,
                  ARRAY['say "hi"', 'salt, pepper', 'O''Brien', 'a,b', '5" x 7"'] AS odd)
INSERT INTO tags_docs
SELECT i,
  ARRAY(SELECT CASE WHEN random() < 0.05 THEN odd[1 + floor(random() * 5)::int]
                    ELSE w[1 + floor(random() * 40)::int] END
        FROM generate_series(1, 3 + (i + floor(random() * 6)::int) % 6)),
  jsonb_build_object(
    'id', i,
    'sku', 'SKU-' || lpad((i::bigint * 7919 % 10000000)::text, 7, '0'),
    'name', initcap(w[1 + floor(random() * 40)::int]) || ' ' || w[1 + floor(random() * 40)::int],
    'price', round((random() * 1000)::numeric, 2),
    'active', random() < 0.8,
    'created', to_char(timestamp '2020-01-01' + i * interval '37 seconds', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'dims', jsonb_build_object('w', floor(random() * 200), 'h', floor(random() * 200), 'unit', 'cm'),
    'sizes', to_jsonb(ARRAY(SELECT floor(random() * 100)::int FROM generate_series(1, 1 + i % 5))),
    'variants', (SELECT jsonb_agg(jsonb_build_object('n', n, 'color', w[1 + floor(random() * 40)::int],
                                                     'stock', floor(random() * 500)::int))
                 FROM generate_series(1, 1 + i % 3) n),
    'rating', round((random() * 5)::numeric, 1)),
  left(array_to_string(ARRAY(SELECT w[1 + floor(random() * 40)::int] FROM generate_series(1, 40 + i % 2)), ' '),
       20 + floor(random() * 181)::int)
FROM generate_series(1, :rows) i, v;
VACUUM ANALYZE tags_docs;
SQL
fi

# 5. LOBs: hex digits of random MD5s as the text, their bytes as the bytea, one row per
# statement (each about TEXT_MB + BLOB_MB of the server's memory while it is built).
lob_shape="$LOB_ROWS/$((TEXT_MB * 1024 * 1024))/$((BLOB_MB * 1024 * 1024))"
lob_query="SELECT count(*) || '/' || coalesce(min(octet_length(body)), 0) || '/' || coalesce(min(octet_length(blob)), 0) FROM lobs_big"
if ! pg_has "$lob_query" "$lob_shape"; then
  echo "making lobs_big ($LOB_ROWS rows of $TEXT_MB MB text + $BLOB_MB MB bytea)"
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS lobs_big" -c "CREATE TABLE lobs_big (id int PRIMARY KEY, body text, blob bytea)"
  for i in $(seq "$LOB_ROWS"); do
    "${PSQL[@]}" -c "INSERT INTO lobs_big SELECT $i,
      (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, $TEXT_MB * 1024 * 1024 / 32)),
      (SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, $BLOB_MB * 1024 * 1024 / 16))"
  done
  "${PSQL[@]}" -c "VACUUM ANALYZE lobs_big"
fi

# 6. MariaDB: the first MARIA_ROWS rows of the same CSV, l_comment as TEXT.
maria_rows=$((MARIA_ROWS < expected ? MARIA_ROWS : expected))
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS $DB; SET GLOBAL local_infile = 1"
have=$("${MARIA[@]}" -N -e "SELECT count(*) FROM lineitem_text" 2>/dev/null || echo 0)
if [ "$have" != "$maria_rows" ]; then
  echo "loading $maria_rows rows into MariaDB lineitem_text"
  head -n "$((maria_rows + 1))" "$csv" > "$OUT/maria_lineitem.csv"
  "${MARIA[@]}" -e "DROP TABLE IF EXISTS lineitem_text;
    CREATE TABLE lineitem_text (${cols/"l_comment varchar(44)"/l_comment TEXT}, PRIMARY KEY (l_orderkey, l_linenumber))"
  "${MARIA[@]}" -e "LOAD DATA LOCAL INFILE '$PWD/$OUT/maria_lineitem.csv' INTO TABLE lineitem_text
    FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES"
  "${MARIA[@]}" -e "ANALYZE TABLE lineitem_text" > /dev/null
  rm -f "$OUT/maria_lineitem.csv"
fi

# A DSN for PostgreSQL in an odbc.ini of the benchmark's own (unixODBC reads user DSNs
# from the file ODBCINI names).
export ODBCINI=$PWD/$OUT/odbc.ini
cat > "$ODBCINI" <<INI
[dbhaul_bench_pg]
Driver     = PostgreSQL Unicode
Servername = 127.0.0.1
Port       = 5432
Database   = $DB
Username   = postgres
INI
odbcinst -q -s | grep -qx '\[dbhaul_bench_pg\]' || { echo "unixODBC does not see the DSN in $ODBCINI" >&2; exit 1; }

# --- runs -------------------------------------------------------------------------------
pg_conn="Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=$DB;Uid=postgres;"
maria_conn="Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Uid=root;Pwd=;"
pg_native() { echo "${PSQL[*]} -c '\\copy (SELECT * FROM $1) TO STDOUT WITH (FORMAT csv)'"; }
maria_native() { echo "mariadb --quick -B -N -h 127.0.0.1 -u root $DB -e 'SELECT * FROM $1'"; }
job() { # task connection table [task settings]
  cat > "$OUT/$1.toml" <<TOML
[task]
name = "$1"
mode = "extract"
${4:-}
[source]
connection = "$2"
[[tables]]
name = "$3"
[files]
compression = "gzip"
gzip_level = 1
TOML
  echo "$OUT/$1.toml"
}
# read_path LOG: the path the extract's debug lines name.
read_path() {
  local why ranges kind
  if ranges=$(grep -m1 -o 'read in [a-z]* ranges on two connections.*ranges=[0-9]*' "$1"); then
    kind=${ranges#read in }; echo "native COPY, ${ranges##*ranges=} ${kind%% *} ranges on 2 connections"
  elif grep -q 'large_values_aside=true' "$1"; then echo "native COPY, large values read aside"
  elif grep -q 'extract started (native COPY)' "$1"; then echo "native COPY"
  elif why=$(grep -m1 -o 'read through ODBC: .*' "$1"); then
    why=${why#read through ODBC: }; echo "ODBC (${why%% task=*})"
  elif grep -q 'extract started' "$1"; then echo "ODBC"
  else echo "?"; fi
}
run="$OUT/shapes.run.tsv"
: > "$run"
# shape NAME ROWS NATIVE-COMMAND JOB: the native pipeline into a .gz, then dbhaul (its
# stderr, progress and the extract's debug lines, beside the job file as NAME.log).
shape() {
  local name=$1 rows=$2 native=$3 job=$4 log="${4%.toml}.log"
  echo "running: $name, $rows rows"
  rm -rf "$OUT/shapes-work" "$OUT/shapes.gz"
  sync
  /usr/bin/time -f '%e %M' -o "$OUT/time" bash -c "$native | pigz -p 2 -1 > $OUT/shapes.gz"
  read -r native_s native_kib < "$OUT/time"
  local native_gz; native_gz=$(stat -c %s "$OUT/shapes.gz")
  rm -f "$OUT/shapes.gz"
  sync
  if ! DBHAUL_LOG=dbhaul=warn,dbhaul::pipeline::extract=debug /usr/bin/time -f '%e %M' -o "$OUT/time" \
      "$BIN" run "$job" --work-dir "$OUT/shapes-work" --json > "$OUT/shapes-summary.json" 2> "$log"; then
    echo "dbhaul run failed on $name; the end of $log:" >&2; tail -n 20 "$log" >&2; exit 1
  fi
  read -r dbhaul_s dbhaul_kib < "$OUT/time"
  local got dbhaul_gz
  read -r got dbhaul_gz < <(python3 -c 'import json,sys; s = json.load(open(sys.argv[1])); print(s["rows"], s["bytes_compressed"])' "$OUT/shapes-summary.json")
  [ "$got" = "$rows" ] || echo "warning: dbhaul wrote $got rows of $name, the table has $rows" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rows" "$native_s" "$dbhaul_s" "$native_kib" "$dbhaul_kib" \
    "$native_gz" "$dbhaul_gz" "$(read_path "$log")" >> "$run"
  rm -rf "$OUT/shapes-work"
}

shape "lineitem (varchar/char, PK)" "$expected" "$(pg_native lineitem)" "$(job shape_varchar "$pg_conn" public.lineitem)"
shape "lineitem_text" "$expected" "$(pg_native lineitem_text)" "$(job shape_text "$pg_conn" public.lineitem_text)"
shape "lineitem_text, DSN" "$expected" "$(pg_native lineitem_text)" "$(job shape_dsn "DSN=dbhaul_bench_pg;" public.lineitem_text)"
shape "lineitem_text, sorting if_possible" "$expected" "$(pg_native lineitem_text)" \
  "$(job shape_sorted "$pg_conn" public.lineitem_text 'sorting = "if_possible"')"
shape "tags_docs (text[], jsonb, text)" "$ROWS" "$(pg_native tags_docs)" "$(job shape_docs "$pg_conn" public.tags_docs)"
shape "lobs_big (${TEXT_MB} MB text + ${BLOB_MB} MB bytea a row)" "$LOB_ROWS" "$(pg_native lobs_big)" \
  "$(job shape_lobs "$pg_conn" public.lobs_big)"
shape "MariaDB lineitem_text (l_comment TEXT)" "$maria_rows" "$(maria_native lineitem_text)" \
  "$(job shape_maria "$maria_conn" "$DB.lineitem_text")"

# --- table ------------------------------------------------------------------------------
python3 - "$run" "$OUT/shapes.tsv" "$SF" <<'PY'
import datetime, os, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
cores = open("/proc/cpuinfo").read().count("processor")
print(f"\nTable shapes, TPC-H SF{sys.argv[3]}; native = psql \\copy (or mariadb --quick) | pigz -p 2 -1; {cores} cores")
print("| shape | rows | native s | dbhaul s | native s / dbhaul s | dbhaul peak MiB | native peak MiB | gz MB native / dbhaul | dbhaul read path |")
print("|---|---|---|---|---|---|---|---|---|")
new = not os.path.exists(sys.argv[2])
when = datetime.datetime.now().isoformat(timespec="seconds")
with open(sys.argv[2], "a") as tsv:
    if new:
        tsv.write("when\tsf\tshape\trows\tnative_s\tdbhaul_s\tratio\tdbhaul_peak_mib\tnative_peak_mib"
                  "\tnative_gz_bytes\tdbhaul_gz_bytes\tread_path\n")
    for name, n, native, dbhaul, native_kib, dbhaul_kib, native_gz, dbhaul_gz, path in rows:
        ratio = float(native) / max(float(dbhaul), 0.01)
        mib, native_mib = int(dbhaul_kib) / 1024, int(native_kib) / 1024
        gz = f"{int(native_gz) / 1e6:.0f} / {int(dbhaul_gz) / 1e6:.0f}"
        print(f"| {name} | {int(n):,} | {float(native):.1f} | {float(dbhaul):.1f} | {ratio:.2f}x | {mib:.0f} | {native_mib:.0f} | {gz} | {path} |")
        tsv.write(f"{when}\t{sys.argv[3]}\t{name}\t{n}\t{native}\t{dbhaul}\t{ratio:.3f}\t{mib:.1f}\t{native_mib:.1f}"
                  f"\t{native_gz}\t{dbhaul_gz}\t{path}\n")
PY
