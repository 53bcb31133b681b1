//! `dbhaul tables`: what a source holds, as a user would ask before writing a job.

use crate::common::*;

#[test]
fn tables_lists_tables_row_estimates_columns_and_lobs() {
    let sandbox = Sandbox::new();
    let db = sandbox.path("shop.db");
    sqlite(
        &db,
        "CREATE TABLE orders (id integer primary key, customer varchar(40), note text, total numeric);\
         INSERT INTO orders VALUES (1, 'a', 'n', 1.5), (2, 'b', NULL, 2);\
         CREATE TABLE empty_one (k integer);",
    );
    let output = dbhaul(&["tables", "--source", &sqlite_odbc(&db)]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("main.orders  (table, ~2 rows)"), "{text}");
    assert!(text.contains("main.empty_one  (table, ~0 rows)"), "{text}");
    let note = text
        .lines()
        .find(|l| l.trim_start().starts_with("note"))
        .unwrap();
    assert!(note.ends_with("LOB"), "{note}");
    let id = text
        .lines()
        .find(|l| l.trim_start().starts_with("id "))
        .unwrap();
    assert!(id.ends_with("key"), "{id}");

    let output = dbhaul(&["tables", "--source", &sqlite_odbc(&db), "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listing[1]["table"], "main.orders");
    assert_eq!(listing[1]["columns"][1]["source_type"], "varchar(40)");
}

#[test]
fn tables_reads_postgres_and_mariadb_catalogs() {
    let mut client = pg();
    client
        .batch_execute("DROP TABLE IF EXISTS cat_pg.items; CREATE TABLE cat_pg.items (id int primary key, label varchar(10), body text); ANALYZE cat_pg.items")
        .unwrap();
    let output = dbhaul(&["tables", "--source", &pg_odbc(), "--schema", "cat_pg"]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("cat_pg.items  (table, "), "{text}");
    assert!(text.contains("varchar(10)"), "{text}");

    maria(
        "CREATE TABLE IF NOT EXISTS dbhaul_test.cat_items (id int primary key, label varchar(10));",
    );
    let output = dbhaul(&["tables", "--source", &maria_odbc(), "--schema", TEST_DB]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("dbhaul_test.cat_items  (table, ~"), "{text}");
}

/// Key ranges are read in key order; a key listed in table order would make every range
/// query sort the whole table (MariaDB Connector/ODBC reports KEY_SEQ wrongly).
#[test]
fn composite_primary_keys_are_listed_in_key_order() {
    maria(
        "DROP TABLE IF EXISTS dbhaul_test.cat_keys; \
         CREATE TABLE dbhaul_test.cat_keys (a int, b int, c int, PRIMARY KEY (c, a));",
    );
    assert_eq!(
        primary_key_of(&maria_odbc(), TEST_DB, "dbhaul_test.cat_keys"),
        ["c", "a"]
    );

    let mut client = pg();
    client
        .batch_execute("DROP TABLE IF EXISTS cat_pg.keys; CREATE TABLE cat_pg.keys (a int, b int, c int, PRIMARY KEY (c, a))")
        .unwrap();
    assert_eq!(
        primary_key_of(&pg_odbc(), "cat_pg", "cat_pg.keys"),
        ["c", "a"]
    );
}

/// The primary key `dbhaul tables --json` reports for one table.
fn primary_key_of(source: &str, schema: &str, table: &str) -> Vec<String> {
    let output = dbhaul(&["tables", "--source", source, "--schema", schema, "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let entry = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap();
    entry["primary_key"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}
