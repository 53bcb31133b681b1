//! The shapes a name or a value must have before it may become part of a path, an object
//! key or a statement: table and namespace names (folders `<schema>.<table>`), partition
//! names (folders `part-003`), column names (quoted identifiers) and partition bounds (SQL
//! literals). Names that come from outside the planner — an imported task file, an
//! assignment from a controller — are checked here before anything is built from them, so
//! `../../tmp/x` never reaches a `Path::join` and `1 OR 1 = 1` never reaches a `WHERE`.
//! Pure functions: no I/O.

/// The longest name a filesystem folder may have (ext4, xfs: 255 bytes).
const MAX_COMPONENT_BYTES: usize = 255;

/// A name that becomes one folder or file name under a task's folder: not empty, not `.`
/// or `..`, no `/`, `\`, NUL or other control character, at most 255 bytes.
pub fn check_component(what: &str, value: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("{what} `{}` {why}", shown(value)));
    if value.is_empty() {
        return refuse("is empty");
    }
    if value.len() > MAX_COMPONENT_BYTES {
        return refuse("is longer than 255 bytes");
    }
    if value.chars().all(|c| c == '.') {
        return refuse("is only dots: it would name a folder above the task's");
    }
    if value.contains(['/', '\\']) {
        return refuse("holds a `/` or `\\`: it would leave the task's folder");
    }
    if value.chars().any(char::is_control) {
        return refuse("holds a control character (or NUL)");
    }
    Ok(())
}

/// A partition's folder name as the planner makes them (`part-001`, `part-null`,
/// `part-other`): ASCII letters, digits, `-`, `_` and `.`, not starting with a dot.
pub fn check_partition_name(value: &str) -> Result<(), String> {
    check_component("partition name", value)?;
    let plain = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !plain || value.starts_with('.') {
        return Err(format!(
            "partition name `{}` is not one the planner makes (letters, digits, `-`, `_` \
             and `.`, such as part-001)",
            shown(value)
        ));
    }
    Ok(())
}

/// A column name: quoted wherever it is used, so any character but NUL and control
/// characters, and not empty.
pub fn check_identifier(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!(
            "{what} `{}` holds a control character (or NUL)",
            shown(value)
        ));
    }
    Ok(())
}

/// A partition bound as the planner writes it: a number (`-12`, `3.5`, `1e20`) or a
/// single-quoted string whose quotes are doubled (`'eu'`, `'2024-01-01'`, `'it''s'`).
/// Nothing else: a bound is pasted into SQL, so `1 OR 1 = 1` must not pass.
pub fn check_literal(what: &str, value: &str) -> Result<(), String> {
    if is_number(value) || is_quoted_string(value) {
        return Ok(());
    }
    Err(format!(
        "{what} `{}` is not a SQL literal (a number, or text in single quotes with each \
         inner quote doubled)",
        shown(value)
    ))
}

fn is_number(value: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = value.strip_prefix(['-', '+']).unwrap_or(value);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['-', '+']).unwrap_or(e))),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

fn is_quoted_string(value: &str) -> bool {
    let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
        return false;
    };
    if value.len() < 2 || inner.chars().any(|c| c == '\0' || c.is_control()) {
        return false;
    }
    // Every quote inside comes in a pair: `''`.
    inner.split("''").all(|piece| !piece.contains('\''))
}

/// A value as an error message may show it: control characters escaped.
fn shown(value: &str) -> String {
    value.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_that_would_leave_the_task_folder_are_refused() {
        let cases: &[(&str, bool)] = &[
            ("orders", true),
            ("public.orders", true),
            ("weird name €", true),
            ("...x", true),
            ("", false),
            (".", false),
            ("..", false),
            ("...", false),
            ("../../../../tmp/x", false),
            ("a/b", false),
            ("a\\b", false),
            ("a\0b", false),
            ("a\nb", false),
            ("a\u{7f}b", false),
        ];
        for (value, ok) in cases {
            assert_eq!(check_component("table", value).is_ok(), *ok, "{value:?}");
        }
        let error = check_component("partition name", "../../x").unwrap_err();
        assert_eq!(
            error,
            "partition name `../../x` holds a `/` or `\\`: it would leave the task's folder"
        );
        assert!(check_partition_name("part-001").is_ok());
        assert!(check_partition_name("part-other").is_ok());
        assert!(check_partition_name(".hidden").is_err());
        assert!(check_partition_name("part 1").is_err());
    }

    #[test]
    fn only_numbers_and_quoted_text_are_bounds() {
        let cases: &[(&str, bool)] = &[
            ("50000", true),
            ("-12", true),
            ("3.5", true),
            ("1e20", true),
            ("2.5E-3", true),
            ("'eu'", true),
            ("'2024-01-01 00:00:00'", true),
            ("'it''s'", true),
            ("''", true),
            ("1 OR 1 = 1", false),
            ("1; DROP TABLE t", false),
            ("'a' OR 'b' = 'b'", false),
            ("'it's'", false),
            ("'", false),
            ("", false),
            ("1.2.3", false),
            ("e5", false),
            ("0x10", false),
            ("'a\0'", false),
        ];
        for (value, ok) in cases {
            assert_eq!(check_literal("bound", value).is_ok(), *ok, "{value:?}");
        }
    }
}
