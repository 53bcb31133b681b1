//! The fidelity fixture: rows chosen to break a careless extractor (NULL next to the empty
//! string, quotes, delimiters, CR and LF, non-ASCII, `\.`, bigint and numeric(38,10)
//! extremes, dates, timestamps with microseconds, time zones, binary with every byte), plus
//! generated rows for volume. The same rows are written into each source and into a
//! PostgreSQL reference table, so an extraction from any source is compared with one truth.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Pg,
    Maria,
    Sqlite,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub id: i64,
    pub big: Option<i64>,
    pub n: Option<String>,
    pub s: Option<String>,
    pub b: Option<Vec<u8>>,
    pub d: Option<&'static str>,
    pub ts: Option<&'static str>,
    /// An instant, written in UTC.
    pub tz: Option<&'static str>,
    pub bo: Option<bool>,
    pub f: Option<f64>,
}

pub const TRICKY_STRINGS: &[&str] = &[
    "",
    "plain",
    "a,b",
    "say \"hi\"",
    "\"",
    "line\nbreak",
    "cr\r\nlf",
    "grüße 東京 🚀",
    "\\.",
    " padded  ",
    "tab\there",
    "back\\slash",
    "'single'",
    "NULL",
    "\\N",
    ";|,\t",
];

/// The rows of the `fidelity` table: the tricky ones first, then `n_generated` more.
pub fn fidelity_rows(n_generated: i64) -> Vec<Row> {
    let mut rows = Vec::new();
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let numerics = [
        "1234567890123456789012345678.0123456789",
        "-99999999999999999999999999.9999999999",
        "0.0000000001",
        "0",
    ];
    let dates = ["2024-02-29", "1999-12-31", "1000-01-01"];
    let stamps = [
        "2024-01-01 12:34:56.123456",
        "1970-01-01 00:00:00",
        "9999-12-31 23:59:59.999999",
    ];
    let instants = [
        "2024-01-01 10:34:56.5",
        "2038-01-19 03:14:07",
        "1970-01-02 00:00:00.000001",
    ];
    let floats = [0.1, -2.5, 1e300, 1.0 / 3.0];
    let bigs = [i64::MIN, i64::MAX, 0, -1];
    for (i, s) in TRICKY_STRINGS.iter().enumerate() {
        let i = i as i64;
        rows.push(Row {
            id: i + 1,
            big: Some(bigs[i as usize % bigs.len()]),
            n: Some(numerics[i as usize % numerics.len()].to_string()),
            s: Some(s.to_string()),
            b: Some(match i % 3 {
                0 => all_bytes.clone(),
                1 => Vec::new(),
                _ => vec![0x00, 0xff, 0x10, b'"', b',', b'\n'],
            }),
            d: Some(dates[i as usize % dates.len()]),
            ts: Some(stamps[i as usize % stamps.len()]),
            tz: Some(instants[i as usize % instants.len()]),
            bo: Some(i % 2 == 0),
            f: Some(floats[i as usize % floats.len()]),
        });
    }
    // A row of NULLs.
    rows.push(Row {
        id: 100,
        big: None,
        n: None,
        s: None,
        b: None,
        d: None,
        ts: None,
        tz: None,
        bo: None,
        f: None,
    });
    for k in 0..n_generated {
        rows.push(Row {
            id: 1000 + k,
            big: Some(k * 7_919 - 1_000_000),
            n: Some(format!("{}.{:010}", k * 31, k)),
            s: Some(format!(
                "row {k} ,\"q\" ü {}",
                "x".repeat((k % 50) as usize)
            )),
            b: Some((0..(k % 40) as u8).collect()),
            d: Some(dates[(k % 3) as usize]),
            ts: Some(stamps[(k % 2) as usize]),
            tz: Some(instants[(k % 3) as usize]),
            bo: if k % 5 == 0 { None } else { Some(k % 2 == 1) },
            f: Some(k as f64 / 4.0),
        });
    }
    rows
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A text literal that survives any quoting rules: built from its UTF-8 bytes.
pub fn text(db: Db, s: &str) -> String {
    match db {
        Db::Pg => format!(
            "convert_from(decode('{}', 'hex'), 'UTF8')",
            hex(s.as_bytes())
        ),
        Db::Maria => format!("CONVERT(X'{}' USING utf8mb4)", hex(s.as_bytes())),
        Db::Sqlite => format!("CAST(X'{}' AS TEXT)", hex(s.as_bytes())),
    }
}

fn binary(db: Db, b: &[u8]) -> String {
    match db {
        Db::Pg => format!("decode('{}', 'hex')", hex(b)),
        Db::Maria | Db::Sqlite => format!("X'{}'", hex(b)),
    }
}

fn opt<T>(value: &Option<T>, render: impl Fn(&T) -> String) -> String {
    value.as_ref().map_or("NULL".to_string(), render)
}

/// DDL and INSERTs for the `fidelity` table in a source (or the PostgreSQL reference).
pub fn fidelity_sql(db: Db, table: &str, rows: &[Row]) -> String {
    let ddl = match db {
        Db::Pg => {
            "id bigint PRIMARY KEY, big bigint, n numeric(38,10), s varchar(100), b bytea, \
                   d date, ts timestamp(6), tz timestamptz, bo boolean, f double precision"
        }
        Db::Maria => {
            "id bigint PRIMARY KEY, big bigint, n decimal(38,10), s varchar(100), \
                      b varbinary(300), d date, ts datetime(6), tz timestamp(6) NULL, bo boolean, f double"
        }
        Db::Sqlite => {
            "id integer PRIMARY KEY, big integer, n varchar(60), s varchar(100), b blob, \
                       d date, ts timestamp, tz timestamp, bo boolean, f real"
        }
    };
    let mut sql = format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({ddl});\n");
    if db == Db::Maria {
        sql.insert_str(0, "SET time_zone = '+00:00'; ");
    }
    for batch in rows.chunks(400) {
        let _ = write!(sql, "INSERT INTO {table} VALUES ");
        for (i, r) in batch.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let tz = |v: &&str| match db {
                Db::Pg => format!("'{v}+00'"),
                _ => format!("'{v}'"),
            };
            let _ = write!(
                sql,
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                r.id,
                opt(&r.big, |v| v.to_string()),
                opt(&r.n, |v| format!("'{v}'")),
                opt(&r.s, |v| text(db, v)),
                opt(&r.b, |v| binary(db, v)),
                opt(&r.d, |v| format!("'{v}'")),
                opt(&r.ts, |v| format!("'{v}'")),
                opt(&r.tz, tz),
                opt(&r.bo, |v| match (db, *v) {
                    (Db::Pg, true) => "true".into(),
                    (Db::Pg, false) => "false".into(),
                    (_, true) => "1".into(),
                    (_, false) => "0".into(),
                }),
                opt(&r.f, |v| format!("{v:e}")),
            );
        }
        sql.push_str(";\n");
    }
    sql
}

/// The PostgreSQL table the chunks of `fidelity` are loaded into.
pub const FIDELITY_PG_COLUMNS: &str = "id bigint, big bigint, n numeric(38,10), s varchar(100), \
    b bytea, d date, ts timestamp(6), tz timestamptz, bo boolean, f double precision";

/// The `lobs` table: LOB text and binary with the tricky values, read row by row.
pub fn lob_sql(db: Db, table: &str) -> String {
    let ddl = match db {
        Db::Pg => "id bigint PRIMARY KEY, t text, bl bytea",
        Db::Maria => "id bigint PRIMARY KEY, t longtext, bl longblob",
        Db::Sqlite => "id integer PRIMARY KEY, t text, bl blob",
    };
    let mut sql = format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({ddl});\n");
    for (i, s) in TRICKY_STRINGS.iter().enumerate() {
        let bytes: Vec<u8> = s.bytes().rev().collect();
        let _ = writeln!(
            sql,
            "INSERT INTO {table} VALUES ({}, {}, {});",
            i + 1,
            text(db, s),
            binary(db, &bytes)
        );
    }
    let _ = writeln!(sql, "INSERT INTO {table} VALUES (100, NULL, NULL);");
    sql
}

pub const LOB_PG_COLUMNS: &str = "id bigint, t text, bl bytea";

/// The 100 MB text and 50 MB binary values, generated the same way on every side.
pub const BIG_TEXT_BLOCK: &str = "dbhaul \"LOB\" test, ümlaut 東京\r\nline two\n";
pub const BIG_TEXT_REPEAT: usize = 100 * 1024 * 1024 / BIG_TEXT_BLOCK.len() + 1;
pub const BIG_BIN_BLOCK_HEX: &str = "00ff10225c0d0a2cdeadbeef";
pub const BIG_BIN_REPEAT: usize = 50 * 1024 * 1024 / (BIG_BIN_BLOCK_HEX.len() / 2) + 1;

pub fn big_text() -> Vec<u8> {
    BIG_TEXT_BLOCK.repeat(BIG_TEXT_REPEAT).into_bytes()
}

pub fn big_binary() -> Vec<u8> {
    let block: Vec<u8> = (0..BIG_BIN_BLOCK_HEX.len() / 2)
        .map(|i| u8::from_str_radix(&BIG_BIN_BLOCK_HEX[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    block.repeat(BIG_BIN_REPEAT)
}
