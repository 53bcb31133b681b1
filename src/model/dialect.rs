//! Which database a source is, as far as dbhaul treats them differently.

/// The database behind a connection, as far as dbhaul treats them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    /// MariaDB or MySQL: namespaces are catalogs, and the Debian driver (Connector/ODBC
    /// 3.1) buffers whole result sets, so tables are read in key ranges.
    MariaDb,
    Sqlite,
    Other,
}

impl Dialect {
    /// Whether the namespace in `schema.table` is an ODBC catalog rather than a schema.
    pub fn namespace_is_catalog(self) -> bool {
        self == Dialect::MariaDb
    }

    /// Whether one query can stream a whole table in bounded memory.
    pub fn streams_results(self) -> bool {
        self != Dialect::MariaDb
    }
}
