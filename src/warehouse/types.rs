//! The type map for warehouse tables that dbhaul creates itself (`create_tables = true`):
//! from a source column, as the ODBC catalog describes it, to a PostgreSQL or Redshift
//! column type, and the `CREATE TABLE` statement built from those types.
//! `docs/type-map.md` is the same map written for users; a test below keeps the two in step.
//!
//! The rule behind every choice: each value the extractor writes must load back with COPY
//! unchanged. No digit is rounded, no character is cut and no padding is added. So a type
//! is narrowed only to a bound the source itself enforces. Where the catalog cannot be
//! trusted (SQLite declarations, psqlODBC's guess for an unconstrained `numeric`), the
//! wider type wins. Nothing here talks to a database.

use super::WarehouseKind;
use crate::model::Dialect;
use crate::model::subtask::sql;
use crate::model::{ColumnSpec, FetchKind};

/// PostgreSQL's longest `varchar(n)`, in characters.
const POSTGRES_MAX_VARCHAR: usize = 10_485_760;
/// PostgreSQL's highest `numeric` precision.
const POSTGRES_MAX_PRECISION: usize = 1000;
/// Redshift's longest `varchar`, in bytes.
const REDSHIFT_MAX_VARCHAR: usize = 65_535;
/// Redshift's longest `varbyte`, in bytes.
const REDSHIFT_MAX_VARBYTE: usize = 1_024_000;
/// Redshift's highest `numeric` precision.
const REDSHIFT_MAX_PRECISION: usize = 38;
/// The narrowest `varchar` a number too wide for Redshift's `numeric` is kept in.
const REDSHIFT_NUMBER_TEXT: usize = 128;

/// The warehouse column type for a source column.
pub fn target_type(kind: WarehouseKind, dialect: Dialect, column: &ColumnSpec) -> String {
    if kind == WarehouseKind::Postgres
        && dialect == Dialect::Postgres
        && let Some(native) = postgres_native_type(&column.source_type)
    {
        return native.to_string();
    }
    let type_name = column.source_type.to_ascii_lowercase();
    match column.sql_type {
        sql::CHAR | sql::WCHAR | sql::VARCHAR | sql::WVARCHAR => {
            text_type(kind, declared_size(dialect, column))
        }
        sql::LONGVARCHAR | sql::WLONGVARCHAR => text_type(kind, None),
        sql::BINARY | sql::VARBINARY | sql::LONGVARBINARY => {
            binary_type(kind, declared_size(dialect, column))
        }
        sql::BIT => "boolean".to_string(),
        sql::TINYINT | sql::SMALLINT | sql::INTEGER | sql::BIGINT => {
            integer_type(dialect, column.sql_type, type_name.contains("unsigned")).to_string()
        }
        sql::NUMERIC | sql::DECIMAL => numeric_type(kind, precision_and_scale(dialect, column)),
        sql::REAL => "real".to_string(),
        sql::FLOAT | sql::DOUBLE => "double precision".to_string(),
        sql::TYPE_DATE => "date".to_string(),
        // A zone given to `time` or `timestamp` is silently dropped by PostgreSQL, so a
        // source type that carries one keeps it. Source sessions run in UTC, so
        // `timestamptz` values are written in UTC.
        sql::TYPE_TIME if has_time_zone(&type_name) => "timetz".to_string(),
        sql::TYPE_TIME => "time".to_string(),
        sql::TYPE_TIMESTAMP | sql::DATETIME if has_time_zone(&type_name) => {
            "timestamptz".to_string()
        }
        sql::TYPE_TIMESTAMP | sql::DATETIME => "timestamp".to_string(),
        sql::GUID => match kind {
            WarehouseKind::Postgres => "uuid".to_string(),
            WarehouseKind::Redshift => "char(36)".to_string(),
        },
        // Intervals, arrays, XML and driver-specific types: the driver's text, as it is.
        _ => text_type(kind, None),
    }
}

/// `CREATE TABLE IF NOT EXISTS "schema"."table" ("col" type [NOT NULL], ...)` for the
/// warehouse. Table and column names are folded to lower case (what PostgreSQL and
/// Redshift do to unquoted names) and double-quoted (embedded `"` doubled).
///
/// Only ASCII letters are folded, as both warehouses fold unquoted names in a UTF-8
/// database. The schema is the warehouse's own setting and is quoted as given.
pub fn create_table_sql(
    kind: WarehouseKind,
    dialect: Dialect,
    schema: &str,
    table: &str,
    columns: &[ColumnSpec],
) -> String {
    let columns: Vec<String> = columns
        .iter()
        .map(|column| {
            let not_null = if column.nullable { "" } else { " NOT NULL" };
            format!(
                "{} {}{not_null}",
                quote_ident(&column.name.to_ascii_lowercase()),
                target_type(kind, dialect, column)
            )
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} ({})",
        quote_ident(schema),
        quote_ident(&table.to_ascii_lowercase()),
        columns.join(", ")
    )
}

/// The columns with every LOB column made long text: with `files.lob_objects` a LOB column
/// holds an object's URL (or, under the size, its value; a binary one as its hex digits).
pub fn lobs_as_text(columns: &[ColumnSpec]) -> Vec<ColumnSpec> {
    columns
        .iter()
        .map(|column| match column.fetch.is_lob() {
            true => ColumnSpec {
                source_type: "text".into(),
                sql_type: sql::LONGVARCHAR,
                size: None,
                scale: None,
                fetch: FetchKind::LongText,
                ..column.clone()
            },
            false => column.clone(),
        })
        .collect()
}

/// Double-quote an identifier for PostgreSQL/Redshift (embedded `"` doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// PostgreSQL types that psqlODBC reports as plain text (`bool` as `SQL_VARCHAR`, `json` as
/// text of unknown length) but that a PostgreSQL warehouse has under the same name.
fn postgres_native_type(source_type: &str) -> Option<&'static str> {
    let native = match source_type.to_ascii_lowercase().as_str() {
        "bool" | "boolean" => "boolean",
        "uuid" => "uuid",
        "json" => "json",
        "jsonb" => "jsonb",
        "inet" => "inet",
        "cidr" => "cidr",
        "macaddr" => "macaddr",
        "interval" => "interval",
        // `money` reads and prints through the server's lc_monetary (currency symbol,
        // separators), so the warehouse's locale would decide what loads. The value is
        // extracted as a plain number, which `numeric` holds in any locale.
        "money" => "numeric",
        "bytea" => "bytea",
        "text" => "text",
        _ => return None,
    };
    Some(native)
}

/// The length the source enforces for a text or binary column, if there is one.
fn declared_size(dialect: Dialect, column: &ColumnSpec) -> Option<usize> {
    // SQLite stores any length in any column whatever its declaration (and sqliteodbc
    // reports `DECIMAL(10,2)` as VARCHAR of size 2), so its sizes bound nothing.
    if dialect == Dialect::Sqlite || column.fetch.is_lob() {
        return None;
    }
    column.size.filter(|n| *n > 0)
}

/// Text of at most `length` characters, or of unknown length.
fn text_type(kind: WarehouseKind, length: Option<usize>) -> String {
    match (kind, length) {
        // `varchar(n)`, not `char(n)`: `char` pads every value to n, so a value the source
        // returned without its padding (MariaDB trims CHAR, and `rtrim` may be on) would
        // come back longer than it was extracted. `varchar` keeps whatever was returned.
        (WarehouseKind::Postgres, Some(n)) if n <= POSTGRES_MAX_VARCHAR => format!("varchar({n})"),
        (WarehouseKind::Postgres, _) => "text".to_string(),
        // Redshift lengths are bytes, and a UTF-8 character takes up to four. Redshift's
        // `char` takes single-byte characters only, so `varchar` here too.
        (WarehouseKind::Redshift, Some(n)) => {
            format!("varchar({})", n.saturating_mul(4).min(REDSHIFT_MAX_VARCHAR))
        }
        (WarehouseKind::Redshift, None) => format!("varchar({REDSHIFT_MAX_VARCHAR})"),
    }
}

/// Binary of at most `length` bytes, or of unknown length.
fn binary_type(kind: WarehouseKind, length: Option<usize>) -> String {
    match kind {
        WarehouseKind::Postgres => "bytea".to_string(),
        WarehouseKind::Redshift => {
            let n = length.unwrap_or(REDSHIFT_MAX_VARBYTE);
            format!("varbyte({})", n.clamp(1, REDSHIFT_MAX_VARBYTE))
        }
    }
}

/// The signed type that holds every value of a source integer type (called for the four
/// ODBC integer types only).
fn integer_type(dialect: Dialect, sql_type: i16, unsigned: bool) -> &'static str {
    // Every SQLite integer is up to eight bytes, whatever the column declares.
    if dialect == Dialect::Sqlite {
        return "bigint";
    }
    // MariaDB's `tinyint(1)` is usually a boolean flag, but its values are the digits 0
    // and 1 (and may be any other number up to 127), so it stays a number.
    match (sql_type, unsigned) {
        // TINYINT UNSIGNED goes up to 255: smallint holds it.
        (sql::TINYINT, _) | (sql::SMALLINT, false) => "smallint",
        // An unsigned type needs the next wider signed type.
        (sql::SMALLINT, true) | (sql::INTEGER, false) => "integer",
        (sql::INTEGER, true) => "bigint",
        (_, false) => "bigint",
        // BIGINT UNSIGNED goes up to 18446744073709551615: twenty digits.
        (_, true) => "numeric(20,0)",
    }
}

/// The precision and scale of a decimal column, when the source enforces them.
fn precision_and_scale(dialect: Dialect, column: &ColumnSpec) -> Option<(usize, usize)> {
    // SQLite enforces no precision (sqliteodbc reports NUMERIC columns as DOUBLE anyway).
    if dialect == Dialect::Sqlite {
        return None;
    }
    let (precision, scale) = (column.size?, column.scale?);
    // psqlODBC reports an unconstrained `numeric` as precision 28, scale 6. Taken at its
    // word, `numeric(28,6)` would round every value to six decimals. A real numeric(28,6)
    // loses nothing in an unconstrained column either.
    if dialect == Dialect::Postgres && (precision, scale) == (28, 6) {
        return None;
    }
    let valid = (1..=POSTGRES_MAX_PRECISION).contains(&precision) && scale <= precision;
    valid.then_some((precision, scale))
}

/// A decimal type of the given precision and scale, or of unknown precision.
fn numeric_type(kind: WarehouseKind, precision_and_scale: Option<(usize, usize)>) -> String {
    match (kind, precision_and_scale) {
        (WarehouseKind::Postgres, Some((p, s))) => format!("numeric({p},{s})"),
        (WarehouseKind::Postgres, None) => "numeric".to_string(),
        (WarehouseKind::Redshift, Some((p, s))) if p <= REDSHIFT_MAX_PRECISION => {
            format!("numeric({p},{s})")
        }
        // Redshift's `numeric` holds 38 digits, and without a precision it means
        // numeric(18,0), which would round. Wider or unknown numbers are kept as their
        // text, digit for digit: p digits, a sign and a decimal point.
        (WarehouseKind::Redshift, Some((p, _))) => {
            format!("varchar({})", (p + 2).max(REDSHIFT_NUMBER_TEXT))
        }
        (WarehouseKind::Redshift, None) => format!("varchar({REDSHIFT_NUMBER_TEXT})"),
    }
}

/// Whether a (lower-cased) source type name carries a time zone: PostgreSQL's
/// `timestamptz` and `timetz`, the standard's `... with time zone`.
fn has_time_zone(type_name: &str) -> bool {
    matches!(type_name, "timestamptz" | "timetz") || type_name.contains("with time zone")
}

#[cfg(test)]
mod tests {
    use super::*;

    use WarehouseKind::{Postgres as Pg, Redshift as Rs};

    const DOC: &str = include_str!("../../docs/type-map.md");

    fn col(source_type: &str, sql_type: i16, size: Option<i64>, scale: Option<i64>) -> ColumnSpec {
        ColumnSpec::from_catalog("c".into(), source_type.into(), sql_type, size, scale)
    }

    /// The rows of the doc's type table, as their cells.
    fn doc_rows() -> Vec<Vec<&'static str>> {
        let header = "| ODBC SQL type | PostgreSQL warehouse | Redshift warehouse | notes |";
        let mut lines = DOC.lines().skip_while(|l| l.trim() != header);
        assert!(
            lines.next().is_some(),
            "docs/type-map.md has no `{header}` table"
        );
        lines
            .skip(1) // the |---| line
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                l.trim()
                    .trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect()
            })
            .collect()
    }

    /// The one row whose first cell contains `key`.
    fn doc_row(rows: &[Vec<&'static str>], key: &str) -> usize {
        let found: Vec<usize> = (0..rows.len())
            .filter(|i| rows[*i][0].contains(key))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one row of docs/type-map.md whose first cell contains {key:?}"
        );
        found[0]
    }

    #[test]
    fn the_doc_names_the_type_the_code_produces() {
        use Dialect::{MariaDb, Other, Postgres, Sqlite};
        let text = sql::VARCHAR;
        // (first cell of the doc row, source dialect, then the catalog's type name, SQL type,
        // COLUMN_SIZE and DECIMAL_DIGITS, -1 where the driver reports none). Most are what
        // psqlODBC, MariaDB Connector/ODBC and sqliteodbc report for real columns.
        #[rustfmt::skip]
        let cases: &[(&str, Dialect, &str, i16, i64, i64)] = &[
            ("of n characters", MariaDb, "VARCHAR", sql::WVARCHAR, 20, -1),
            ("of n characters", Other, "CHAR", sql::CHAR, 5, -1),
            ("size unknown or 0", MariaDb, "VARCHAR", sql::WVARCHAR, 0, -1),
            ("size unknown or 0", Postgres, "varchar", text, -1, -1),
            ("`SQL_LONGVARCHAR`", Postgres, "varchar", sql::LONGVARCHAR, 20, -1),
            ("`SQL_LONGVARCHAR`", MariaDb, "LONGTEXT", sql::WLONGVARCHAR, -1, -1),
            ("`SQL_LONGVARCHAR`", Other, "VARCHAR2", text, 8000, -1),
            ("`SQL_BINARY`", MariaDb, "VARBINARY", sql::VARBINARY, 10, -1),
            ("`SQL_BINARY`", MariaDb, "BLOB", sql::LONGVARBINARY, 65535, -1),
            ("`SQL_BINARY`", Postgres, "bytea", sql::LONGVARBINARY, -4, -1),
            ("`SQL_BIT`", MariaDb, "BIT", sql::BIT, 1, -1),
            ("`SQL_TINYINT`", MariaDb, "TINYINT", sql::TINYINT, 3, 0),
            ("`SQL_TINYINT`", Postgres, "int2", sql::SMALLINT, 5, 0),
            ("`SQL_INTEGER`", Postgres, "int4", sql::INTEGER, 10, 0),
            ("`SQL_BIGINT`", Postgres, "int8", sql::BIGINT, 19, 0),
            ("UNSIGNED", MariaDb, "TINYINT UNSIGNED", sql::TINYINT, 3, 0),
            ("UNSIGNED", MariaDb, "SMALLINT UNSIGNED", sql::SMALLINT, 5, 0),
            ("UNSIGNED", MariaDb, "MEDIUMINT UNSIGNED", sql::INTEGER, 8, 0),
            ("UNSIGNED", MariaDb, "INT UNSIGNED", sql::INTEGER, 10, 0),
            ("UNSIGNED", MariaDb, "BIGINT UNSIGNED", sql::BIGINT, 20, 0),
            ("precision p", MariaDb, "DECIMAL", sql::DECIMAL, 12, 3),
            ("precision p", Postgres, "numeric", sql::NUMERIC, 50, 2),
            ("precision p", Postgres, "numeric", sql::NUMERIC, 1000, 0),
            ("precision unknown", Postgres, "numeric", sql::NUMERIC, 28, 6),
            ("precision unknown", Other, "NUMBER", sql::NUMERIC, -1, -1),
            ("`SQL_REAL`", Postgres, "float4", sql::REAL, 9, 0),
            ("`SQL_FLOAT`", Postgres, "float8", sql::FLOAT, 17, 0),
            ("`SQL_FLOAT`", MariaDb, "DOUBLE", sql::DOUBLE, 15, -1),
            ("`SQL_TYPE_DATE`", MariaDb, "DATE", sql::TYPE_DATE, 10, -1),
            ("`SQL_TYPE_TIME`", MariaDb, "TIME", sql::TYPE_TIME, 8, -1),
            ("`SQL_DATETIME`", Postgres, "timestamp", sql::TYPE_TIMESTAMP, 26, 6),
            ("`SQL_DATETIME`", MariaDb, "DATETIME", sql::TYPE_TIMESTAMP, 19, -1),
            ("with time zone", Postgres, "timestamptz", sql::TYPE_TIMESTAMP, 26, 6),
            ("with time zone", Other, "TIMESTAMP WITH TIME ZONE", sql::TYPE_TIMESTAMP, -1, -1),
            ("with time zone", Other, "TIME WITH TIME ZONE", sql::TYPE_TIME, -1, -1),
            ("`SQL_GUID`", Postgres, "uuid", sql::GUID, 37, -1),
            ("`SQL_GUID`", Other, "uniqueidentifier", sql::GUID, 36, -1),
            ("Anything else", Other, "INTERVAL DAY TO SECOND", 110, 20, -1),
            ("Anything else", Other, "xml", -152, -1, -1),
            ("SQLite", Sqlite, "INTEGER", sql::INTEGER, 9, -1),
            ("SQLite", Sqlite, "DECIMAL(10,2)", text, 2, -1),
            ("SQLite", Sqlite, "NUMERIC", sql::NUMERIC, 10, 2),
            ("SQLite", Sqlite, "VARBINARY(10)", sql::VARBINARY, 10, -1),
            ("`bool`", Postgres, "bool", text, 5, 0),
            ("`uuid`", Postgres, "uuid", sql::GUID, 37, -1),
            ("`json`", Postgres, "json", text, 0, -1),
            ("`jsonb`", Postgres, "jsonb", text, 0, -1),
            ("`inet`", Postgres, "inet", text, 50, -1),
            ("`inet`", Postgres, "cidr", text, 50, -1),
            ("`inet`", Postgres, "macaddr", text, 17, -1),
            ("`inet`", Postgres, "interval", text, 32, -1),
            ("`money`", Postgres, "money", sql::FLOAT, 10, 0),
            ("`bytea`", Postgres, "bytea", sql::LONGVARBINARY, -4, -1),
            ("`bytea`", Postgres, "text", sql::LONGVARCHAR, 8190, -1),
        ];
        let rows = doc_rows();
        let mut checked = vec![false; rows.len()];
        for (key, dialect, source_type, sql_type, size, scale) in cases {
            let column = col(source_type, *sql_type, Some(*size), Some(*scale));
            let row = doc_row(&rows, key);
            checked[row] = true;
            for kind in [WarehouseKind::Postgres, WarehouseKind::Redshift] {
                let cell = match kind {
                    WarehouseKind::Postgres => 1,
                    WarehouseKind::Redshift => 2,
                };
                // Rows for PostgreSQL type names speak for the PostgreSQL warehouse only.
                if rows[row][cell] == "by ODBC type" {
                    continue;
                }
                let produced = target_type(kind, *dialect, &column);
                assert!(
                    rows[row]
                        .iter()
                        .any(|c| c.contains(&format!("`{produced}`"))),
                    "{dialect:?} {source_type} ({sql_type}) into {}: the code says \
                     `{produced}`, but the doc row {key:?} does not name it",
                    kind.as_str(),
                );
            }
        }
        for (row, was_checked) in rows.iter().zip(checked) {
            assert!(was_checked, "no test case checks the doc row {:?}", row[0]);
        }
    }

    #[test]
    fn create_table_folds_and_quotes_names() {
        let mut id = col("BIGINT", sql::BIGINT, Some(19), Some(0));
        id.name = "ID".into();
        id.nullable = false;
        let mut name = col("VARCHAR", sql::WVARCHAR, Some(40), None);
        name.name = "Name".into();
        let mut amount = col("DECIMAL", sql::DECIMAL, Some(12), Some(2));
        amount.name = "amount".into();
        let columns = [id, name, amount];
        assert_eq!(
            create_table_sql(Pg, Dialect::MariaDb, "staging", "Orders", &columns),
            r#"CREATE TABLE IF NOT EXISTS "staging"."orders" ("id" bigint NOT NULL, "name" varchar(40), "amount" numeric(12,2))"#
        );
        assert_eq!(
            create_table_sql(Rs, Dialect::MariaDb, "staging", "Orders", &columns),
            r#"CREATE TABLE IF NOT EXISTS "staging"."orders" ("id" bigint NOT NULL, "name" varchar(160), "amount" numeric(12,2))"#
        );
    }

    #[test]
    fn embedded_quotes_are_doubled() {
        assert_eq!(quote_ident("plain"), r#""plain""#);
        assert_eq!(quote_ident(r#"say "hi""#), r#""say ""hi""""#);
        let mut column = col("INT", sql::INTEGER, Some(10), Some(0));
        column.name = r#"A"b"#.into();
        assert_eq!(
            create_table_sql(Pg, Dialect::MariaDb, r#"My"Schema"#, r#"T"1"#, &[column]),
            r#"CREATE TABLE IF NOT EXISTS "My""Schema"."t""1" ("a""b" integer)"#
        );
    }

    #[test]
    fn not_null_is_carried_over() {
        let mut columns = [col("DATE", sql::TYPE_DATE, Some(10), None)];
        assert_eq!(
            create_table_sql(Rs, Dialect::MariaDb, "s", "t", &columns),
            r#"CREATE TABLE IF NOT EXISTS "s"."t" ("c" date)"#
        );
        columns[0].nullable = false;
        assert_eq!(
            create_table_sql(Rs, Dialect::MariaDb, "s", "t", &columns),
            r#"CREATE TABLE IF NOT EXISTS "s"."t" ("c" date NOT NULL)"#
        );
    }

    #[test]
    fn redshift_lengths_are_clamped() {
        // Bounded columns built by hand, wider than any the catalog classifies as bounded.
        let text = |n: usize| ColumnSpec {
            size: Some(n),
            fetch: FetchKind::Text {
                max_bytes: n.saturating_mul(4),
            },
            ..col("VARCHAR", sql::VARCHAR, None, None)
        };
        assert_eq!(target_type(Rs, Dialect::Other, &text(1)), "varchar(4)");
        assert_eq!(
            target_type(Rs, Dialect::Other, &text(16_383)),
            "varchar(65532)"
        );
        assert_eq!(
            target_type(Rs, Dialect::Other, &text(16_384)),
            "varchar(65535)"
        );
        assert_eq!(
            target_type(Rs, Dialect::Other, &text(usize::MAX)),
            "varchar(65535)"
        );
        assert_eq!(target_type(Pg, Dialect::Other, &text(20_000_000)), "text");

        let binary = |n: usize| ColumnSpec {
            size: Some(n),
            fetch: FetchKind::Binary { max_bytes: n },
            ..col("VARBINARY", sql::VARBINARY, None, None)
        };
        assert_eq!(target_type(Rs, Dialect::Other, &binary(1)), "varbyte(1)");
        assert_eq!(
            target_type(Rs, Dialect::Other, &binary(1_024_000)),
            "varbyte(1024000)"
        );
        assert_eq!(
            target_type(Rs, Dialect::Other, &binary(5_000_000)),
            "varbyte(1024000)"
        );
        assert_eq!(
            target_type(Rs, Dialect::Other, &binary(0)),
            "varbyte(1024000)"
        );

        let numeric = |p: i64, s: i64| col("numeric", sql::NUMERIC, Some(p), Some(s));
        assert_eq!(
            target_type(Rs, Dialect::Other, &numeric(38, 10)),
            "numeric(38,10)"
        );
        assert_eq!(
            target_type(Rs, Dialect::Other, &numeric(39, 0)),
            "varchar(128)"
        );
        assert_eq!(
            target_type(Rs, Dialect::Other, &numeric(1000, 0)),
            "varchar(1002)"
        );
    }

    #[test]
    fn numbers_the_catalog_cannot_vouch_for_are_not_narrowed() {
        let numeric = |p: Option<i64>, s: Option<i64>| col("numeric", sql::NUMERIC, p, s);
        // psqlODBC's report for an unconstrained numeric, from another source a real bound.
        assert_eq!(
            target_type(Pg, Dialect::Postgres, &numeric(Some(28), Some(6))),
            "numeric"
        );
        assert_eq!(
            target_type(Pg, Dialect::MariaDb, &numeric(Some(28), Some(6))),
            "numeric(28,6)"
        );
        // No scale, a scale above the precision, a precision PostgreSQL does not have.
        assert_eq!(
            target_type(Pg, Dialect::Other, &numeric(Some(10), None)),
            "numeric"
        );
        assert_eq!(
            target_type(Pg, Dialect::Other, &numeric(Some(2), Some(5))),
            "numeric"
        );
        assert_eq!(
            target_type(Pg, Dialect::Other, &numeric(Some(1001), Some(0))),
            "numeric"
        );
        assert_eq!(
            target_type(Rs, Dialect::Other, &numeric(Some(1001), Some(0))),
            "varchar(128)"
        );
    }

    #[test]
    fn only_a_time_zone_in_the_name_makes_timestamptz() {
        let ts = |name: &str| col(name, sql::TYPE_TIMESTAMP, Some(26), Some(6));
        for (name, expected) in [
            ("timestamptz", "timestamptz"),
            ("TIMESTAMPTZ", "timestamptz"),
            ("timestamp with time zone", "timestamptz"),
            ("timestamp without time zone", "timestamp"),
            ("timestamp", "timestamp"),
            ("DATETIME", "timestamp"),
        ] {
            for kind in [Pg, Rs] {
                assert_eq!(
                    target_type(kind, Dialect::Other, &ts(name)),
                    expected,
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn postgres_names_apply_only_between_postgres_databases() {
        let json = col("json", sql::VARCHAR, Some(0), None);
        assert_eq!(target_type(Pg, Dialect::Postgres, &json), "json");
        assert_eq!(target_type(Rs, Dialect::Postgres, &json), "varchar(65535)");
        assert_eq!(target_type(Pg, Dialect::MariaDb, &json), "text");
        let flag = col("bool", sql::VARCHAR, Some(5), Some(0));
        assert_eq!(target_type(Pg, Dialect::Postgres, &flag), "boolean");
        assert_eq!(target_type(Rs, Dialect::Postgres, &flag), "varchar(20)");
    }
}
