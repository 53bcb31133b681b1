//! What a data source name (`DSN=`) stands for, as the driver manager reads it: unixODBC's
//! `SQLGetPrivateProfileString` looks the DSN up in the user's `~/.odbc.ini` (or
//! `$ODBCINI`) and then the system's `odbc.ini` (`$ODBCSYSINI`), the same files and order
//! the driver uses when it connects. The native COPY path needs the server, port, database
//! and login a PostgreSQL DSN names; the agent's driver check (`drivers`) needs the library
//! a DSN or a driver name stands for (`odbcinst.ini`). Never prints a value: the entry may
//! hold a password.

use std::ffi::{CString, c_char, c_int};

#[link(name = "odbcinst")]
unsafe extern "C" {
    /// unixODBC, odbcinst.h: copies the value of `entry` in `section` of `filename` (or
    /// `default`) into `buffer`, NUL-terminated; returns its length.
    fn SQLGetPrivateProfileString(
        section: *const c_char,
        entry: *const c_char,
        default: *const c_char,
        buffer: *mut c_char,
        buffer_len: c_int,
        filename: *const c_char,
    ) -> c_int;
}

/// The longest value read; longer ones are taken as absent rather than cut.
const MAX_VALUE: usize = 4096;

/// The value of `key` (matched without regard to case, as the driver manager does) in the
/// entry of data source `dsn`; `None` when the DSN or the key is not there, or empty.
pub fn dsn_value(dsn: &str, key: &str) -> Option<String> {
    profile_value(dsn, key, "odbc.ini")
}

/// The library of driver `name` as registered with the driver manager (`odbcinst.ini`;
/// unixODBC reads `Driver64` before `Driver`), or `None` when no driver has that name.
pub fn driver_library(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    profile_value(name, "Driver64", "odbcinst.ini")
        .or_else(|| profile_value(name, "Driver", "odbcinst.ini"))
}

fn profile_value(section: &str, key: &str, file: &str) -> Option<String> {
    let section = CString::new(section).ok()?;
    let entry = CString::new(key).ok()?;
    let default = CString::new("").ok()?;
    let file = CString::new(file).ok()?;
    let mut buffer = vec![0u8; MAX_VALUE + 2];
    // SAFETY: every pointer is a NUL-terminated string that lives across the call, and
    // the buffer's length is given; the function writes at most that many bytes.
    let len = unsafe {
        SQLGetPrivateProfileString(
            section.as_ptr(),
            entry.as_ptr(),
            default.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len() as c_int,
            file.as_ptr(),
        )
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|n| *n > 0 && *n <= MAX_VALUE)?;
    let end = buffer[..len].iter().position(|b| *b == 0).unwrap_or(len);
    let value = String::from_utf8(buffer[..end].to_vec()).ok()?;
    let value = value.trim().to_string();
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    /// Needs the drivers the appliance installs (appliance/setup.sh).
    #[test]
    fn registered_drivers_are_found_by_name_only() {
        assert!(super::driver_library("PostgreSQL Unicode").is_some());
        assert!(super::driver_library("postgresql unicode").is_some());
        assert_eq!(super::driver_library("/usr/lib/psqlodbcw.so"), None);
        assert_eq!(super::driver_library("NoSuchDriver"), None);
        assert_eq!(super::driver_library(""), None);
    }
}
