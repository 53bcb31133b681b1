#!/usr/bin/env bash
# The quick start: set-up, build, create a small SQLite shop database, extract it with
# `dbhaul run` into ./dbhaul-work, and show where the chunks are with their row counts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash appliance/setup.sh
cargo build --release --locked
mkdir -p dbhaul-work
db=dbhaul-work/quickstart-shop.db
rm -f "$db"
sqlite3 "$db" <<'SQL'
CREATE TABLE customers (id INTEGER PRIMARY KEY, name VARCHAR(80), country CHAR(2), since DATE);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, amount NUMERIC(12,2),
                     status VARCHAR(10), placed_at TIMESTAMP, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO customers SELECT i, 'customer ' || i || CASE i % 7 WHEN 0 THEN ', "VIP"' ELSE '' END,
  CASE i % 3 WHEN 0 THEN 'de' WHEN 1 THEN 'fr' ELSE 'us' END, date('2020-01-01', '+' || i || ' days') FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
INSERT INTO orders SELECT i, 1 + i % 1000, (i % 10000) / 100.0,
  CASE i % 4 WHEN 0 THEN 'draft' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE NULL END,
  datetime('2024-01-01', '+' || i || ' minutes'),
  CASE WHEN i % 10 = 0 THEN 'gift wrap, please' || char(10) || 'thanks' WHEN i % 10 = 1 THEN '' ELSE NULL END FROM n;
SQL
echo
./target/release/dbhaul run appliance/examples/quickstart.toml --work-dir dbhaul-work
echo
echo "chunks (file: rows):"
for manifest in $(find dbhaul-work/quickstart -name manifest.json | sort); do
  dir=$(dirname "$manifest")
  python3 - "$manifest" "$dir" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for c in m["chunks"]:
    print(f"  {sys.argv[2]}/{c['name']}: {c['rows']} rows")
print(f"  {sys.argv[1]}: {m['rows']} rows in {len(m['chunks'])} chunk(s)")
PY
done
echo
echo "look inside one:  zcat dbhaul-work/quickstart/main.orders/part-001/00000001.csv.gz | head"
