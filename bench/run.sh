#!/usr/bin/env bash
# Extraction benchmark: TPC-H lineitem (tpchgen-cli, PyPI) loaded into PostgreSQL and
# MariaDB, extracted by `dbhaul run` (the native COPY path and the ODBC path, with 1, 2 and
# 4 partitions) and, in the same run, by the native pipelines
# (`psql \copy ... | gzip -1` and `| pigz -p 2 -1`). Prints one table: wall seconds,
# rows/s, MB/s of CSV, the ratio to `psql | pigz -p 2 -1`, peak RSS and compressed size.
# A second part extracts a table of more than 1 GB of CSV from each database and reports
# dbhaul's peak RSS (it must stay under 100 MB), and a third, 10 rows of a 50 MB text
# value each from each database.
#
#   bash bench/run.sh            # scale factor 1
#   SF=10 bash bench/run.sh      # larger
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
MARIA=(mariadb -h 127.0.0.1 -u root --local-infile=1 "$DB")

# --- data -------------------------------------------------------------------------------
. bench/lineitem.sh
ddl="$cols, PRIMARY KEY (l_orderkey, l_linenumber)"
have=$("${PSQL[@]}" -c "SELECT count(*) FROM lineitem_x2" 2>/dev/null || echo 0)
if [ "$have" != "$((expected * 2))" ]; then
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS lineitem_x2" -c "CREATE TABLE lineitem_x2 AS SELECT * FROM lineitem UNION ALL SELECT * FROM lineitem"
  "${PSQL[@]}" -c "VACUUM ANALYZE lineitem_x2"
fi
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS $DB; SET GLOBAL local_infile = 1"
have=$("${MARIA[@]}" -N -e "SELECT count(*) FROM lineitem_x2" 2>/dev/null || echo 0)
if [ "$have" != "$((expected * 2))" ]; then
  echo "loading $((expected * 2)) rows into MariaDB (twice the table, with a composite key)"
  "${MARIA[@]}" -e "DROP TABLE IF EXISTS lineitem_x2; CREATE TABLE lineitem_x2 (${ddl/PRIMARY KEY (l_orderkey, l_linenumber)/l_copy int, PRIMARY KEY (l_copy, l_orderkey, l_linenumber)})"
  for copy in 1 2; do
    "${MARIA[@]}" -e "LOAD DATA LOCAL INFILE '$PWD/$csv' INTO TABLE lineitem_x2 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES
      (l_orderkey, l_partkey, l_suppkey, l_linenumber, l_quantity, l_extendedprice, l_discount, l_tax, l_returnflag,
       l_linestatus, l_shipdate, l_commitdate, l_receiptdate, l_shipinstruct, l_shipmode, l_comment) SET l_copy = $copy"
  done
fi

# --- runs -------------------------------------------------------------------------------
results="$OUT/results.tsv"
: > "$results"
measure() { # name rows command...   -> appends name, seconds, peak KiB, CPU s, compressed bytes
  local name=$1 rows=$2 out=$OUT/run.out; shift 2
  sync
  /usr/bin/time -f '%e %M %U %S' -o "$OUT/time" bash -c "$*" > "$out"
  read -r secs kib user sys < "$OUT/time"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rows" "$secs" "$kib" "$(awk "BEGIN { print $user + $sys }")" "$(stat -c %s "$OUT/last.gz" 2>/dev/null || echo 0)" >> "$results"
}
job() { # task connection table gzip_level [source settings] [table settings]
  cat > "$OUT/$1.toml" <<TOML
[task]
name = "$1"
[source]
connection = "$2"
${5:-}
[[tables]]
name = "$3"
${6:-}
[files]
gzip_level = $4
TOML
  echo "$OUT/$1.toml"
}
dbhaul_size() { find "$OUT/work/$1" -name '*.csv.gz' -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
pg_conn="Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=$DB;Uid=postgres;"
maria_conn="Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Uid=root;Pwd=;"

echo "running: PostgreSQL lineitem, $expected rows"
rm -f "$OUT/last.gz"
measure "psql \\copy csv > /dev/null (ceiling)" "$expected" "${PSQL[*]} -c '\\copy lineitem to stdout csv' > /dev/null"
measure "psql \\copy csv | gzip -1" "$expected" "${PSQL[*]} -c '\\copy lineitem to stdout csv' | gzip -1 > $OUT/last.gz"
measure "psql \\copy csv | pigz -p 2 -1" "$expected" "${PSQL[*]} -c '\\copy lineitem to stdout csv' | pigz -p 2 -1 > $OUT/last.gz"
for level in 1 3; do
  rm -rf "$OUT/work"; rm -f "$OUT/last.gz"
  measure "dbhaul run, native COPY, gzip $level" "$expected" "$BIN run $(job "pg$level" "$pg_conn" public.lineitem $level) --work-dir $OUT/work --json > $OUT/summary.json"
  sed -i "\$s/\t0\$/\t$(dbhaul_size "pg$level")/" "$results"
done
for parts in 2 4; do
  rm -rf "$OUT/work"
  measure "dbhaul run, native COPY, gzip 1, $parts partitions" "$expected" "$BIN run $(job "pgp$parts" "$pg_conn" public.lineitem 1 "" "partition = { column = \"l_orderkey\", ranges = $parts }") --parallel $parts --work-dir $OUT/work --json > $OUT/summary.json"
  sed -i "\$s/\t0\$/\t$(dbhaul_size "pgp$parts")/" "$results"
done
for parts in 1 2; do
  rm -rf "$OUT/work"
  partition=""; [ "$parts" = 1 ] || partition="partition = { column = \"l_orderkey\", ranges = $parts }"
  measure "dbhaul run, ODBC (psqlODBC), gzip 1, $parts partition(s)" "$expected" "$BIN run $(job "pgodbc$parts" "$pg_conn" public.lineitem 1 "native_copy = false" "$partition") --parallel $parts --work-dir $OUT/work --json > $OUT/summary.json"
  sed -i "\$s/\t0\$/\t$(dbhaul_size "pgodbc$parts")/" "$results"
done
echo "running: peers on the same table: odbc2parquet (same psqlODBC data source), sling"
command -v odbc2parquet >/dev/null || cargo install odbc2parquet --locked -q
command -v sling-linux-amd64 >/dev/null || python3 -m pip install -q sling-linux-amd64 2>/dev/null \
  || python3 -m pip install -q --break-system-packages sling-linux-amd64
SLING=$(python3 -c 'import os, sling_linux_amd64 as s; print(os.path.join(os.path.dirname(s.__file__), "bin", "sling-linux-amd64"))')
rm -f "$OUT/last.gz"
measure "odbc2parquet query (psqlODBC, UseDeclareFetch=1)" "$expected" "odbc2parquet query --connection-string '${pg_conn}UseDeclareFetch=1;Fetch=10000;' $OUT/lineitem.parquet 'SELECT * FROM lineitem'"
sed -i "\$s/\t0\$/\t$(stat -c %s "$OUT/lineitem.parquet")/" "$results"
rm -f "$OUT"/sling*.csv.gz
measure "sling run to a local csv.gz" "$expected" "SLING_DISABLE_TELEMETRY=true SLING_HOME_DIR=$OUT/sling-home $SLING run --src-conn 'postgresql://postgres@127.0.0.1:5432/$DB?sslmode=disable' --src-stream public.lineitem --tgt-object 'file://$OUT/sling.csv.gz' --tgt-options '{compression: gzip}' > $OUT/sling.log 2>&1"
sed -i "\$s/\t0\$/\t$(du -cb "$OUT"/sling*.csv.gz 2>/dev/null | tail -1 | cut -f1)/" "$results"
echo "running: memory, more than 1 GB of CSV from each database"
rm -rf "$OUT/work"
measure "dbhaul run, PostgreSQL lineitem x2" "$((expected * 2))" "$BIN run $(job pgx2 "$pg_conn" public.lineitem_x2 1) --work-dir $OUT/work --json > $OUT/pgx2.json"
sed -i "\$s/\t0\$/\t$(dbhaul_size pgx2)/" "$results"
measure "dbhaul run, MariaDB lineitem x2 (key ranges)" "$((expected * 2))" "$BIN run $(job mariax2 "$maria_conn" $DB.lineitem_x2 1) --work-dir $OUT/work --json > $OUT/mariax2.json"
sed -i "\$s/\t0\$/\t$(dbhaul_size mariax2)/" "$results"
rm -f "$OUT/last.gz"
measure "mariadb --quick -B | pigz -p 2 -1, lineitem x2 (MariaDB's native pipeline)" "$((expected * 2))" "mariadb --quick -B -N -h 127.0.0.1 -u root $DB -e 'SELECT * FROM lineitem_x2' | pigz -p 2 -1 > $OUT/last.gz"
echo "running: memory, 10 rows with a 50 MB text value each (LOBs, in slices), from each database"
"${PSQL[@]}" -c "DROP TABLE IF EXISTS lobs50; CREATE TABLE lobs50 (id int PRIMARY KEY, body text);
  INSERT INTO lobs50 SELECT i, repeat(md5(i::text), 50 * 1024 * 1024 / 32) FROM generate_series(1, 10) i"
rm -rf "$OUT/work"; rm -f "$OUT/last.gz"
measure "dbhaul run, PostgreSQL, 10 rows of a 50 MB text each" 10 "$BIN run $(job lobs "$pg_conn" public.lobs50 1) --work-dir $OUT/work --json > $OUT/lobs.json"
sed -i "\$s/\t0\$/\t$(dbhaul_size lobs)/" "$results"
mariadb -h 127.0.0.1 -u root -e "SET GLOBAL max_allowed_packet = 1073741824"
"${MARIA[@]}" -e "DROP TABLE IF EXISTS lobs50; CREATE TABLE lobs50 (id int PRIMARY KEY, body longtext);
  INSERT INTO lobs50 SELECT seq, REPEAT(MD5(seq), 50 * 1024 * 1024 DIV 32) FROM seq_1_to_10"
rm -rf "$OUT/work"
measure "dbhaul run, MariaDB, 10 rows of a 50 MB text each" 10 "$BIN run $(job mlobs "$maria_conn" $DB.lobs50 1) --work-dir $OUT/work --json > $OUT/mlobs.json"
sed -i "\$s/\t0\$/\t$(dbhaul_size mlobs)/" "$results"
csv_bytes=$(python3 -c "import json; print(json.load(open('$OUT/pgx2.json'))['bytes_uncompressed'])")

# --- table ------------------------------------------------------------------------------
python3 - "$results" "$csv_bytes" "$SF" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
csv_mb_x2 = int(sys.argv[2]) / 1e6
native = next(float(r[2]) for r in rows if "pigz" in r[0])
print(f"\nTPC-H lineitem SF{sys.argv[3]}: CSV {csv_mb_x2 / 2:.0f} MB per copy; machine: {open('/proc/cpuinfo').read().count('processor')} cores")
print(f"| pipeline | rows | wall s | rows/s | MB/s CSV | speed vs pigz | peak MiB | client CPU s per GB of CSV | compressed MB |")
print(f"|---|---|---|---|---|---|---|---|---|")
out = []
for name, n, secs, kib, cpu, size in rows:
    n, secs, kib, cpu, size = int(n), float(secs), int(kib), float(cpu), int(size)
    lineitem = "lineitem" in name or n % int(rows[0][1]) == 0
    mb = csv_mb_x2 / 2 * (n / (int(rows[0][1]))) if lineitem else 524.3
    ratio = f"{native / secs:.2f}x" if n == int(rows[0][1]) else ""
    print(f"| {name} | {n} | {secs:.1f} | {n / secs:,.0f} | {mb / secs:.0f} | {ratio} | {kib / 1024:.0f} | {cpu / (mb / 1000):.1f} | {size / 1e6:.0f} |")
    out.append(dict(pipeline=name, rows=n, seconds=secs, rows_per_s=n / secs, peak_mib=kib / 1024,
                    cpu_s_per_gb=cpu / (mb / 1000), compressed_bytes=size))
json.dump(out, open(sys.argv[1].replace(".tsv", ".json"), "w"), indent=2)
PY
