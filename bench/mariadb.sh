#!/usr/bin/env bash
# MariaDB extraction, where the time goes: TPC-H lineitem (PRIMARY KEY (l_orderkey,
# l_linenumber)) extracted by `dbhaul run` (Connector/ODBC, key ranges) with 1, 2 and 4
# partitions, and in the same run by MariaDB's own client (`mariadb --quick -B`, to
# /dev/null and through `pigz -p 2 -1`). For each: wall time, the client side's CPU
# (dbhaul, or mariadb + pigz) and the server's (mariadbd, read from /proc), peak RSS.
#
#   bash bench/mariadb.sh          # scale factor 1 (6 M rows)
#   SF=10 bash bench/mariadb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
. bench/lineitem.sh
MARIA=(mariadb -h 127.0.0.1 -u root --local-infile=1 "$DB")
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS $DB; SET GLOBAL local_infile = 1"
have=$("${MARIA[@]}" -N -e "SELECT count(*) FROM lineitem" 2>/dev/null || echo 0)
if [ "$have" != "$expected" ]; then
  echo "loading $expected rows into MariaDB"
  "${MARIA[@]}" -e "DROP TABLE IF EXISTS lineitem; CREATE TABLE lineitem ($cols, PRIMARY KEY (l_orderkey, l_linenumber))"
  "${MARIA[@]}" -e "LOAD DATA LOCAL INFILE '$PWD/$csv' INTO TABLE lineitem FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES"
  "${MARIA[@]}" -e "ANALYZE TABLE lineitem" >/dev/null
fi

server=$(pgrep -xo mariadbd || pgrep -xo mysqld)
ticks=$(getconf CLK_TCK)
server_cpu() { awk -v t="$ticks" '{ print ($14 + $15) / t }' "/proc/$server/stat"; }
results="$OUT/mariadb.tsv"
: > "$results"
measure() { # name command...
  local name=$1; shift
  sync
  local before; before=$(server_cpu)
  /usr/bin/time -f '%e %M %U %S' -o "$OUT/time" bash -c "$*" > /dev/null
  local after; after=$(server_cpu)
  read -r secs kib user sys < "$OUT/time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$secs" "$kib" "$(awk "BEGIN { print $user + $sys }")" \
    "$(awk "BEGIN { print $after - $before }")" >> "$results"
}
job() { # task partition-line
  cat > "$OUT/$1.toml" <<TOML
[task]
name = "$1"
[source]
connection = "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Uid=root;Pwd=;"
[[tables]]
name = "$DB.lineitem"
${2:-}
[files]
gzip_level = 1
TOML
  echo "$OUT/$1.toml"
}

echo "running: MariaDB lineitem, $expected rows"
measure "mariadb --quick -B > /dev/null (ceiling)" "mariadb --quick -B -N -h 127.0.0.1 -u root $DB -e 'SELECT * FROM lineitem'"
measure "mariadb --quick -B | pigz -p 2 -1" "mariadb --quick -B -N -h 127.0.0.1 -u root $DB -e 'SELECT * FROM lineitem' | pigz -p 2 -1 > $OUT/last.gz"
for parts in 1 2 4; do
  rm -rf "$OUT/work"
  partition=""; [ "$parts" = 1 ] || partition="partition = { column = \"l_orderkey\", ranges = $parts }"
  measure "dbhaul run, gzip 1, $parts partition(s)" "$BIN run $(job "maria$parts" "$partition") --parallel $parts --work-dir $OUT/work --json"
done
rm -rf "$OUT/work"

python3 - "$results" "$expected" <<'PY'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
n = int(sys.argv[2])
native = next(float(r[1]) for r in rows if "pigz" in r[0])
print(f"\nMariaDB lineitem, {n} rows; {open('/proc/cpuinfo').read().count('processor')} cores")
print("| pipeline | wall s | rows/s | speed vs mariadb \\| pigz | client CPU s | server CPU s | peak MiB |")
print("|---|---|---|---|---|---|---|")
out = []
for name, secs, kib, client, server in rows:
    secs = float(secs)
    print(f"| {name} | {secs:.1f} | {n / secs:,.0f} | {native / secs:.2f}x | {float(client):.1f} | {float(server):.1f} | {int(kib) / 1024:.0f} |")
    out.append(dict(pipeline=name, rows=n, seconds=secs, rows_per_s=n / secs, ratio=native / secs,
                    client_cpu_s=float(client), server_cpu_s=float(server), peak_mib=int(kib) / 1024))
json.dump(out, open(sys.argv[1].replace(".tsv", ".json"), "w"), indent=2)
PY
