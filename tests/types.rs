//! The type matrix: the edge values of every type a source has (the ends of every number,
//! NaN, the infinities and -0, dates and times at their limits and before Christ, text that
//! breaks CSV, arrays, ranges, enums, domains, composites, zero dates, unsigned and bit
//! types, values SQLite stores against their declared type) go through dbhaul and must come
//! out unchanged.
//!
//! PostgreSQL goes the whole way, into warehouse tables of the same DDL (as `pg_dump -s`
//! writes it), once by the default path and once through ODBC, and is compared column by
//! column by the text PostgreSQL prints for each value, and with `=` where the type has it.
//! MariaDB and SQLite are extracted, and each chunk field is compared with the text (or
//! the bytes, or the double) the source itself gives for the value.
//!
//! Each matrix is extracted as one table with a column per type, and also as one table per
//! column, so a column that fails its table still lets every other column be checked, and
//! the PostgreSQL columns of types the native path takes are read by it. A value the tool
//! cannot carry must fail its table with an error that names the column, never change;
//! each test lists every value that changed and every table that failed, then fails.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::fixtures::{self, Db};
use crate::common::s3;
use crate::common::*;

// --- matrices ---------------------------------------------------------------------------

/// One column of a matrix: its name, its type as the DDL writes it (`{s}` stands for the
/// schema of the PostgreSQL types the test creates), how it is compared, and its values as
/// SQL expressions, one a row (ids 1, 2, …). Rows past the end of its list hold NULL, and
/// so does the matrix's last row in every column.
struct Column<C> {
    name: &'static str,
    ty: &'static str,
    compare: C,
    values: Vec<String>,
}

/// A column whose values are string literals.
fn literals<C>(name: &'static str, ty: &'static str, compare: C, values: &[&str]) -> Column<C> {
    Column {
        name,
        ty,
        compare,
        values: values.iter().map(|v| quote(v)).collect(),
    }
}

/// A column whose values are SQL expressions.
fn expressions<C>(
    name: &'static str,
    ty: &'static str,
    compare: C,
    values: impl IntoIterator<Item = String>,
) -> Column<C> {
    Column {
        name,
        ty,
        compare,
        values: values.into_iter().collect(),
    }
}

/// A string literal; PostgreSQL, SQLite and MariaDB (with `NO_BACKSLASH_ESCAPES`) read it
/// alike.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The text literals of the fixtures' tricky strings (quotes, delimiters, CR and LF, `\.`,
/// backslashes, emoji, the empty string).
fn tricky(db: Db) -> impl Iterator<Item = String> {
    fixtures::TRICKY_STRINGS
        .iter()
        .map(move |s| fixtures::text(db, s))
}

/// Rows of a matrix: the longest list of values, and one row of NULLs.
fn row_count<C>(columns: &[Column<C>]) -> usize {
    columns.iter().map(|c| c.values.len()).max().unwrap_or(0) + 1
}

/// The matrix's tables: `{prefix}matrix` with every column, and `{prefix}one_<column>`
/// with the id and that column alone.
fn matrix_tables<'a, C>(
    prefix: &str,
    columns: &'a [Column<C>],
) -> Vec<(String, Vec<&'a Column<C>>)> {
    let mut tables = vec![(format!("{prefix}matrix"), columns.iter().collect())];
    for column in columns {
        tables.push((format!("{prefix}one_{}", column.name), vec![column]));
    }
    tables
}

/// DDL (and, `with_rows`, INSERTs) of the matrix's tables, in `namespace` (empty for
/// SQLite); `ty` gives a column's type as the database's DDL writes it.
fn matrix_sql<C>(
    namespace: &str,
    prefix: &str,
    columns: &[Column<C>],
    with_rows: bool,
    ty: impl Fn(&Column<C>) -> String,
) -> String {
    let qualified = |table: &str| match namespace {
        "" => table.to_string(),
        ns => format!("{ns}.{table}"),
    };
    let mut sql = String::new();
    for (table, cols) in matrix_tables(prefix, columns) {
        let defs: Vec<String> = cols
            .iter()
            .map(|c| format!("{} {}", c.name, ty(c)))
            .collect();
        sql.push_str(&format!(
            "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id int PRIMARY KEY, {});\n",
            defs.join(", "),
            t = qualified(&table)
        ));
    }
    if !with_rows {
        return sql;
    }
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let rows: Vec<String> = (0..row_count(columns))
        .map(|i| {
            let values: Vec<&str> = columns
                .iter()
                .map(|c| c.values.get(i).map_or("NULL", String::as_str))
                .collect();
            format!("({}, {})", i + 1, values.join(", "))
        })
        .collect();
    let matrix = qualified(&format!("{prefix}matrix"));
    sql.push_str(&format!(
        "INSERT INTO {matrix} (id, {}) VALUES\n{};\n",
        names.join(", "),
        rows.join(",\n")
    ));
    for column in columns {
        sql.push_str(&format!(
            "INSERT INTO {} (id, {c}) SELECT id, {c} FROM {matrix};\n",
            qualified(&format!("{prefix}one_{}", column.name)),
            c = column.name
        ));
    }
    sql
}

/// A job for every table of the matrix.
fn tables_toml<C>(namespace: &str, prefix: &str, columns: &[Column<C>]) -> String {
    matrix_tables(prefix, columns)
        .iter()
        .map(|(table, _)| match namespace {
            "" => format!("[[tables]]\nname = \"{table}\"\n"),
            ns => format!("[[tables]]\nname = \"{ns}.{table}\"\n"),
        })
        .collect()
}

// --- what the run did -------------------------------------------------------------------

/// The outcome of each subtask of a run, by id: its summary, or its error. A run that
/// failed before any subtask ran (no JSON summary) fails the test with its message.
fn outcomes(run: &Run, columns: &[&str]) -> BTreeMap<String, Result<serde_json::Value, String>> {
    let Ok(summary) = serde_json::from_str::<serde_json::Value>(&run.stdout) else {
        let named: Vec<&&str> = columns
            .iter()
            .filter(|c| names_column(&run.stderr, c))
            .collect();
        panic!(
            "the run failed before any table was read (exit {}), naming the columns {named:?}:\n{}",
            run.code,
            error_lines(&run.stderr)
        );
    };
    summary["subtasks"]
        .as_array()
        .expect("subtasks")
        .iter()
        .map(|s| {
            let id = s["id"].as_str().expect("id").to_string();
            match s["error"].as_str() {
                Some(error) => (id, Err(error.to_string())),
                None => (id, Ok(s.clone())),
            }
        })
        .collect()
}

/// The lines of a run's standard error that are not debug log lines.
fn error_lines(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.contains("DEBUG") && !l.contains(" INFO "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether an error message names a column, as dbhaul's messages do (`` `name` ``,
/// `column name`, `"name"`).
fn names_column(error: &str, column: &str) -> bool {
    [
        format!("`{column}`"),
        format!("column {column}"),
        format!("\"{column}\""),
    ]
    .iter()
    .any(|form| error.contains(form.as_str()))
}

/// A failed table, as a problem: acceptable only when the error names a column of the
/// table that `may_refuse`.
fn failed_table<C>(
    table: &str,
    how: &str,
    error: &str,
    columns: &[&Column<C>],
    may_refuse: impl Fn(&C) -> bool,
) -> Option<String> {
    let named: Vec<&str> = columns
        .iter()
        .filter(|c| names_column(error, c.name))
        .map(|c| c.name)
        .collect();
    if columns
        .iter()
        .any(|c| may_refuse(&c.compare) && named.contains(&c.name))
    {
        return None;
    }
    Some(match named.as_slice() {
        [] => format!("{table} ({how}) failed without naming a column: {error}"),
        named => format!("{table} ({how}) failed, naming {named:?}: {error}"),
    })
}

const NATIVE: &str = "native path";

/// How a PostgreSQL table was read, from the run's debug log.
fn read_path(stderr: &str, subtask: &str, native_copy: bool) -> String {
    if !native_copy {
        return "ODBC path, native_copy = false".into();
    }
    let field = format!("subtask={subtask}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.split(|c: char| c.is_whitespace() || c == ':' || c == '}')
                .any(|token| token == field)
        })
        .collect();
    if lines
        .iter()
        .any(|l| l.contains("extract started (native COPY)"))
    {
        return NATIVE.into();
    }
    match lines
        .iter()
        .find_map(|l| l.split_once("read through ODBC: "))
    {
        // The log line's fields follow its message.
        Some((_, why)) => format!("ODBC path: {}", why.split(" task=").next().unwrap_or(why)),
        None => "ODBC path".into(),
    }
}

// --- PostgreSQL -------------------------------------------------------------------------

/// Whether the PostgreSQL matrix also compares a column with `=` (`EXCEPT ALL`, both
/// ways), besides its text: json, xml and point have no equality, and the enum and the
/// composite type are a type of their own in each schema, which `=` cannot compare.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Equality {
    Yes,
    TextOnly,
}

/// The types the matrix creates, the same in the source and in the warehouse schema.
const PG_TYPES: &str = "CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'it''s \"fine\", really');
CREATE DOMAIN {s}.day AS date;
CREATE DOMAIN {s}.amount AS numeric(12,2) CHECK (VALUE > -1e10);
CREATE TYPE {s}.pair AS (a text, b int);
";

/// A column per built-in type (and an enum, two domains and a composite type), each with
/// the values that break careless code.
fn pg_columns() -> Vec<Column<Equality>> {
    use Equality::*;
    let all_bytes: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
    vec![
        literals("v_int2", "smallint", Yes, &["-32768", "32767", "0"]),
        literals(
            "v_int4",
            "integer",
            Yes,
            &["-2147483648", "2147483647", "0"],
        ),
        literals(
            "v_int8",
            "bigint",
            Yes,
            &["-9223372036854775808", "9223372036854775807", "0"],
        ),
        expressions(
            "v_numeric",
            "numeric",
            Yes,
            [
                quote(&"9".repeat(1000)),
                quote(&format!("-{}.{}", "1".repeat(500), "2".repeat(500))),
                quote(&format!("0.{}1", "0".repeat(999))),
                quote("NaN"),
                quote("Infinity"),
                quote("-Infinity"),
                quote("1.500"),
                quote("-0.000"),
            ],
        ),
        expressions(
            "v_numeric_wide",
            "numeric(1000,500)",
            Yes,
            [
                quote(&format!("{}.{}", "9".repeat(500), "9".repeat(500))),
                quote(&format!("-0.{}1", "0".repeat(499))),
                quote("0"),
            ],
        ),
        literals(
            "v_real",
            "real",
            Yes,
            &[
                "NaN",
                "Infinity",
                "-Infinity",
                "-0",
                "1e-45",
                "3.4028235e38",
                "-3.4028235e38",
                "1.1754944e-38",
                "0.1",
            ],
        ),
        literals(
            "v_double",
            "double precision",
            Yes,
            &[
                "NaN",
                "Infinity",
                "-Infinity",
                "-0",
                "5e-324",
                "1.7976931348623157e308",
                "-1.7976931348623157e308",
                "2.2250738585072014e-308",
                "0.1",
            ],
        ),
        literals(
            "v_money",
            "money",
            Yes,
            &[
                "-92233720368547758.08",
                "92233720368547758.07",
                "0",
                "-0.01",
            ],
        ),
        literals(
            "v_date",
            "date",
            Yes,
            &[
                "infinity",
                "-infinity",
                "4713-01-01 BC",
                "5874897-12-31",
                "0001-12-31 BC",
                "0001-01-01",
                "2000-02-29",
            ],
        ),
        literals(
            "v_timestamp",
            "timestamp",
            Yes,
            &[
                "infinity",
                "-infinity",
                "294276-12-31 23:59:59.999999",
                "4713-01-01 00:00:00 BC",
                "0001-12-31 23:59:59.999999 BC",
                "2000-01-01 00:00:00.000001",
            ],
        ),
        literals(
            "v_timestamptz",
            "timestamptz",
            Yes,
            &[
                "infinity",
                "-infinity",
                "294276-12-31 09:59:59.999999-14",
                "4713-01-01 12:00:00+12 BC",
                "0001-12-31 23:59:59.999999+00 BC",
                "2000-01-01 05:30:00.000001+05:30",
                "1900-01-01 00:00:00+00:19:32",
            ],
        ),
        literals(
            "v_time",
            "time",
            Yes,
            &["24:00:00", "00:00:00", "23:59:59.999999"],
        ),
        literals(
            "v_timetz",
            "timetz",
            Yes,
            &[
                "23:59:59+14:59",
                "00:00:00-15:59",
                "24:00:00+00",
                "12:00:00.000001+05:30",
            ],
        ),
        // The least interval is one microsecond below the last value here, but PostgreSQL
        // 15 cannot read back its own text of it (`-2562047788:00:54.775808`), so no COPY
        // can carry it.
        literals(
            "v_interval",
            "interval",
            Yes,
            &[
                "178000000 years",
                "-178000000 years",
                "-2147483648 days",
                "2147483647 days",
                "1 mon -1 day 00:00:00.000001",
                "-2562047788:00:54.775807",
                "2562047788:00:54.775807",
                "0",
            ],
        ),
        literals("v_bool", "boolean", Yes, &["true", "false"]),
        literals(
            "v_uuid",
            "uuid",
            Yes,
            &[
                "00000000-0000-0000-0000-000000000000",
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            ],
        ),
        expressions("v_text", "text", Yes, tricky(Db::Pg)),
        literals(
            "v_varchar",
            "varchar(12)",
            Yes,
            &["a,b \"c\"", "", "0123456789ab", "trailing  ", "é🚀", "\\."],
        ),
        literals("v_char", "char(5)", Yes, &["a", "ab   ", "", "12345", "🚀"]),
        expressions(
            "v_bytea",
            "bytea",
            Yes,
            [
                quote("\\x"),
                quote("\\x00"),
                quote("\\x00ff00"),
                quote(&format!("\\x{all_bytes}")),
                quote("\\x5c2e"),
            ],
        ),
        literals(
            "v_json",
            "json",
            TextOnly,
            &[
                r#"{"a":1,"a":2}"#,
                "  { \"k\" : [1, 2 ,3] }  ",
                "{\n  \"nl\": \"a\\nb\"\n}",
                r#""\u0000""#,
                r#""quote \" comma , backslash \\""#,
                "null",
                "[]",
            ],
        ),
        literals(
            "v_jsonb",
            "jsonb",
            Yes,
            &[
                r#"{"a":1,"a":2}"#,
                r#"{"k": [1, 2, 3], "n": 1.50}"#,
                "null",
                "\"emoji 🚀\"",
                r#"{"big": 123456789012345678901234567890.5}"#,
                "[]",
            ],
        ),
        literals(
            "v_xml",
            "xml",
            TextOnly,
            &[
                r#"<?xml version="1.0" encoding="UTF-8"?><root a="1">x &amp; y</root>"#,
                "text <b>bold</b> tail",
                r#"<?xml version="1.0"?><r/>"#,
                "<a>line\nbreak, \"quotes\"</a>",
                "",
            ],
        ),
        literals(
            "v_int_array",
            "int[]",
            Yes,
            &[
                "{1,NULL,3}",
                "{{1,2},{3,4}}",
                "[0:1]={1,2}",
                "{}",
                "{NULL}",
                "{-2147483648,2147483647}",
            ],
        ),
        literals(
            "v_text_array",
            "text[]",
            Yes,
            &[
                r#"{"a,b","say \"hi\"","",NULL,"NULL"}"#,
                r#"{{"a b",c},{d,NULL}}"#,
                r#"[-2:-1]={"back\\slash","\\."}"#,
                "{\"line\nbreak\",\"cr\r\nlf\"}",
                "{}",
                r#"{"🚀",""}"#,
            ],
        ),
        literals(
            "v_int4range",
            "int4range",
            Yes,
            &[
                "empty",
                "[1,10)",
                "(,5)",
                "[3,)",
                "(,)",
                "[-2147483648,2147483647)",
            ],
        ),
        literals(
            "v_tsrange",
            "tsrange",
            Yes,
            &[
                "empty",
                "[2000-01-01,infinity)",
                "(-infinity,\"2000-01-01 00:00:00.000001\"]",
                "(,)",
                "[\"4713-01-01 00:00:00 BC\",\"294276-12-31 23:59:59.999999\"]",
            ],
        ),
        literals(
            "v_daterange",
            "daterange",
            Yes,
            &[
                "empty",
                "[-infinity,infinity)",
                "[\"4713-01-01 BC\",2000-01-01)",
                "(,)",
            ],
        ),
        literals(
            "v_enum",
            "{s}.mood",
            TextOnly,
            &["sad", "ok", "it's \"fine\", really"],
        ),
        literals(
            "v_domain_date",
            "{s}.day",
            Yes,
            &["infinity", "-infinity", "4713-01-01 BC", "2000-02-29"],
        ),
        literals(
            "v_domain_numeric",
            "{s}.amount",
            Yes,
            &["9999999999.99", "-9999999999.99", "0.00", "0.10"],
        ),
        literals(
            "v_composite",
            "{s}.pair",
            TextOnly,
            &[
                r#"("it's ""quoted"", here",)"#,
                "(,)",
                "(\"\",0)",
                r#"("back\\slash",-2147483648)"#,
                "(\"line\nbreak\",1)",
            ],
        ),
        literals(
            "v_inet",
            "inet",
            Yes,
            &[
                "192.168.0.1/32",
                "::1",
                "10.0.0.1/8",
                "2001:db8::1/64",
                "0.0.0.0/0",
            ],
        ),
        literals(
            "v_cidr",
            "cidr",
            Yes,
            &["192.168.0.0/24", "::1/128", "10.0.0.0/8", "0.0.0.0/0"],
        ),
        literals(
            "v_macaddr",
            "macaddr",
            Yes,
            &[
                "08:00:2b:01:02:03",
                "ff:ff:ff:ff:ff:ff",
                "00:00:00:00:00:00",
            ],
        ),
        literals(
            "v_bit",
            "bit(8)",
            Yes,
            &["00000000", "11111111", "10100101"],
        ),
        literals(
            "v_varbit",
            "varbit",
            Yes,
            &["", "1", "0101010101010101010101010101010101"],
        ),
        literals(
            "v_tsvector",
            "tsvector",
            Yes,
            &["a fat cat:1A", "'quote''s' 'with space' 'comma,'", ""],
        ),
        literals(
            "v_point",
            "point",
            TextOnly,
            &[
                "(1.5,-2)",
                "(1e300,-0)",
                "(NaN,Infinity)",
                "(5e-324,-1.7976931348623157e308)",
            ],
        ),
        literals("v_oid", "oid", Yes, &["0", "4294967295", "1"]),
    ]
}

/// DDL (and, for the source, rows) of the PostgreSQL matrix in `schema`.
fn pg_matrix_sql(schema: &str, columns: &[Column<Equality>], with_rows: bool) -> String {
    PG_TYPES.replace("{s}", schema)
        + &matrix_sql(schema, "", columns, with_rows, |c| {
            c.ty.replace("{s}", schema)
        })
}

/// A value as PostgreSQL prints it (its type's output function: `col::text` would trim a
/// `char(n)`'s padding and print an inet's netmask), NULL as `None`. `num_nulls`, because
/// a composite value of NULL members `IS NULL` without being NULL.
fn pg_text(column: &str) -> String {
    format!("CASE WHEN num_nulls({column}) = 0 THEN format('%s', {column}) END")
}

fn shown(value: &Option<String>) -> String {
    value.as_ref().map_or("NULL".into(), |v| format!("{v:?}"))
}

/// Every difference between a source table and its warehouse table: ids on one side only,
/// then, column by column, each value whose text differs, and each whose text agrees but
/// `=` does not.
fn pg_mismatches(
    client: &mut postgres::Client,
    label: &str,
    source: &str,
    warehouse: &str,
    columns: &[&Column<Equality>],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut one_side = Vec::new();
    for (from, to, side) in [
        (source, warehouse, "source"),
        (warehouse, source, "warehouse"),
    ] {
        let ids: Vec<i32> = client
            .query(
                &format!("SELECT id FROM {from} EXCEPT ALL SELECT id FROM {to} ORDER BY 1"),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !ids.is_empty() {
            problems.push(format!("{label}: ids {ids:?} only in the {side}"));
        }
        one_side.extend(ids);
    }
    for column in columns {
        let c = column.name;
        let text = pg_text(c);
        let rows = client
            .query(
                &format!(
                    "SELECT s.id, s.v, w.v FROM (SELECT id, {text} AS v FROM {source}) s \
                     JOIN (SELECT id, {text} AS v FROM {warehouse}) w ON s.id = w.id \
                     WHERE s.v IS DISTINCT FROM w.v ORDER BY 1"
                ),
                &[],
            )
            .unwrap();
        let mut differ = Vec::new();
        for row in rows {
            let (id, before, after): (i32, Option<String>, Option<String>) =
                (row.get(0), row.get(1), row.get(2));
            differ.push(id);
            problems.push(format!(
                "{label}, column {c}, id {id}: source {}, warehouse {}",
                shown(&before),
                shown(&after)
            ));
        }
        if column.compare == Equality::TextOnly {
            continue;
        }
        let unequal: Vec<i32> = client
            .query(
                &format!(
                    "SELECT id FROM (SELECT id, {c} FROM {source} EXCEPT ALL SELECT id, {c} FROM {warehouse}) a \
                     UNION SELECT id FROM (SELECT id, {c} FROM {warehouse} EXCEPT ALL SELECT id, {c} FROM {source}) b \
                     ORDER BY 1"
                ),
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in unequal
            .into_iter()
            .filter(|id| !differ.contains(id) && !one_side.contains(id))
        {
            problems.push(format!(
                "{label}, column {c}, id {id}: the same text on both sides, but not `=`"
            ));
        }
    }
    problems
}

/// The PostgreSQL matrix, extracted, uploaded and copied into a warehouse schema of the
/// same DDL, then compared with the source.
fn postgres_matrix_reaches_the_warehouse(tag: &str, native_copy: bool) {
    let sandbox = Sandbox::new();
    let columns = pg_columns();
    let rows = row_count(&columns);
    let source = format!("src_types_{tag}");
    let warehouse = format!("wh_types_{tag}");
    let mut client = fresh_schema(&source);
    client
        .batch_execute(&pg_matrix_sql(&source, &columns, true))
        .unwrap();
    fresh_schema(&warehouse)
        .batch_execute(&pg_matrix_sql(&warehouse, &columns, false))
        .unwrap();
    let moto = s3::moto();
    let bucket = s3::unique_bucket(&format!("types-{tag}"));
    s3::create_bucket(&moto.endpoint(), &bucket);

    let task = format!("types-{tag}");
    let text = job_text(
        &task,
        &pg_odbc(),
        &format!(
            "native_copy = {native_copy}\n{}{}",
            tables_toml(&source, "", &columns),
            pg_warehouse_stages(&moto.endpoint(), &bucket, &warehouse)
        ),
        "mode = \"extract-upload-copy\"\nretries = 0",
    );
    let job = sandbox.job(&task, &text);
    let run = sandbox.run_job_s3(&job, &moto.endpoint(), &[("DBHAUL_LOG", "dbhaul=debug")]);
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let outcomes = outcomes(&run, &names);

    let mut problems = Vec::new();
    let mut native = Vec::new();
    for (table, cols) in matrix_tables("", &columns) {
        let id = format!("{source}.{table}");
        let how = read_path(&run.stderr, &id, native_copy);
        if how == NATIVE {
            native.push(table.clone());
        }
        match outcomes.get(&id) {
            None => problems.push(format!("{id}: no subtask in the run's summary")),
            Some(Err(error)) => problems.extend(failed_table(&id, &how, error, &cols, |_| false)),
            Some(Ok(subtask)) => {
                if subtask["copied_rows"] != rows as u64 {
                    problems.push(format!(
                        "{id} ({how}): {} rows copied of {rows}",
                        subtask["copied_rows"]
                    ));
                }
                problems.extend(pg_mismatches(
                    &mut client,
                    &format!("{id} ({how})"),
                    &id,
                    &format!("{warehouse}.{table}"),
                    &cols,
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems between {source} and the warehouse {warehouse}:\n{}\n(tables read by the native path: {native:?})",
        problems.len(),
        problems.join("\n")
    );
}

/// By the default path: each table goes through the native COPY where the tool takes its
/// types, through ODBC otherwise.
#[test]
fn postgres_edge_values_of_every_type_reach_the_warehouse_unchanged_by_the_default_path() {
    postgres_matrix_reaches_the_warehouse("native", true);
}

#[test]
fn postgres_edge_values_of_every_type_reach_the_warehouse_unchanged_through_odbc() {
    postgres_matrix_reaches_the_warehouse("odbc", false);
}

// --- MariaDB and SQLite: chunks against the source's own text ---------------------------

/// What a chunk field must hold, as the source gives the value.
#[derive(Debug)]
enum Want {
    Null,
    /// These bytes: as they are in a text column, as `\x` and hex in a binary one.
    Bytes(Vec<u8>),
    /// These bytes, in a binary column (`\x` and hex).
    Binary(Vec<u8>),
    /// A number that reads back to this double, to the bit.
    F64(f64),
    /// A number that reads back to this float, to the bit.
    F32(f32),
    /// The number of a bit string: as digits, or as its bytes (big-endian) in a binary
    /// column.
    Bits(u64),
}

fn unhex(hex: &str) -> Vec<u8> {
    hex::decode(hex).unwrap_or_else(|e| panic!("hex from the source {hex:?}: {e}"))
}

/// Bytes as a message shows them: text when they are UTF-8, else hex.
fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

fn show_field(field: Option<&[u8]>) -> String {
    field.map_or("NULL".into(), show_bytes)
}

/// Whether `field` (of a column written as binary or not) holds `want`; the reason when
/// it does not.
fn field_mismatch(want: &Want, field: Option<&[u8]>, binary: bool) -> Option<String> {
    let field = match (want, field) {
        (Want::Null, None) => return None,
        (Want::Null, Some(_)) | (_, None) => return Some(String::new()),
        (_, Some(field)) => field,
    };
    let value: Vec<u8> = if binary {
        match field.strip_prefix(b"\\x").map(hex::decode) {
            Some(Ok(bytes)) => bytes,
            _ => return Some(" (not \\x and hex, though the column is binary)".into()),
        }
    } else {
        field.to_vec()
    };
    let text = || std::str::from_utf8(&value).unwrap_or("").trim();
    let same = match want {
        Want::Null => unreachable!(),
        Want::Bytes(bytes) => *bytes == value,
        Want::Binary(_) if !binary => return Some(" (written as text, not as binary)".into()),
        Want::Binary(bytes) => *bytes == value,
        Want::F64(x) => text()
            .parse::<f64>()
            .is_ok_and(|v| v.to_bits() == x.to_bits()),
        Want::F32(x) => text()
            .parse::<f32>()
            .is_ok_and(|v| v.to_bits() == x.to_bits()),
        Want::Bits(n) if binary => {
            value.len() <= 8 && value.iter().fold(0u64, |a, b| a << 8 | u64::from(*b)) == *n
        }
        Want::Bits(n) => text().parse::<u64>() == Ok(*n),
    };
    (!same).then(String::new)
}

fn show_want(want: &Want) -> String {
    match want {
        Want::Null => "NULL".into(),
        Want::Bytes(b) | Want::Binary(b) => show_bytes(b),
        Want::F64(x) => format!("the double {x:e} ({:#018x})", x.to_bits()),
        Want::F32(x) => format!("the float {x:e} ({:#010x})", x.to_bits()),
        Want::Bits(n) => format!("the bits of {n}"),
    }
}

/// Every difference between the chunks of a table's subtask folder and what the source
/// gives for each row (by id, in the table's column order after `id`).
fn chunk_mismatches(
    label: &str,
    source_name: &str,
    dir: &Path,
    columns: &[&str],
    wanted: &BTreeMap<i64, Vec<Want>>,
) -> Vec<String> {
    let manifest = manifest(dir);
    let written: Vec<&str> = manifest["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = std::iter::once("id")
        .chain(columns.iter().copied())
        .collect();
    if written != expected {
        return vec![format!(
            "{label}: the chunks hold the columns {written:?}, not {expected:?}; left out: {}",
            manifest["left_out_columns"]
        )];
    }
    let binary: Vec<bool> = manifest["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["binary"].as_bool().unwrap())
        .collect();
    let format = &manifest["format"];
    let delimiter = format["delimiter"].as_str().unwrap().as_bytes()[0];
    let null = format["null_string"].as_str().unwrap().as_bytes();
    let mut problems = Vec::new();
    let mut records: BTreeMap<i64, Vec<Option<Vec<u8>>>> = BTreeMap::new();
    for record in csv_records(&chunk_bytes(dir), delimiter, null) {
        let id = record[0]
            .as_deref()
            .and_then(|id| std::str::from_utf8(id).ok()?.parse().ok())
            .unwrap_or_else(|| panic!("{label}: a record without an id: {record:?}"));
        if record.len() != expected.len() {
            problems.push(format!(
                "{label}, id {id}: {} fields, not {}",
                record.len(),
                expected.len()
            ));
        } else if records.insert(id, record).is_some() {
            problems.push(format!("{label}, id {id}: written twice"));
        }
    }
    for (id, wants) in wanted {
        let Some(record) = records.remove(id) else {
            problems.push(format!("{label}, id {id}: not in the chunks"));
            continue;
        };
        for (i, want) in wants.iter().enumerate() {
            let field = record[i + 1].as_deref();
            if let Some(why) = field_mismatch(want, field, binary[i + 1]) {
                problems.push(format!(
                    "{label}, column {}, id {id}: {source_name} gives {}, the chunk holds {}{why}",
                    columns[i],
                    show_want(want),
                    show_field(field)
                ));
            }
        }
    }
    for id in records.keys() {
        problems.push(format!(
            "{label}, id {id}: in the chunks, not in the source"
        ));
    }
    problems
}

// --- MariaDB ----------------------------------------------------------------------------

/// How a MariaDB column's value is known, and so what its field must hold.
#[derive(Clone, Copy)]
enum Maria {
    /// `CAST(x AS CHAR)`, byte for byte.
    Text,
    /// `HEX(x)`: the bytes, written as binary.
    Bytes,
    /// The double (`CAST(x AS CHAR)`, MariaDB's shortest exact form): the same double.
    Double,
    /// The float, widened exactly (`CAST(x AS DOUBLE)`): the same float.
    Float,
    /// `x+0`: the same number.
    Bits,
}

fn maria_columns() -> Vec<Column<Maria>> {
    use Maria::*;
    let all_bytes: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    vec![
        literals(
            "v_date",
            "DATE",
            Text,
            &[
                "0000-00-00",
                "1000-01-01",
                "9999-12-31",
                "2024-02-00",
                "2024-00-00",
            ],
        ),
        literals(
            "v_datetime",
            "DATETIME",
            Text,
            &[
                "0000-00-00 00:00:00",
                "1000-01-01 00:00:00",
                "9999-12-31 23:59:59",
            ],
        ),
        literals(
            "v_datetime6",
            "DATETIME(6)",
            Text,
            &[
                "9999-12-31 23:59:59.999999",
                "0000-00-00 00:00:00.000000",
                "1000-01-01 00:00:00.000001",
            ],
        ),
        literals(
            "v_timestamp6",
            "TIMESTAMP(6) NULL",
            Text,
            &[
                "1970-01-01 00:00:01.000000",
                "2038-01-19 03:14:07.999999",
                "0000-00-00 00:00:00.000000",
            ],
        ),
        literals(
            "v_time",
            "TIME",
            Text,
            &["838:59:59", "-838:59:59", "00:00:00", "-00:00:01"],
        ),
        literals(
            "v_time6",
            "TIME(6)",
            Text,
            &["838:59:59.000000", "-838:59:58.999999", "12:34:56.000001"],
        ),
        expressions("v_bit1", "BIT(1)", Bits, ["b'0'".into(), "b'1'".into()]),
        expressions(
            "v_bit64",
            "BIT(64)",
            Bits,
            [
                format!("b'{}'", "1".repeat(64)),
                "b'0'".into(),
                "b'1'".into(),
                format!("b'1{}'", "0".repeat(63)),
            ],
        ),
        literals("v_set", "SET('a','b c','d')", Text, &["", "a", "a,b c,d"]),
        literals(
            "v_enum",
            "ENUM('x','y z','it''s')",
            Text,
            // Not a member: stored as the empty string (index 0), as MariaDB does
            // outside strict mode.
            &["x", "it's", "not a member"],
        ),
        expressions(
            "v_decimal",
            "DECIMAL(65,30)",
            Text,
            [
                quote(&format!("{}.{}", "9".repeat(35), "9".repeat(30))),
                quote(&format!("-{}.{}", "9".repeat(35), "9".repeat(30))),
                quote(&format!("0.{}1", "0".repeat(29))),
                quote("0"),
            ],
        ),
        literals(
            "v_ubigint",
            "BIGINT UNSIGNED",
            Text,
            &["18446744073709551615", "0"],
        ),
        literals(
            "v_bigint",
            "BIGINT",
            Text,
            &["-9223372036854775808", "9223372036854775807"],
        ),
        literals("v_tinyint1", "TINYINT(1)", Text, &["-128", "127", "0", "1"]),
        literals("v_year", "YEAR", Text, &["0000", "1901", "2155"]),
        // -0: MariaDB prints it as 0, so its sign cannot be checked against MariaDB's text.
        literals(
            "v_double",
            "DOUBLE",
            Double,
            &[
                "1.7976931348623157e308",
                "-1.7976931348623157e308",
                "2.2250738585072014e-308",
                "5e-324",
                "0.1",
            ],
        ),
        literals(
            "v_float",
            "FLOAT",
            Float,
            &[
                "3.4028235e38",
                "-3.4028235e38",
                "1.17549435e-38",
                "0.1",
                "1e-45",
            ],
        ),
        expressions(
            "v_point",
            "POINT",
            Bytes,
            [
                "ST_GeomFromText('POINT(1 2)')".into(),
                "ST_GeomFromText('POINT(-1.5 1e300)', 4326)".into(),
            ],
        ),
        expressions(
            "v_geometry",
            "GEOMETRY",
            Bytes,
            ["ST_GeomFromText('LINESTRING(0 0, 1 1, -2 3.5)')".into()],
        ),
        literals(
            "v_json",
            "JSON",
            Text,
            &[
                r#"{"a":1,"a":2}"#,
                "  [1, 2]  ",
                r#""\u0000""#,
                "null",
                "{\"nl\":\n\"a\\nb\"}",
            ],
        ),
        expressions("v_text", "TEXT", Text, tricky(Db::Maria)),
        expressions(
            "v_longtext",
            "LONGTEXT",
            Text,
            fixtures::TRICKY_STRINGS
                .iter()
                .rev()
                .map(|s| fixtures::text(Db::Maria, s)),
        ),
        expressions(
            "v_blob",
            "BLOB",
            Bytes,
            [
                "X''".into(),
                "X'00'".into(),
                format!("X'{all_bytes}'"),
                "X'5C2E'".into(),
            ],
        ),
        literals(
            "v_varchar",
            "VARCHAR(20)",
            Text,
            &["", "a,b \"c\"", "trailing  ", "é🚀", "\\."],
        ),
        literals("v_char", "CHAR(5)", Text, &["ab", "", "12345"]),
        expressions(
            "v_varbinary",
            "VARBINARY(8)",
            Bytes,
            ["X''".into(), "X'00FF'".into(), "X'0000000000000000'".into()],
        ),
        expressions(
            "v_binary",
            "BINARY(4)",
            Bytes,
            ["X'01'".into(), "X''".into()],
        ),
    ]
}

/// The session settings MariaDB reads and writes the matrix with: zero dates allowed,
/// backslashes as they are, timestamps in UTC (as dbhaul reads them).
const MARIA_SESSION: &str =
    "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'; SET time_zone = '+00:00';\n";

/// The field each row of a MariaDB table must hold, by id.
fn maria_wanted(table: &str, columns: &[&Column<Maria>]) -> BTreeMap<i64, Vec<Want>> {
    let items: Vec<String> = columns
        .iter()
        .map(|c| {
            let n = c.name;
            match c.compare {
                Maria::Text => format!("HEX(CAST({n} AS CHAR))"),
                Maria::Bytes => format!("HEX({n})"),
                Maria::Double => format!("HEX(CAST({n} AS CHAR))"),
                Maria::Float => format!("HEX(CAST(CAST({n} AS DOUBLE) AS CHAR))"),
                Maria::Bits => format!("{n}+0"),
            }
        })
        .collect();
    let sql = format!(
        "{MARIA_SESSION}SELECT id, {} FROM {TEST_DB}.{table} ORDER BY id",
        items.join(", ")
    );
    maria_rows(&sql)
        .into_iter()
        .map(|row| {
            let id = row[0].as_deref().unwrap().parse().unwrap();
            let wants = columns
                .iter()
                .zip(&row[1..])
                .map(|(c, field)| {
                    let Some(field) = field else {
                        return Want::Null;
                    };
                    let text = || String::from_utf8(unhex(field)).unwrap();
                    match c.compare {
                        Maria::Text => Want::Bytes(unhex(field)),
                        Maria::Bytes => Want::Binary(unhex(field)),
                        Maria::Double => Want::F64(text().parse().unwrap()),
                        Maria::Float => Want::F32(text().parse::<f64>().unwrap() as f32),
                        Maria::Bits => Want::Bits(field.parse().unwrap()),
                    }
                })
                .collect();
            (id, wants)
        })
        .collect()
}

#[test]
fn mariadb_edge_values_of_every_type_come_out_as_mariadb_prints_them() {
    let sandbox = Sandbox::new();
    let columns = maria_columns();
    maria(
        &(MARIA_SESSION.to_string()
            + &matrix_sql(TEST_DB, "types_", &columns, true, |c| c.ty.to_string())),
    );
    let task = "types-maria";
    let job = sandbox.job(
        task,
        &job_text(
            task,
            &maria_odbc(),
            &tables_toml(TEST_DB, "types_", &columns),
            "retries = 0",
        ),
    );
    let run = sandbox.run_job(&job);
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let outcomes = outcomes(&run, &names);
    let mut problems = Vec::new();
    for (table, cols) in matrix_tables("types_", &columns) {
        let id = format!("{TEST_DB}.{table}");
        match outcomes.get(&id) {
            None => problems.push(format!("{id}: no subtask in the run's summary")),
            Some(Err(error)) => {
                problems.extend(failed_table(&id, "extract", error, &cols, |_| false))
            }
            Some(Ok(_)) => {
                let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
                problems.extend(chunk_mismatches(
                    &id,
                    "MariaDB",
                    &sandbox.work_dir().join(task).join(&id),
                    &names,
                    &maria_wanted(&table, &cols),
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems between MariaDB's values and the chunks:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// --- SQLite -----------------------------------------------------------------------------

/// Whether a SQLite column holds only values of its declared type's storage class, or
/// also others (which a driver may not convert faithfully: the column may fail its table,
/// naming it, but never change a value).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stored {
    AsDeclared,
    AgainstDeclared,
}

fn sqlite_columns() -> Vec<Column<Stored>> {
    use Stored::*;
    let all_bytes: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    let raw = |values: &[&str]| values.iter().map(|v| v.to_string()).collect::<Vec<_>>();
    vec![
        expressions(
            "v_integer",
            "INTEGER",
            AsDeclared,
            raw(&["-9223372036854775808", "9223372036854775807", "0", "-1"]),
        ),
        expressions(
            "v_real",
            "REAL",
            AsDeclared,
            raw(&[
                "1.7976931348623157e308",
                "-1.7976931348623157e308",
                "5e-324",
                "2.2250738585072014e-308",
                "0.1",
                // Stored as the integer 0 (REAL affinity), read back as 0.0.
                "-0.0",
                "9e999",
                "-9e999",
                "1e-300",
                "123456789.123456789",
            ]),
        ),
        expressions("v_text", "TEXT", AsDeclared, tricky(Db::Sqlite)),
        expressions(
            "v_blob",
            "BLOB",
            AsDeclared,
            [
                "X''".into(),
                "X'00'".into(),
                format!("X'{all_bytes}'"),
                "X'5C2E'".into(),
            ],
        ),
        // NUMERIC affinity: text that looks like a number becomes one, other text stays.
        literals(
            "v_numeric",
            "NUMERIC",
            AsDeclared,
            &[
                "1.5",
                "0001",
                "123456789012345678901234567890",
                "abc",
                "1e5",
                " 12 ",
                "9223372036854775808",
                "-0.0",
            ],
        ),
        expressions(
            "v_integer_holding_others",
            "INTEGER",
            AgainstDeclared,
            // Not here: a blob holding a NUL byte in a non-blob column (sqliteodbc cuts text
            // at NUL; docs/type-map.md names the limit), nor -0.0 outside a REAL column
            // (SQLite 3.40 prints it 0.0 whatever it is asked).
            raw(&["'abc'", "1.5", "X'6162'", "X'FF01'", "1e300", "''"]),
        ),
        expressions(
            "v_real_holding_others",
            "REAL",
            AgainstDeclared,
            raw(&["'abc'", "X'FF01'", "12", "'1e5'", "''"]),
        ),
        expressions(
            "v_text_holding_others",
            "TEXT",
            AgainstDeclared,
            raw(&["X'FF01'", "X'6162'", "42", "1.5", "-0.0"]),
        ),
        expressions(
            "v_untyped",
            "",
            AgainstDeclared,
            raw(&["1", "1.5", "'text'", "X'FF01'", "-1.5", "''"]),
        ),
        expressions(
            "v_date",
            "DATE",
            AgainstDeclared,
            raw(&["'2024-02-29'", "20240229", "2460369.5", "'not a date'"]),
        ),
    ]
}

/// The field each row of a SQLite table must hold, by id: the value's text (integers,
/// text), its bytes (blobs), its exact double (reals, by `ieee754_to_blob` of the sqlite3
/// shell: SQLite's own printing of a real can be a bit off).
fn sqlite_wanted(db: &Path, table: &str, columns: &[&Column<Stored>]) -> BTreeMap<i64, Vec<Want>> {
    let items: Vec<String> = columns
        .iter()
        .map(|c| {
            let n = c.name;
            format!(
                "typeof({n}), CASE typeof({n}) WHEN 'real' THEN hex(ieee754_to_blob({n})) ELSE hex({n}) END"
            )
        })
        .collect();
    let sql = format!("SELECT id, {} FROM {table} ORDER BY id", items.join(", "));
    sqlite_rows(db, &sql)
        .into_iter()
        .map(|row| {
            let id = row[0].as_deref().unwrap().parse().unwrap();
            let wants = row[1..]
                .chunks(2)
                .map(|pair| match (pair[0].as_deref(), pair[1].as_deref()) {
                    (Some("null"), _) => Want::Null,
                    (Some("real"), Some(bits)) => {
                        Want::F64(f64::from_bits(u64::from_str_radix(bits, 16).unwrap()))
                    }
                    (Some(_), Some(hex)) => Want::Bytes(unhex(hex)),
                    (Some(_), None) => Want::Bytes(Vec::new()),
                    (None, _) => panic!("typeof() is never NULL"),
                })
                .collect();
            (id, wants)
        })
        .collect()
}

#[test]
fn sqlite_edge_values_of_every_storage_class_come_out_as_sqlite_gives_them() {
    let sandbox = Sandbox::new();
    let db = sandbox.path("source.db");
    let columns = sqlite_columns();
    sqlite(
        &db,
        &matrix_sql("", "", &columns, true, |c| c.ty.to_string()),
    );
    let task = "types-sqlite";
    let job = sandbox.job(
        task,
        &job_text(
            task,
            &sqlite_odbc(&db),
            &tables_toml("", "", &columns),
            "retries = 0",
        ),
    );
    let run = sandbox.run_job(&job);
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let outcomes = outcomes(&run, &names);
    let mut problems = Vec::new();
    for (table, cols) in matrix_tables("", &columns) {
        let id = format!("main.{table}");
        match outcomes.get(&id) {
            None => problems.push(format!("{id}: no subtask in the run's summary")),
            Some(Err(error)) => problems.extend(failed_table(&id, "extract", error, &cols, |s| {
                *s == Stored::AgainstDeclared
            })),
            Some(Ok(_)) => {
                let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
                problems.extend(chunk_mismatches(
                    &id,
                    "SQLite",
                    &sandbox.work_dir().join(task).join(&id),
                    &names,
                    &sqlite_wanted(&db, &table, &cols),
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problems between SQLite's values and the chunks:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
