# Sourced by bench/run.sh and bench/pipeline.sh: TPC-H lineitem at scale factor $SF,
# generated once with tpchgen-cli (PyPI) into $OUT/sf$SF/lineitem.csv and loaded into
# PostgreSQL database $DB, table public.lineitem, when it is missing or has another row
# count. Sets: csv, expected (rows), cols (the column list without the key), PSQL (array).
command -v tpchgen-cli >/dev/null || python3 -m pip install -q tpchgen-cli 2>/dev/null \
  || python3 -m pip install -q --break-system-packages tpchgen-cli
PSQL=(env PGOPTIONS=-cclient_min_messages=warning psql -h 127.0.0.1 -U postgres -d "$DB" -v ON_ERROR_STOP=1 -qAt)
csv="$OUT/sf$SF/lineitem.csv"
if [ ! -s "$csv" ]; then
  echo "generating lineitem at scale factor $SF"
  tpchgen-cli csv -s "$SF" --tables lineitem --output-dir "$OUT/sf$SF" >/dev/null
fi
expected=$(($(wc -l < "$csv") - 1))
psql -h 127.0.0.1 -U postgres -d postgres -qAtc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $DB"
cols="l_orderkey bigint, l_partkey bigint, l_suppkey bigint, l_linenumber int, l_quantity decimal(15,2),
     l_extendedprice decimal(15,2), l_discount decimal(15,2), l_tax decimal(15,2), l_returnflag char(1),
     l_linestatus char(1), l_shipdate date, l_commitdate date, l_receiptdate date, l_shipinstruct char(25),
     l_shipmode char(10), l_comment varchar(44)"
have=$("${PSQL[@]}" -c "SELECT count(*) FROM lineitem" 2>/dev/null || echo 0)
if [ "$have" != "$expected" ]; then
  echo "loading $expected rows into PostgreSQL"
  "${PSQL[@]}" -c "DROP TABLE IF EXISTS lineitem; CREATE TABLE lineitem ($cols, PRIMARY KEY (l_orderkey, l_linenumber))"
  "${PSQL[@]}" -c "\\copy lineitem FROM '$csv' WITH (FORMAT csv, HEADER true)"
  "${PSQL[@]}" -c "VACUUM ANALYZE lineitem"
fi
