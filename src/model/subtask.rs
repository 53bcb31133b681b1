//! A subtask: one table, or one partition of a table, with everything the extractor needs to
//! read it without asking the catalog again — the resolved table, the columns it fetches
//! and how, the columns it leaves out, the row filter and the partition predicate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A table as the source's catalog names it. MariaDB and MySQL call their namespaces
/// catalogs (databases), PostgreSQL calls them schemas, SQLite has neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRef {
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub name: String,
}

impl TableRef {
    /// The namespace shown to users and used in folder names: the schema, else the
    /// catalog, else `main` (SQLite's name for its one database).
    pub fn namespace(&self) -> &str {
        self.schema
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.catalog.as_deref().filter(|c| !c.is_empty()))
            .unwrap_or("main")
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace(), self.name)
    }
}

/// How a column is fetched. Bounded columns go through block fetches into fixed buffers;
/// long or unbounded ones (LOBs) are streamed value by value, so no value is ever truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchKind {
    /// Text of at most `max_bytes` UTF-8 bytes.
    Text { max_bytes: usize },
    /// Binary of at most `max_bytes` bytes, written as hex.
    Binary { max_bytes: usize },
    /// Long or unbounded text: a LOB.
    LongText,
    /// Long or unbounded binary: a LOB.
    LongBinary,
    /// Double precision, fetched as a number and written in its shortest exact form
    /// (drivers' own text forms can drop digits: sqliteodbc prints 15).
    Float64,
    /// Single precision, likewise.
    Float32,
}

impl FetchKind {
    pub fn is_lob(self) -> bool {
        matches!(self, FetchKind::LongText | FetchKind::LongBinary)
    }

    pub fn is_binary(self) -> bool {
        matches!(self, FetchKind::Binary { .. } | FetchKind::LongBinary)
    }
}

/// Columns longer than this many characters (or bytes, for binary) are LOBs. Oracle's
/// VARCHAR2 limit; PostgreSQL `text` (reported as 8190), MariaDB `TEXT` (65535) and
/// every unbounded type fall above it.
pub const LOB_THRESHOLD: usize = 4000;

/// ODBC SQL data type codes (sql.h / sqlext.h), as `SQLColumns` reports them.
pub mod sql {
    pub const CHAR: i16 = 1;
    pub const NUMERIC: i16 = 2;
    pub const DECIMAL: i16 = 3;
    pub const INTEGER: i16 = 4;
    pub const SMALLINT: i16 = 5;
    pub const FLOAT: i16 = 6;
    pub const REAL: i16 = 7;
    pub const DOUBLE: i16 = 8;
    pub const DATETIME: i16 = 9;
    pub const VARCHAR: i16 = 12;
    pub const TYPE_DATE: i16 = 91;
    pub const TYPE_TIME: i16 = 92;
    pub const TYPE_TIMESTAMP: i16 = 93;
    pub const LONGVARCHAR: i16 = -1;
    pub const BINARY: i16 = -2;
    pub const VARBINARY: i16 = -3;
    pub const LONGVARBINARY: i16 = -4;
    pub const BIGINT: i16 = -5;
    pub const TINYINT: i16 = -6;
    pub const BIT: i16 = -7;
    pub const WCHAR: i16 = -8;
    pub const WVARCHAR: i16 = -9;
    pub const WLONGVARCHAR: i16 = -10;
    pub const GUID: i16 = -11;

    /// The character types, narrow and wide, bounded and long.
    pub fn is_character(sql_type: i16) -> bool {
        matches!(
            sql_type,
            CHAR | VARCHAR | WCHAR | WVARCHAR | LONGVARCHAR | WLONGVARCHAR
        )
    }
}

/// The broad family of a column, for partitioning and key handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFamily {
    Integer,
    Decimal,
    Float,
    Date,
    Timestamp,
    Other,
}

/// One column of a source table as the catalog describes it, and how it will be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    /// The type name the source uses (`int8`, `VARCHAR`, `numeric`).
    pub source_type: String,
    /// The ODBC SQL data type code from `SQLColumns`.
    pub sql_type: i16,
    /// `COLUMN_SIZE` from `SQLColumns`, when the driver knows it.
    pub size: Option<usize>,
    /// `DECIMAL_DIGITS` from `SQLColumns`.
    pub scale: Option<usize>,
    /// False only when the catalog says the column cannot hold NULL.
    pub nullable: bool,
    pub fetch: FetchKind,
}

impl ColumnSpec {
    /// Classify a catalog column. Sizes of character columns come from the catalog (times
    /// four: UTF-8); sizes of numbers, dates and times are computed from the type, because
    /// some drivers (SQLite's) report nothing useful for them.
    pub fn from_catalog(
        name: String,
        source_type: String,
        sql_type: i16,
        size: Option<i64>,
        scale: Option<i64>,
    ) -> ColumnSpec {
        let size = size.filter(|s| *s > 0).map(|s| s as usize);
        let scale = scale.filter(|s| *s >= 0).map(|s| s as usize);
        let fetch = classify(sql_type, size);
        ColumnSpec {
            name,
            source_type,
            sql_type,
            size,
            scale,
            nullable: true,
            fetch,
        }
    }

    /// The type as users read it: `varchar(20)` where the catalog says `varchar` and 20.
    pub fn display_type(&self) -> String {
        let sized = sql::is_character(self.sql_type)
            || matches!(self.sql_type, sql::BINARY | sql::VARBINARY);
        match self.size {
            Some(n) if sized && !self.source_type.contains('(') && !self.fetch.is_lob() => {
                format!("{}({n})", self.source_type)
            }
            _ => self.source_type.clone(),
        }
    }

    pub fn family(&self) -> ValueFamily {
        match self.sql_type {
            sql::INTEGER | sql::SMALLINT | sql::BIGINT | sql::TINYINT => ValueFamily::Integer,
            sql::NUMERIC | sql::DECIMAL if self.scale == Some(0) => ValueFamily::Integer,
            sql::NUMERIC | sql::DECIMAL => ValueFamily::Decimal,
            sql::FLOAT | sql::REAL | sql::DOUBLE => ValueFamily::Float,
            sql::TYPE_DATE => ValueFamily::Date,
            sql::TYPE_TIMESTAMP | sql::DATETIME => ValueFamily::Timestamp,
            _ => ValueFamily::Other,
        }
    }
}

fn classify(sql_type: i16, size: Option<usize>) -> FetchKind {
    // Longest text forms of fixed-size types, with room to spare for signs, exponents,
    // fractional seconds, time zones and "BC" suffixes.
    let text = |max_bytes| FetchKind::Text { max_bytes };
    match sql_type {
        sql::BIT => text(8),
        sql::TINYINT | sql::SMALLINT | sql::INTEGER | sql::BIGINT => text(24),
        sql::REAL => FetchKind::Float32,
        sql::FLOAT | sql::DOUBLE => FetchKind::Float64,
        // Unconstrained NUMERIC can hold far more digits than any driver reports; anything
        // longer than the buffer is refused by the truncation check, never cut.
        sql::NUMERIC | sql::DECIMAL => text(size.unwrap_or(0).max(96) + 3),
        sql::TYPE_DATE => text(32),
        sql::TYPE_TIME => text(32),
        sql::TYPE_TIMESTAMP | sql::DATETIME => text(48),
        sql::GUID => text(40),
        sql::BINARY | sql::VARBINARY | sql::LONGVARBINARY => match size {
            Some(n) if n <= LOB_THRESHOLD => FetchKind::Binary { max_bytes: n },
            _ => FetchKind::LongBinary,
        },
        sql::LONGVARCHAR
        | sql::WLONGVARCHAR
        | sql::CHAR
        | sql::VARCHAR
        | sql::WCHAR
        | sql::WVARCHAR => match size {
            Some(n) if n <= LOB_THRESHOLD => text(n * 4),
            _ => FetchKind::LongText,
        },
        // Intervals, driver-specific types: bounded when the size is known and small.
        _ => match size {
            Some(n) if n <= LOB_THRESHOLD => text((n * 4).max(64)),
            _ => FetchKind::LongText,
        },
    }
}

/// The ordered unique key of a table, used to read it in key ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyKind {
    /// Positions of the key columns in the fetched column list, in key order.
    pub columns: Vec<usize>,
}

/// One virtual partition of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSpec {
    /// Folder name: `part-001` and so on, `part-other` for the rest, `part-null` for NULLs.
    pub name: String,
    /// The SQL predicate that selects the partition's rows, in the source's SQL.
    pub predicate: String,
    /// The partition column, unquoted, and the partition's bounds: to select the same rows
    /// in another database (the warehouse) with its own quoting.
    pub column: String,
    pub bound: PartitionBound,
}

impl PartitionSpec {
    /// A partition of `column` (unquoted), with the predicate written for the source.
    pub fn new(name: String, column: &str, quoted: &str, bound: PartitionBound) -> PartitionSpec {
        PartitionSpec {
            name,
            predicate: bound.predicate(quoted),
            column: column.to_string(),
            bound,
        }
    }
}

/// Which rows of the partition column a partition holds. Values are SQL literals that
/// PostgreSQL, Redshift and the sources read alike (numbers, `'quoted text'`, `'2024-01-01'`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionBound {
    Below(String),
    Between(String, String),
    From(String),
    NotNull,
    IsNull,
    Equals(String),
    /// Every value not listed, and NULL.
    Other(Vec<String>),
}

impl PartitionBound {
    /// The predicate over `column`, which must already be quoted.
    pub fn predicate(&self, column: &str) -> String {
        match self {
            PartitionBound::Below(b) => format!("{column} < {b}"),
            PartitionBound::Between(lo, hi) => format!("{column} >= {lo} AND {column} < {hi}"),
            PartitionBound::From(b) => format!("{column} >= {b}"),
            PartitionBound::NotNull => format!("{column} IS NOT NULL"),
            PartitionBound::IsNull => format!("{column} IS NULL"),
            PartitionBound::Equals(v) => format!("{column} = {v}"),
            PartitionBound::Other(listed) => format!(
                "({column} NOT IN ({}) OR {column} IS NULL)",
                listed.join(", ")
            ),
        }
    }
}

/// Everything one subtask needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubtaskSpec {
    pub table: TableRef,
    /// Columns that are fetched, in output order.
    pub columns: Vec<ColumnSpec>,
    /// Columns that are not fetched (LOBs with `extract_lobs = false`).
    pub left_out: Vec<ColumnSpec>,
    /// The table's `where` filter.
    pub filter: Option<String>,
    pub partition: Option<PartitionSpec>,
    /// The ordered unique key, when the table has one among the fetched columns.
    pub key: Option<KeyKind>,
    /// Rows the catalog expects (the table's estimate, shared out over its partitions):
    /// for progress and ETA only, never for correctness.
    #[serde(default)]
    pub estimated_rows: Option<u64>,
    /// The most bytes of LOB values in one row, in a sample of the table's first rows
    /// (PostgreSQL): how many LOB rows the driver may fetch at once.
    #[serde(default)]
    pub largest_lob_row: Option<u64>,
}

impl SubtaskSpec {
    /// `public.orders` or `public.orders/part-003`: the subtask's name and its folder
    /// under the task's working folder.
    pub fn id(&self) -> String {
        match &self.partition {
            Some(p) => format!("{}/{}", self.table, p.name),
            None => self.table.to_string(),
        }
    }

    pub fn has_lobs(&self) -> bool {
        self.columns.iter().any(|c| c.fetch.is_lob())
    }

    /// Every name that becomes a folder, an object key or part of a statement has the
    /// shape [`super::names`] asks: checked where a spec comes from outside the planner
    /// (an import, an assignment), before a path or a query is built from it.
    pub fn check_names(&self) -> Result<(), String> {
        use super::names::{check_component, check_identifier, check_literal};
        let table = &self.table;
        for (what, value) in [("catalog", &table.catalog), ("schema", &table.schema)] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                check_component(&format!("table {what}"), value)?;
            }
        }
        check_component("table name", &table.name)?;
        check_component("table folder", &table.to_string())?;
        for column in self.columns.iter().chain(&self.left_out) {
            check_identifier("column name", &column.name)?;
        }
        if let Some(partition) = &self.partition {
            super::names::check_partition_name(&partition.name)?;
            check_identifier(
                &format!("partition {} column", partition.name),
                &partition.column,
            )?;
            let what = format!("partition {} bound", partition.name);
            match &partition.bound {
                PartitionBound::Below(v) | PartitionBound::From(v) | PartitionBound::Equals(v) => {
                    check_literal(&what, v)?
                }
                PartitionBound::Between(low, high) => {
                    check_literal(&what, low)?;
                    check_literal(&what, high)?;
                }
                PartitionBound::Other(listed) => {
                    for v in listed {
                        check_literal(&what, v)?;
                    }
                }
                PartitionBound::NotNull | PartitionBound::IsNull => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_classified_from_the_catalog() {
        use FetchKind::*;
        let cases: &[(&str, i16, Option<i64>, FetchKind)] = &[
            ("pg int8", sql::BIGINT, Some(19), Text { max_bytes: 24 }),
            (
                "pg numeric(38,10)",
                sql::NUMERIC,
                Some(38),
                Text { max_bytes: 99 },
            ),
            (
                "pg varchar(20)",
                sql::VARCHAR,
                Some(20),
                Text { max_bytes: 80 },
            ),
            (
                "pg varchar(20), MaxVarcharSize=0",
                sql::LONGVARCHAR,
                Some(20),
                Text { max_bytes: 80 },
            ),
            ("pg unbounded varchar", sql::VARCHAR, Some(0), LongText),
            ("pg text", sql::LONGVARCHAR, Some(8190), LongText),
            ("pg bytea", sql::LONGVARBINARY, Some(-4), LongBinary),
            (
                "mariadb varbinary(10)",
                sql::VARBINARY,
                Some(10),
                Binary { max_bytes: 10 },
            ),
            ("mariadb blob", sql::LONGVARBINARY, Some(65535), LongBinary),
            ("mariadb longtext", sql::WLONGVARCHAR, Some(-1), LongText),
            ("mariadb TEXT", sql::WLONGVARCHAR, Some(65535), LongText),
            (
                "sqlite date (size 0)",
                sql::TYPE_DATE,
                Some(0),
                Text { max_bytes: 32 },
            ),
            ("sqlite TEXT", sql::LONGVARCHAR, Some(0), LongText),
            ("sqlite untyped", sql::VARCHAR, Some(0), LongText),
            ("uuid", sql::GUID, Some(37), Text { max_bytes: 40 }),
            ("pg float8", sql::FLOAT, Some(17), Float64),
            ("sqlite REAL", sql::DOUBLE, Some(53), Float64),
            ("float4", sql::REAL, Some(9), Float32),
        ];
        for (what, sql_type, size, expected) in cases {
            let col =
                ColumnSpec::from_catalog("c".into(), what.to_string(), *sql_type, *size, None);
            assert_eq!(col.fetch, *expected, "{what}");
        }
    }

    #[test]
    fn namespaces() {
        let t = |catalog: Option<&str>, schema: Option<&str>| TableRef {
            catalog: catalog.map(String::from),
            schema: schema.map(String::from),
            name: "t".into(),
        };
        assert_eq!(t(Some("db"), Some("public")).to_string(), "public.t");
        assert_eq!(t(Some("shop"), None).to_string(), "shop.t");
        assert_eq!(t(None, None).to_string(), "main.t");
        assert_eq!(t(Some(""), Some("")).to_string(), "main.t");
    }
}
