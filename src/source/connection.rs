//! Connection strings and connections. The user's ODBC connection string is taken as given
//! and completed with what each driver needs: psqlODBC must declare
//! and fetch through a cursor or it loads whole result sets into memory, must not log every
//! connection to /tmp, and must report unbounded text as unbounded; sqliteodbc must not
//! create a missing database file; MariaDB must speak utf8mb4. Every session reads time
//! stamps in UTC. Connection strings may hold a password, so nothing here prints one
//! without [`redact`].

use std::fmt;

use odbc_api::{Connection, ConnectionOptions, environment, escape_attribute_value};

use super::SourceError;
use super::error::{describe, sql_state};
use crate::config::Secret;
use crate::model::{Dialect, TableRef};

/// The dialect of a database by the name its driver reports (`SQL_DBMS_NAME`).
fn dialect_of(name: &str) -> Dialect {
    let name = name.to_ascii_lowercase();
    if name.contains("postgres") {
        Dialect::Postgres
    } else if name.contains("mariadb") || name.contains("mysql") {
        Dialect::MariaDb
    } else if name.contains("sqlite") {
        Dialect::Sqlite
    } else {
        Dialect::Other
    }
}

/// Statements that fix the session so values come out the same everywhere.
fn session_setup(dialect: Dialect) -> &'static [&'static str] {
    match dialect {
        Dialect::Postgres => &["SET TIME ZONE 'UTC'"],
        Dialect::MariaDb => &["SET time_zone = '+00:00'"],
        Dialect::Sqlite | Dialect::Other => &[],
    }
}

/// Driver options added to the connection string unless the user set them.
fn driver_options(dialect: Dialect, purpose: Purpose) -> Vec<(&'static str, String)> {
    match dialect {
        Dialect::Postgres => {
            // Rows per round trip. LOB rows are large; keep the driver's cache small.
            let fetch = match purpose {
                Purpose::Bulk => 10_000,
                Purpose::Lobs { rows } => rows.clamp(1, MAX_LOB_FETCH_ROWS),
            };
            vec![
                ("UseDeclareFetch", "1".into()),
                ("Fetch", fetch.to_string()),
                ("CommLog", "0".into()),
                ("Debug", "0".into()),
                // Unbounded varchar, json and friends come back as "size unknown" rather
                // than as a silent 255, so they are streamed as LOBs, never cut.
                ("MaxVarcharSize", "0".into()),
            ]
        }
        Dialect::MariaDb => vec![("CHARSET", "utf8mb4".into())],
        Dialect::Sqlite => vec![("NoCreat", "1".into())],
        Dialect::Other => vec![],
    }
}

/// What a connection is for, which sets the driver's fetch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Bulk,
    /// Rows with LOBs, `rows` per round trip: psqlODBC holds a round trip's rows whole,
    /// whatever we stream out of them (see [`lob_fetch_rows`]).
    Lobs {
        rows: usize,
    },
}

/// Most LOB rows per round trip.
pub const MAX_LOB_FETCH_ROWS: usize = 64;

/// Bytes of LOB values psqlODBC may hold in one round trip.
const LOB_FETCH_BUDGET: u64 = 4 * 1024 * 1024;

/// LOB rows per round trip for a subtask whose largest sampled row holds `largest` bytes
/// of LOB values (unknown: the most): one row at a time once rows reach 4 MB.
pub fn lob_fetch_rows(largest: Option<u64>) -> usize {
    match largest {
        Some(bytes) => {
            (LOB_FETCH_BUDGET / bytes.max(1)).clamp(1, MAX_LOB_FETCH_ROWS as u64) as usize
        }
        None => MAX_LOB_FETCH_ROWS,
    }
}

/// A source database: the completed connection string, what kind of database it is, and
/// how it quotes identifiers. Cheap to clone; every subtask opens its own connection.
#[derive(Clone)]
pub struct Source {
    /// The user's attributes plus the password; driver options are added per connection.
    attributes: Vec<(String, String)>,
    pub dialect: Dialect,
    quote: char,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source")
            .field("connection", &redact_attributes(&self.attributes))
            .field("dialect", &self.dialect)
            .finish()
    }
}

impl Source {
    /// Connect once to find out what the source is, and keep what later connections need.
    pub fn open(
        connection: &str,
        password: Option<&Secret>,
    ) -> Result<(Source, Connection<'static>), SourceError> {
        let mut attributes = parse_attributes(connection)?;
        if !attributes
            .iter()
            .any(|(k, _)| is_key(k, &["driver", "dsn", "filedsn"]))
        {
            return Err(SourceError::BadConnectionString(format!(
                "`{}` names neither Driver={{...}} nor DSN=...; e.g. \
                 Driver={{PostgreSQL Unicode}};Server=db;Port=5432;Database=erp;Uid=etl;",
                redact(connection)
            )));
        }
        if let Some(password) = password {
            attributes.retain(|(k, _)| !is_key(k, &["pwd", "password"]));
            attributes.push((
                "PWD".into(),
                escape_attribute_value(password.expose()).into_owned(),
            ));
        }
        // A first guess from the driver's name, so the first connection already streams;
        // confirmed by the DBMS name below.
        let guess = driver_name(&attributes)
            .map(|d| dialect_of(&d))
            .unwrap_or(Dialect::Other);
        let mut source = Source {
            attributes,
            dialect: guess,
            quote: '"',
        };
        let connection = source.connect_raw(Purpose::Bulk)?;
        let dbms = connection
            .database_management_system_name()
            .map_err(|e| SourceError::odbc("asking the source for its DBMS name", e))?;
        source.dialect = dialect_of(&dbms);
        source.quote = connection
            .identifier_quote_char()
            .ok()
            .flatten()
            .filter(|c| *c != ' ')
            .unwrap_or('"');
        let connection = if source.dialect != guess {
            drop(connection);
            source.connect_raw(Purpose::Bulk)?
        } else {
            connection
        };
        source.set_up_session(&connection)?;
        Ok((source, connection))
    }

    /// A source that is not connected to: its kind is guessed from the driver's name (an
    /// agent that only copies needs no more; a `DSN=` source is `Other`).
    pub fn unconnected(connection: &str) -> Result<Source, SourceError> {
        let attributes = parse_attributes(connection)?;
        let dialect = driver_name(&attributes)
            .map(|d| dialect_of(&d))
            .unwrap_or(Dialect::Other);
        Ok(Source {
            attributes,
            dialect,
            quote: '"',
        })
    }

    /// A source that was never connected, for tests of query building.
    #[cfg(test)]
    pub(crate) fn offline(dialect: Dialect, quote: char) -> Source {
        Source {
            attributes: Vec::new(),
            dialect,
            quote,
        }
    }

    /// How to reach a PostgreSQL source without ODBC (the native COPY path): from the
    /// connection string, or for a `DSN=` string from the DSN's entry in `odbc.ini` as
    /// the driver manager finds it (the string's own attributes first, as psqlODBC does).
    pub fn postgres_params(&self) -> Option<super::pg_copy::PgParams> {
        if self.dialect != Dialect::Postgres {
            return None;
        }
        let dsn = attribute(&self.attributes, &["dsn"]);
        let value = |names: &[&str]| {
            let braced = self
                .attributes
                .iter()
                .find(|(k, _)| is_key(k, names))
                .is_some_and(|(_, v)| v.trim_start().starts_with('{'));
            attribute(&self.attributes, names)
                .map(|v| if braced { v.replace("}}", "}") } else { v })
                .or_else(|| {
                    let dsn = dsn.as_deref()?;
                    names
                        .iter()
                        .find_map(|name| super::odbc_ini::dsn_value(dsn, name))
                })
        };
        let port = match value(&["port"]) {
            Some(port) => port.trim().parse().ok()?,
            None => 5432,
        };
        Some(super::pg_copy::PgParams {
            host: value(&["server", "servername", "host"])?,
            port,
            database: value(&["database", "db"])?,
            user: value(&["uid", "username", "user"])?,
            password: value(&["pwd", "password"]),
            sslmode: value(&["sslmode"]).unwrap_or_else(|| "prefer".into()),
        })
    }

    /// A new connection for a subtask.
    pub fn connect(&self, purpose: Purpose) -> Result<Connection<'static>, SourceError> {
        let connection = self.connect_raw(purpose)?;
        self.set_up_session(&connection)?;
        Ok(connection)
    }

    fn set_up_session(&self, connection: &Connection<'static>) -> Result<(), SourceError> {
        for statement in session_setup(self.dialect) {
            connection.execute(statement, (), None).map_err(|e| {
                SourceError::odbc(format!("setting up the session (`{statement}`)"), e)
            })?;
        }
        Ok(())
    }

    fn connect_raw(&self, purpose: Purpose) -> Result<Connection<'static>, SourceError> {
        let mut attributes = self.attributes.clone();
        for (key, value) in driver_options(self.dialect, purpose) {
            if !attributes.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                attributes.push((key.to_string(), value));
            }
        }
        let text = join_attributes(&attributes);
        let env =
            environment().map_err(|e| SourceError::odbc("loading the ODBC driver manager", e))?;
        env.connect_with_connection_string(&text, ConnectionOptions::default())
            .map_err(|e| connect_error(&attributes, e))
    }

    /// An identifier quoted for this source.
    pub fn quote_ident(&self, name: &str) -> String {
        let q = self.quote;
        let mut quoted = String::with_capacity(name.len() + 2);
        quoted.push(q);
        for c in name.chars() {
            if c == q {
                quoted.push(q);
            }
            quoted.push(c);
        }
        quoted.push(q);
        quoted
    }

    /// A table's fully qualified, quoted name.
    pub fn qualified(&self, table: &TableRef) -> String {
        let namespace = if self.dialect.namespace_is_catalog() {
            table.catalog.as_deref()
        } else {
            table.schema.as_deref()
        };
        match namespace.filter(|n| !n.is_empty()) {
            Some(ns) => format!("{}.{}", self.quote_ident(ns), self.quote_ident(&table.name)),
            None => self.quote_ident(&table.name),
        }
    }
}

fn connect_error(attributes: &[(String, String)], error: odbc_api::Error) -> SourceError {
    let detail = describe(&error);
    let state = sql_state(&error).unwrap_or_default();
    let lower = detail.to_ascii_lowercase();
    if lower.contains("can't open lib") || state == "IM003" {
        let driver = driver_name(attributes).unwrap_or_else(|| "?".into());
        return SourceError::DriverMissing { driver, detail };
    }
    if state == "IM002" {
        return match attribute(attributes, &["dsn"]) {
            Some(dsn) => SourceError::BadConnectionString(format!(
                "data source name `{dsn}` is not defined ({detail}); `odbcinst -q -s` lists them"
            )),
            None => SourceError::DriverMissing {
                driver: driver_name(attributes).unwrap_or_else(|| "?".into()),
                detail,
            },
        };
    }
    if state.starts_with("28")
        || lower.contains("password authentication failed")
        || lower.contains("access denied")
    {
        return SourceError::AuthFailed { detail };
    }
    if state.starts_with("08") || state == "HYT00" {
        return SourceError::Unreachable { detail };
    }
    if let Some(path) = attribute(attributes, &["database"]) {
        let is_sqlite =
            driver_name(attributes).is_some_and(|d| d.to_ascii_lowercase().contains("sqlite"));
        if is_sqlite && !std::path::Path::new(&path).exists() {
            return SourceError::BadConnectionString(format!(
                "SQLite database file {path} does not exist"
            ));
        }
    }
    SourceError::odbc("connecting to the source", error)
}

fn is_key(key: &str, names: &[&str]) -> bool {
    names.iter().any(|n| key.eq_ignore_ascii_case(n))
}

fn attribute(attributes: &[(String, String)], names: &[&str]) -> Option<String> {
    attributes
        .iter()
        .find(|(k, _)| is_key(k, names))
        .map(|(_, v)| unbrace(v).to_string())
}

fn driver_name(attributes: &[(String, String)]) -> Option<String> {
    attribute(attributes, &["driver"])
}

pub(super) fn unbrace(value: &str) -> &str {
    value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(value)
}

/// Split `Key=Value;Key={Va;lue};` into pairs, keeping values as written (braces included).
pub(super) fn parse_attributes(text: &str) -> Result<Vec<(String, String)>, SourceError> {
    let mut attributes = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            return Err(SourceError::BadConnectionString(format!(
                "`{}` is not Key=Value; a connection string is Key=Value pairs separated by `;`",
                keys_only(rest)
            )));
        };
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(';') {
            return Err(SourceError::BadConnectionString(format!(
                "`{}` has an attribute without a name; a connection string is Key=Value pairs \
                 separated by `;`",
                keys_only(text)
            )));
        }
        let after = &rest[eq + 1..];
        let (value, next) = if after.trim_start().starts_with('{') {
            // A braced value runs to the first `}` not doubled (`}}` is an escaped brace).
            let start = after.len() - after.trim_start().len();
            let bytes = after.as_bytes();
            let mut i = start + 1;
            loop {
                match bytes.get(i) {
                    None => {
                        return Err(SourceError::BadConnectionString(format!(
                            "the value of `{key}` opens a `{{` that is never closed"
                        )));
                    }
                    Some(b'}') if bytes.get(i + 1) == Some(&b'}') => i += 2,
                    Some(b'}') => break,
                    Some(_) => i += 1,
                }
            }
            let value = &after[start..=i];
            let tail = after[i + 1..].trim_start();
            (value, tail.strip_prefix(';').unwrap_or(tail))
        } else {
            match after.find(';') {
                Some(semi) => (&after[..semi], &after[semi + 1..]),
                None => (after, ""),
            }
        };
        attributes.push((key.to_string(), value.trim().to_string()));
        rest = next.trim_start();
    }
    Ok(attributes)
}

fn join_attributes(attributes: &[(String, String)]) -> String {
    let mut text = String::new();
    for (key, value) in attributes {
        text.push_str(key);
        text.push('=');
        text.push_str(value);
        text.push(';');
    }
    text
}

fn redact_attributes(attributes: &[(String, String)]) -> String {
    let redacted: Vec<(String, String)> = attributes
        .iter()
        .map(|(k, v)| {
            if is_key(k, &["pwd", "password"]) {
                (k.clone(), "***".to_string())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    join_attributes(&redacted)
}

/// A connection string with its password replaced by `***`, fit for logs and errors.
pub fn redact(connection: &str) -> String {
    match parse_attributes(connection) {
        Ok(attributes) => redact_attributes(&attributes),
        Err(_) => keys_only(connection),
    }
}

/// Whether a connection string carries a password (`PWD=`/`PASSWORD=` with a value); one
/// that cannot be parsed is taken to, when it names such a key at all.
pub fn holds_password(connection: &str) -> bool {
    match parse_attributes(connection) {
        Ok(attributes) => attributes
            .iter()
            .any(|(k, v)| is_key(k, &["pwd", "password"]) && !v.is_empty()),
        Err(_) => {
            let lower = connection.to_ascii_lowercase();
            lower.contains("pwd") || lower.contains("password")
        }
    }
}

/// An unparseable connection string shown by its keys only, never its values.
fn keys_only(connection: &str) -> String {
    connection
        .split(';')
        .map(|part| part.split('=').next().unwrap_or("").trim())
        .filter(|k| !k.is_empty())
        .map(|k| format!("{k}=…"))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_are_split_and_redacted() {
        let cases = [
            (
                "Driver={PostgreSQL Unicode};Server=h;Pwd=secret;",
                "Driver={PostgreSQL Unicode};Server=h;Pwd=***;",
            ),
            (
                "DSN=x; PASSWORD={a;b}}c} ;Uid=u",
                "DSN=x;PASSWORD=***;Uid=u;",
            ),
            (
                "Driver={SQLite3};Database=/tmp/x.db",
                "Driver={SQLite3};Database=/tmp/x.db;",
            ),
            ("garbage", "garbage=…"),
            ("Uid=u;Pwd={unclosed", "Uid=…;Pwd=…"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redact(raw), shown, "{raw}");
            assert_eq!(
                holds_password(raw),
                shown.contains("***") || raw.contains("Pwd="),
                "{raw}"
            );
        }
    }

    #[test]
    fn braces_protect_separators() {
        let attributes = parse_attributes("Driver={A;B};Pwd={x}}y;z};Port=1").unwrap();
        assert_eq!(
            attributes,
            vec![
                ("Driver".to_string(), "{A;B}".to_string()),
                ("Pwd".to_string(), "{x}}y;z}".to_string()),
                ("Port".to_string(), "1".to_string()),
            ]
        );
        assert!(parse_attributes("=x").is_err());
        assert!(parse_attributes("no equals sign").is_err());
    }

    #[test]
    fn drivers_get_the_options_that_keep_memory_flat() {
        let pg = driver_options(Dialect::Postgres, Purpose::Bulk);
        for (key, value) in [
            ("UseDeclareFetch", "1"),
            ("CommLog", "0"),
            ("MaxVarcharSize", "0"),
        ] {
            assert!(
                pg.iter().any(|(k, v)| *k == key && v == value),
                "psqlODBC needs {key}={value}"
            );
        }
        let fetch = |rows| {
            driver_options(Dialect::Postgres, Purpose::Lobs { rows })
                .into_iter()
                .find(|(k, _)| *k == "Fetch")
                .map(|(_, v)| v)
                .unwrap()
        };
        assert_eq!(
            fetch(lob_fetch_rows(None)),
            "64",
            "small fetches for LOB rows"
        );
        assert_eq!(fetch(lob_fetch_rows(Some(100_000))), "41");
        assert_eq!(fetch(lob_fetch_rows(Some(1 << 20))), "4");
        assert_eq!(
            fetch(lob_fetch_rows(Some(50 << 20))),
            "1",
            "one 50 MB row at a time"
        );
        assert!(
            !Dialect::MariaDb.streams_results(),
            "MariaDB is read in key ranges"
        );
        assert!(
            driver_options(Dialect::Sqlite, Purpose::Bulk)
                .iter()
                .any(|(k, _)| *k == "NoCreat")
        );
    }

    #[test]
    fn identifiers_are_quoted_by_doubling() {
        let source = Source {
            attributes: vec![],
            dialect: Dialect::Postgres,
            quote: '"',
        };
        assert_eq!(source.quote_ident(r#"we"ird"#), r#""we""ird""#);
        let maria = Source {
            attributes: vec![],
            dialect: Dialect::MariaDb,
            quote: '`',
        };
        let table = TableRef {
            catalog: Some("shop".into()),
            schema: None,
            name: "t".into(),
        };
        assert_eq!(maria.qualified(&table), "`shop`.`t`");
    }
}
