//! Virtual partitions as SQL predicates, computed without touching a database. Ranges are
//! `< b1`, `>= b1 AND < b2`, …, `>= bn-1`, plus `IS NULL`: open at both ends, so every row
//! lands in exactly one partition whatever the boundaries are — rounding in a boundary can
//! make partitions uneven but can never lose or double a row.

use chrono::{NaiveDate, NaiveDateTime};

use crate::config::SqlLiteral;
use crate::model::{PartitionBound, PartitionSpec, ValueFamily};

/// Interior boundaries splitting `min..=max` into `count` ranges of equal width, as SQL
/// literals; fewer when the range has fewer distinct values than `count`.
pub fn range_boundaries(
    family: ValueFamily,
    min: &str,
    max: &str,
    count: u32,
) -> Result<Vec<String>, String> {
    let n = count as i128;
    let mut bounds: Vec<String> = match family {
        ValueFamily::Integer => {
            let parse = |v: &str| {
                let whole = v.split('.').next().unwrap_or(v);
                whole
                    .parse::<i128>()
                    .map_err(|_| format!("`{v}` is not an integer"))
            };
            let (lo, hi) = (parse(min)?, parse(max)?);
            (1..n)
                .map(|i| lo + (hi - lo) * i / n)
                .filter(|b| *b > lo)
                .map(|b| b.to_string())
                .collect()
        }
        ValueFamily::Decimal | ValueFamily::Float => {
            let parse = |v: &str| {
                v.parse::<f64>()
                    .map_err(|_| format!("`{v}` is not a number"))
            };
            let (lo, hi) = (parse(min)?, parse(max)?);
            (1..n)
                .map(|i| lo + (hi - lo) * (i as f64) / (n as f64))
                .filter(|b| *b > lo && b.is_finite())
                .map(|b| format!("{b:?}"))
                .collect()
        }
        ValueFamily::Date => {
            let parse = |v: &str| {
                NaiveDate::parse_from_str(v.get(..10).unwrap_or(v), "%Y-%m-%d")
                    .map_err(|_| format!("`{v}` is not a date (YYYY-MM-DD)"))
            };
            let (lo, hi) = (parse(min)?, parse(max)?);
            let days = (hi - lo).num_days() as i128;
            (1..n)
                .map(|i| lo + chrono::Duration::days((days * i / n) as i64))
                .filter(|b| *b > lo)
                .map(|b| format!("'{}'", b.format("%Y-%m-%d")))
                .collect()
        }
        ValueFamily::Timestamp => {
            let parse = |v: &str| {
                let v19 = v.get(..19).unwrap_or(v);
                NaiveDateTime::parse_from_str(v19, "%Y-%m-%d %H:%M:%S")
                    .or_else(|_| NaiveDateTime::parse_from_str(v19, "%Y-%m-%dT%H:%M:%S"))
                    .map_err(|_| format!("`{v}` is not a timestamp (YYYY-MM-DD HH:MM:SS)"))
            };
            let (lo, hi) = (parse(min)?, parse(max)?);
            let seconds = (hi - lo).num_seconds() as i128;
            (1..n)
                .map(|i| lo + chrono::Duration::seconds((seconds * i / n) as i64))
                .filter(|b| *b > lo)
                .map(|b| format!("'{}'", b.format("%Y-%m-%d %H:%M:%S")))
                .collect()
        }
        ValueFamily::Other => {
            return Err(
                "ranges need a numeric, date or timestamp column; use values = [...] \
                        for other types"
                    .into(),
            );
        }
    };
    bounds.dedup();
    Ok(bounds)
}

/// Range partitions from interior boundaries, plus the NULL partition when the column can
/// hold NULL.
pub fn range_partitions(
    column: &str,
    quoted: &str,
    boundaries: &[String],
    nullable: bool,
) -> Vec<PartitionSpec> {
    let mut bounds = Vec::with_capacity(boundaries.len() + 2);
    if boundaries.is_empty() {
        bounds.push(PartitionBound::NotNull);
    } else {
        bounds.push(PartitionBound::Below(boundaries[0].clone()));
        for pair in boundaries.windows(2) {
            bounds.push(PartitionBound::Between(pair[0].clone(), pair[1].clone()));
        }
        bounds.push(PartitionBound::From(
            boundaries[boundaries.len() - 1].clone(),
        ));
    }
    let mut partitions: Vec<PartitionSpec> = bounds
        .into_iter()
        .enumerate()
        .map(|(i, bound)| PartitionSpec::new(format!("part-{:03}", i + 1), column, quoted, bound))
        .collect();
    if nullable {
        partitions.push(PartitionSpec::new(
            "part-null".into(),
            column,
            quoted,
            PartitionBound::IsNull,
        ));
    }
    partitions
}

/// One partition per listed value, and `part-other` for every other value and NULL.
pub fn value_partitions(column: &str, quoted: &str, values: &[SqlLiteral]) -> Vec<PartitionSpec> {
    let mut partitions: Vec<PartitionSpec> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            PartitionSpec::new(
                format!("part-{:03}", i + 1),
                column,
                quoted,
                PartitionBound::Equals(v.to_sql()),
            )
        })
        .collect();
    let listed: Vec<String> = values.iter().map(SqlLiteral::to_sql).collect();
    partitions.push(PartitionSpec::new(
        "part-other".into(),
        column,
        quoted,
        PartitionBound::Other(listed),
    ));
    partitions
}

/// Refuse listed values that cannot be values of the column's type.
pub fn check_values(family: ValueFamily, values: &[SqlLiteral]) -> Result<(), String> {
    let numeric = matches!(
        family,
        ValueFamily::Integer | ValueFamily::Decimal | ValueFamily::Float
    );
    for value in values {
        let ok = match (value, family) {
            (SqlLiteral::Text(t), _) if numeric => t.trim().parse::<f64>().is_ok(),
            (SqlLiteral::Float(_), ValueFamily::Integer) => false,
            (
                SqlLiteral::Integer(_) | SqlLiteral::Float(_),
                ValueFamily::Date | ValueFamily::Timestamp,
            ) => false,
            _ => true,
        };
        if !ok {
            return Err(format!(
                "value {} does not fit the column's type",
                value.to_sql()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_split_the_range_evenly() {
        use ValueFamily::*;
        let cases: &[(ValueFamily, &str, &str, u32, &[&str])] = &[
            (Integer, "1", "100", 4, &["25", "50", "75"]),
            (
                Integer,
                "-9223372036854775808",
                "9223372036854775807",
                2,
                &["-1"],
            ),
            (Integer, "5", "5", 4, &[]),
            (Integer, "1", "3", 8, &["2"]),
            (Decimal, "0.5", "2.5", 2, &["1.5"]),
            (
                Date,
                "2024-01-01",
                "2024-01-05",
                4,
                &["'2024-01-02'", "'2024-01-03'", "'2024-01-04'"],
            ),
            (
                Timestamp,
                "2024-01-01 00:00:00.123",
                "2024-01-01 00:00:04",
                2,
                &["'2024-01-01 00:00:02'"],
            ),
        ];
        for (family, min, max, count, expected) in cases {
            let got = range_boundaries(*family, min, max, *count).unwrap();
            assert_eq!(got, *expected, "{family:?} {min}..{max} / {count}");
        }
        assert!(range_boundaries(Other, "a", "z", 2).is_err());
        assert!(range_boundaries(Date, "yesterday", "2024-01-01", 2).is_err());
    }

    #[test]
    fn range_partitions_are_open_at_both_ends_and_catch_nulls() {
        let parts = range_partitions("id", "\"id\"", &["10".into(), "20".into()], true);
        assert_eq!(parts[1].bound.predicate("`id`"), "`id` >= 10 AND `id` < 20");
        let predicates: Vec<_> = parts
            .iter()
            .map(|p| (p.name.as_str(), p.predicate.as_str()))
            .collect();
        assert_eq!(
            predicates,
            [
                ("part-001", "\"id\" < 10"),
                ("part-002", "\"id\" >= 10 AND \"id\" < 20"),
                ("part-003", "\"id\" >= 20"),
                ("part-null", "\"id\" IS NULL"),
            ]
        );
        let single = range_partitions("c", "c", &[], true);
        assert_eq!(single[0].predicate, "c IS NOT NULL");
        assert_eq!(single[1].predicate, "c IS NULL");
        let not_null = range_partitions("k", "k", &["5".into()], false);
        assert_eq!(not_null.len(), 2, "no NULL partition for a NOT NULL column");
    }

    #[test]
    fn value_partitions_keep_the_rest() {
        let parts = value_partitions(
            "r",
            "r",
            &[SqlLiteral::Text("eu".into()), SqlLiteral::Integer(7)],
        );
        let predicates: Vec<_> = parts.iter().map(|p| p.predicate.as_str()).collect();
        assert_eq!(
            predicates,
            ["r = 'eu'", "r = 7", "(r NOT IN ('eu', 7) OR r IS NULL)"]
        );
        assert!(check_values(ValueFamily::Integer, &[SqlLiteral::Text("eu".into())]).is_err());
        assert!(
            check_values(
                ValueFamily::Integer,
                &[SqlLiteral::Integer(1), SqlLiteral::Text("2".into())]
            )
            .is_ok()
        );
    }
}
