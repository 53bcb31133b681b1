//! Which ODBC driver libraries a connection string may make an agent load. A connection
//! string names its driver (`Driver=...`, or a data source whose entry does); the driver
//! manager loads that library into the process. An agent runs as a service user next to
//! production databases and takes its connection strings from whoever creates tasks, so it
//! loads only drivers registered by name with the driver manager (`odbcinst.ini`, the
//! administrator's) unless its own settings allow a path (`allow_driver_paths`, or one
//! library in `allowed_drivers`). `dbhaul run` and `dbhaul tables` run with their user's own
//! privileges and do not ask.
//!
//! Refused, besides a library named by its path or a name the driver manager does not
//! know (which it would try to load as a file): `FILEDSN=` (a file naming a driver),
//! `SAVEFILE=` (the driver manager writes a file), and the driver keys that load code
//! (`LoadExt`, SQLite's extensions; `PLUGIN_DIR`, MariaDB's authentication plugins), in
//! the string or in the entry of the data source it names. Keys are matched as the driver
//! manager matches them: without regard to case, every occurrence.
//!
//! Never prints a value other than the driver's name or path: the string may hold a
//! password.

use std::path::{Path, PathBuf};

use super::SourceError;
use super::connection::{parse_attributes, unbrace};

/// What an agent lets a connection string load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverPolicy {
    /// Any library path, file DSN and code-loading key (`allow_driver_paths = true`).
    pub any_path: bool,
    /// Library files that may be named by path although `any_path` is off.
    pub allowed_files: Vec<PathBuf>,
}

/// Keys with which a driver loads code of the string's choosing.
const CODE_KEYS: &[&str] = &["loadext", "plugin_dir", "plugin-dir", "plugindir"];

/// Keys with which the driver manager reads (`FILEDSN`) or writes (`SAVEFILE`) a file.
const FILE_KEYS: &[&str] = &["filedsn", "savefile"];

/// How to change the agent's settings so that it allows what was refused.
const HOW_TO_ALLOW: &str = "to allow it, run `dbhaul agent configure --allow-driver FILE` \
                            (one library) or `--allow-driver-paths` (any) on the agent's \
                            machine: settings allowed_drivers and allow_driver_paths in \
                            agent.toml";

/// Refuse `connection` unless every driver it makes the driver manager load is allowed.
pub fn check(connection: &str, policy: &DriverPolicy) -> Result<(), SourceError> {
    check_with(
        connection,
        policy,
        &|name| super::odbc_ini::driver_library(name),
        &|dsn, key| super::odbc_ini::dsn_value(dsn, key),
    )
}

/// [`check`] with the driver manager's registry given, for tests.
fn check_with(
    connection: &str,
    policy: &DriverPolicy,
    registered: &dyn Fn(&str) -> Option<String>,
    dsn_value: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<(), SourceError> {
    if policy.any_path {
        return Ok(());
    }
    for (key, value) in parse_attributes(connection)? {
        let value = unbrace(value.trim()).trim().to_string();
        check_attribute(&key, &value, policy, registered, dsn_value)?;
    }
    // The driver manager parses the string itself, and a parser that ends a braced value
    // elsewhere (at the first `}` of a doubled `}}`, say) would find a `Driver=` inside a
    // password that ours reads as the password's text. So every `key=value` piece of the
    // raw string, cut at `;`, `{` and `}`, is checked too: stricter, never looser.
    for piece in connection.split([';', '{', '}']) {
        if let Some((key, value)) = piece.split_once('=')
            && !value.trim().is_empty()
        {
            check_attribute(key, value.trim(), policy, registered, dsn_value)?;
        }
    }
    Ok(())
}

/// Refuse one attribute of a connection string that loads or writes what the agent does not
/// allow.
fn check_attribute(
    key: &str,
    value: &str,
    policy: &DriverPolicy,
    registered: &dyn Fn(&str) -> Option<String>,
    dsn_value: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<(), SourceError> {
    let refused = |message: String| Err(SourceError::DriverRefused(message));
    let key = key.trim().to_ascii_lowercase();
    if key == "driver" {
        check_driver(value, "the connection string's Driver=", policy, registered)?;
    } else if key == "dsn" {
        if let Some(driver) = dsn_value(value, "Driver") {
            let what = format!("data source `{value}` (its Driver= in odbc.ini)");
            check_driver(&driver, &what, policy, registered)?;
        }
        if let Some(code) = CODE_KEYS.iter().find(|k| dsn_value(value, k).is_some()) {
            return refused(format!(
                "data source `{value}` sets {code}, which makes its driver load a library \
                 of the file's choosing; this agent does not load code named by a data \
                 source; {HOW_TO_ALLOW}"
            ));
        }
    } else if FILE_KEYS.contains(&key.as_str()) {
        return refused(format!(
            "the connection string sets {}=, which makes the driver manager {} a file of \
             the task's choosing; this agent takes drivers registered by name (Driver={{...}}) \
             or data sources (DSN=) only; {HOW_TO_ALLOW}",
            key.to_ascii_uppercase(),
            if key == "savefile" {
                "write"
            } else {
                "read its driver from"
            }
        ));
    } else if CODE_KEYS.contains(&key.as_str()) {
        return refused(format!(
            "the connection string sets {key}=, which makes the driver load a library of \
             the task's choosing; {HOW_TO_ALLOW}"
        ));
    }
    Ok(())
}

fn check_driver(
    driver: &str,
    what: &str,
    policy: &DriverPolicy,
    registered: &dyn Fn(&str) -> Option<String>,
) -> Result<(), SourceError> {
    if registered(driver).is_some() {
        return Ok(());
    }
    let path = Path::new(driver);
    let allowed = |file: &PathBuf| {
        file == path
            || matches!(
                (file.canonicalize(), path.canonicalize()),
                (Ok(a), Ok(b)) if a == b
            )
    };
    if policy.allowed_files.iter().any(allowed) {
        return Ok(());
    }
    let message = if driver.contains('/') || driver.contains(".so") {
        format!(
            "{what} names the driver library {driver} by its path; this agent loads only \
             drivers registered with the driver manager (`odbcinst -q -d` lists them; name one \
             as Driver={{PostgreSQL Unicode}}); {HOW_TO_ALLOW}"
        )
    } else {
        format!(
            "{what} names driver `{driver}`, which is not registered with the driver manager \
             on this agent; `odbcinst -q -d` lists the registered drivers, \
             appliance/odbcinst.ini.example shows how to register one"
        )
    };
    Err(SourceError::DriverRefused(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(name: &str) -> Option<String> {
        match name.to_ascii_lowercase().as_str() {
            "postgresql unicode" => Some("psqlodbcw.so".into()),
            "sqlite3" => Some("libsqlite3odbc.so".into()),
            _ => None,
        }
    }

    fn dsn(dsn: &str, key: &str) -> Option<String> {
        match (dsn, key.to_ascii_lowercase().as_str()) {
            ("good", "driver") => Some("PostgreSQL Unicode".into()),
            ("bypath", "driver") => Some("/home/etl/evil.so".into()),
            ("sqliteext", "driver") => Some("SQLite3".into()),
            ("sqliteext", "loadext") => Some("/tmp/ext.so".into()),
            _ => None,
        }
    }

    #[test]
    fn only_registered_drivers_load_unless_the_agent_allows_paths() {
        let strict = DriverPolicy::default();
        let one_file = DriverPolicy {
            any_path: false,
            allowed_files: vec!["/opt/vendor/lib/odbc.so".into()],
        };
        let cases: &[(&str, bool, &str)] = &[
            ("Driver={PostgreSQL Unicode};Server=h;", true, ""),
            ("driver=postgresql unicode;Server=h;", true, ""),
            ("DSN=good;Uid=u", true, ""),
            ("DSN=undefined;Uid=u", true, ""),
            ("Driver=/tmp/evil.so;Server=h", false, "by its path"),
            ("DRIVER={/tmp/evil.so};Server=h", false, "by its path"),
            ("  driver  = /tmp/evil.so ;Server=h", false, "by its path"),
            ("Driver={SQLite3};Driver=/tmp/evil.so", false, "by its path"),
            ("Driver=evil.so;Server=h", false, "by its path"),
            ("Driver={NoSuchDriver};Server=h", false, "not registered"),
            ("DSN=bypath", false, "data source `bypath`"),
            ("DSN=sqliteext", false, "sets loadext"),
            ("FILEDSN=/tmp/x.dsn", false, "FILEDSN"),
            ("Driver={SQLite3};SAVEFILE=/etc/cron.d/x", false, "SAVEFILE"),
            ("Driver={SQLite3};LoadExt=/tmp/ext.so", false, "loadext"),
            (
                "Driver={MariaDB Unicode};PLUGIN_DIR=/tmp",
                false,
                "not registered",
            ),
            ("Driver={SQLite3};plugin_dir=/tmp", false, "plugin_dir"),
            // A Driver= inside a braced value: ours reads it as the password's text, a
            // parser that ends the value at the first `}` would load the library.
            (
                "Driver={PostgreSQL Unicode};Pwd={a}};Driver=/tmp/evil.so;x=}",
                false,
                "by its path",
            ),
            ("DSN=good;Pwd={x;FILEDSN=/tmp/x.dsn}", false, "FILEDSN"),
            ("Driver={PostgreSQL Unicode};Pwd={p=q;r}", true, ""),
        ];
        for (connection, ok, says) in cases {
            let result = check_with(connection, &strict, &registered, &dsn);
            assert_eq!(result.is_ok(), *ok, "{connection}: {result:?}");
            if let Err(e) = result {
                let message = e.to_string();
                assert!(message.contains(says), "{connection}: {message}");
                assert!(e.is_configuration(), "{connection}");
                if message.contains("by its path") {
                    assert!(message.contains("allow_driver_paths"), "{message}");
                }
            }
            let anything = DriverPolicy {
                any_path: true,
                allowed_files: vec![],
            };
            assert!(check_with(connection, &anything, &registered, &dsn).is_ok());
        }
        assert!(
            check_with(
                "Driver=/opt/vendor/lib/odbc.so",
                &one_file,
                &registered,
                &dsn
            )
            .is_ok()
        );
        assert!(
            check_with(
                "Driver=/opt/vendor/lib/other.so",
                &one_file,
                &registered,
                &dsn
            )
            .is_err()
        );
    }
}
