//! Virtual partitions as SQL predicates, computed without touching a database. Ranges are
//! `< b1`, `>= b1 AND < b2`, …, `>= bn-1`, plus `IS NULL`: open at both ends, so every row
//! lands in exactly one partition whatever the boundaries are — rounding in a boundary can
//! make partitions uneven but can never lose or double a row.

use chrono::{Months, NaiveDate, NaiveDateTime};

use crate::config::{DateInterval, MAX_RANGES, SqlLiteral};
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

/// One partition per listed value and, with `include_other`, `part-other` for every other
/// value and NULL.
pub fn value_partitions(
    column: &str,
    quoted: &str,
    values: &[SqlLiteral],
    include_other: bool,
) -> Vec<PartitionSpec> {
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
    if include_other {
        let listed: Vec<String> = values.iter().map(SqlLiteral::to_sql).collect();
        partitions.push(PartitionSpec::new(
            "part-other".into(),
            column,
            quoted,
            PartitionBound::Other(listed),
        ));
    }
    partitions
}

/// A boundary as a point on the column's line, to check the order.
#[derive(PartialEq, PartialOrd)]
enum Point {
    Integer(i128),
    Number(f64),
    Time(NaiveDateTime),
}

/// Given boundaries checked against the column's type and order, as SQL literals: numbers
/// bare, dates and timestamps quoted and written the one way every database reads.
pub fn typed_boundaries(family: ValueFamily, values: &[SqlLiteral]) -> Result<Vec<String>, String> {
    let mut rendered = Vec::with_capacity(values.len());
    let mut last: Option<(Point, String)> = None;
    for value in values {
        let shown = match value {
            SqlLiteral::Text(t) => t.trim().to_string(),
            other => other.to_sql(),
        };
        let wrong = |what: &str| format!("boundary {shown} is not {what}");
        let (point, sql) = match (family, value) {
            (ValueFamily::Integer, SqlLiteral::Integer(i)) => {
                (Point::Integer(*i as i128), i.to_string())
            }
            (ValueFamily::Integer, SqlLiteral::Text(t)) => {
                let i = t.trim().parse::<i128>().map_err(|_| wrong("an integer"))?;
                (Point::Integer(i), i.to_string())
            }
            (ValueFamily::Decimal | ValueFamily::Float, SqlLiteral::Integer(i)) => {
                (Point::Number(*i as f64), i.to_string())
            }
            (ValueFamily::Decimal | ValueFamily::Float, SqlLiteral::Float(f)) => {
                (Point::Number(*f), format!("{f:?}"))
            }
            (ValueFamily::Decimal | ValueFamily::Float, SqlLiteral::Text(t)) => {
                let t = t.trim();
                let plain = t
                    .trim_start_matches(['-', '+'])
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
                match t.parse::<f64>() {
                    Ok(f) if plain && f.is_finite() => (Point::Number(f), t.to_string()),
                    _ => return Err(wrong("a number")),
                }
            }
            (ValueFamily::Date, SqlLiteral::Text(t)) => {
                let d = NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
                    .map_err(|_| wrong("a date (YYYY-MM-DD)"))?;
                (
                    Point::Time(d.and_time(Default::default())),
                    format!("'{}'", d.format("%Y-%m-%d")),
                )
            }
            (ValueFamily::Timestamp, SqlLiteral::Text(t)) => {
                let t = t.trim();
                let at = [
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M",
                ]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(t, "%Y-%m-%d")
                        .ok()
                        .map(|d| d.and_time(Default::default()))
                })
                .ok_or_else(|| wrong("a timestamp (YYYY-MM-DD HH:MM:SS)"))?;
                (
                    Point::Time(at),
                    format!("'{}'", at.format("%Y-%m-%d %H:%M:%S%.f")),
                )
            }
            (ValueFamily::Other, _) => {
                return Err(
                    "boundaries need a numeric, date or timestamp column (the order \
                            of text depends on the database's collation); use values = [...] \
                            for other types"
                        .into(),
                );
            }
            (ValueFamily::Integer, _) => return Err(wrong("an integer")),
            (ValueFamily::Date, _) => return Err(wrong("a date (YYYY-MM-DD)")),
            (ValueFamily::Timestamp, _) => return Err(wrong("a timestamp (YYYY-MM-DD HH:MM:SS)")),
        };
        if let Some((before, before_shown)) = &last
            && point <= *before
        {
            return Err(format!(
                "boundary {shown} is not above {before_shown}: give boundaries in ascending \
                 order, each once"
            ));
        }
        rendered.push(sql);
        last = Some((point, shown));
    }
    Ok(rendered)
}

/// `date_auto_split` boundaries: `start`, then one `interval` after another (counted from
/// `start`, so month ends do not drift) while before `end`, then `end`. Without an end the
/// last range is open and holds everything up to `max`. Dates for a date column, midnights
/// for a timestamp column.
pub fn date_boundaries(
    family: ValueFamily,
    start: NaiveDate,
    end: Option<NaiveDate>,
    max: NaiveDate,
    interval: DateInterval,
) -> Result<Vec<String>, String> {
    let render = |d: NaiveDate| match family {
        ValueFamily::Date => Ok(format!("'{}'", d.format("%Y-%m-%d"))),
        ValueFamily::Timestamp => Ok(format!("'{} 00:00:00'", d.format("%Y-%m-%d"))),
        _ => Err("date_auto_split needs a date or timestamp column".to_string()),
    };
    let step = |k: u32| match interval {
        DateInterval::Day => start.checked_add_days(chrono::Days::new(u64::from(k))),
        DateInterval::Week => start.checked_add_days(chrono::Days::new(7 * u64::from(k))),
        DateInterval::Month => start.checked_add_months(Months::new(k)),
        DateInterval::Year => start.checked_add_months(Months::new(12 * k)),
    };
    if let Some(end) = end
        && end <= start
    {
        return Err(format!(
            "date_auto_split ends at {end}, not after its start {start} (the column's \
             smallest date when start is not given)"
        ));
    }
    let mut bounds = vec![render(start)?];
    for k in 1.. {
        let Some(next) = step(k) else { break };
        let done = match end {
            Some(end) => next >= end,
            None => next > max,
        };
        if done {
            break;
        }
        if bounds.len() >= MAX_RANGES as usize {
            return Err(format!(
                "{start} to {} makes more than {MAX_RANGES} partitions of one {}; use a \
                 longer interval or a later start",
                end.unwrap_or(max),
                interval.as_str()
            ));
        }
        bounds.push(render(next)?);
    }
    if let Some(end) = end {
        bounds.push(render(end)?);
    }
    Ok(bounds)
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
            true,
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

    #[test]
    fn given_boundaries_are_checked_against_the_type_and_the_order() {
        use ValueFamily::*;
        let text = |v: &[&str]| {
            v.iter()
                .map(|s| SqlLiteral::Text(s.to_string()))
                .collect::<Vec<_>>()
        };
        let ok: &[(ValueFamily, Vec<SqlLiteral>, &[&str])] = &[
            (
                Integer,
                vec![SqlLiteral::Integer(-5), SqlLiteral::Integer(10)],
                &["-5", "10"],
            ),
            (
                Integer,
                text(&[" 7", "9223372036854775807"]),
                &["7", "9223372036854775807"],
            ),
            (
                Decimal,
                text(&["0.5", "12.0000000001"]),
                &["0.5", "12.0000000001"],
            ),
            (
                Float,
                vec![SqlLiteral::Integer(1), SqlLiteral::Float(2.5)],
                &["1", "2.5"],
            ),
            (
                Date,
                text(&["1999-12-31", "2024-02-29"]),
                &["'1999-12-31'", "'2024-02-29'"],
            ),
            (
                Timestamp,
                text(&["2024-01-01", "2024-01-01T00:00:00.5", "2024-01-02 03:04:05"]),
                &[
                    "'2024-01-01 00:00:00'",
                    "'2024-01-01 00:00:00.500'",
                    "'2024-01-02 03:04:05'",
                ],
            ),
        ];
        for (family, values, expected) in ok {
            assert_eq!(
                typed_boundaries(*family, values).unwrap(),
                *expected,
                "{family:?}"
            );
        }
        let bad: &[(ValueFamily, Vec<SqlLiteral>, &str)] = &[
            (Integer, text(&["ten"]), "boundary ten is not an integer"),
            (
                Integer,
                vec![SqlLiteral::Float(1.5)],
                "boundary 1.5 is not an integer",
            ),
            (Decimal, text(&["1; DROP TABLE t"]), "is not a number"),
            (
                Date,
                text(&["2024-02-30"]),
                "boundary 2024-02-30 is not a date",
            ),
            (
                Date,
                vec![SqlLiteral::Integer(2024)],
                "boundary 2024 is not a date",
            ),
            (Timestamp, text(&["noon"]), "is not a timestamp"),
            (
                Other,
                text(&["a"]),
                "boundaries need a numeric, date or timestamp column",
            ),
            (
                Integer,
                text(&["10", "10"]),
                "boundary 10 is not above 10: give boundaries in ascending order",
            ),
            (
                Date,
                text(&["2024-01-02", "2024-01-01"]),
                "boundary 2024-01-01 is not above 2024-01-02",
            ),
        ];
        for (family, values, expected) in bad {
            let message = typed_boundaries(*family, values).unwrap_err();
            assert!(message.contains(expected), "{family:?}: {message}");
        }
    }

    #[test]
    fn dates_split_by_interval_from_the_start_without_drift() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Month ends stay month ends (counted from the start, not from the last step).
        let months = date_boundaries(
            ValueFamily::Date,
            day("2024-01-31"),
            Some(day("2024-05-01")),
            day("2024-12-31"),
            DateInterval::Month,
        )
        .unwrap();
        assert_eq!(
            months,
            [
                "'2024-01-31'",
                "'2024-02-29'",
                "'2024-03-31'",
                "'2024-04-30'",
                "'2024-05-01'"
            ]
        );
        // No end: open after the last step at or before the max; midnights for timestamps.
        let weeks = date_boundaries(
            ValueFamily::Timestamp,
            day("2024-01-01"),
            None,
            day("2024-01-15"),
            DateInterval::Week,
        )
        .unwrap();
        assert_eq!(
            weeks,
            [
                "'2024-01-01 00:00:00'",
                "'2024-01-08 00:00:00'",
                "'2024-01-15 00:00:00'"
            ]
        );
        let years = date_boundaries(
            ValueFamily::Date,
            day("2020-06-01"),
            None,
            day("2022-01-01"),
            DateInterval::Year,
        )
        .unwrap();
        assert_eq!(years, ["'2020-06-01'", "'2021-06-01'"]);
        let too_many = date_boundaries(
            ValueFamily::Date,
            day("1000-01-01"),
            None,
            day("2024-02-29"),
            DateInterval::Year,
        )
        .unwrap_err();
        assert!(
            too_many.contains("more than 1000 partitions of one year"),
            "{too_many}"
        );
        let backwards = date_boundaries(
            ValueFamily::Date,
            day("2024-03-01"),
            Some(day("2024-01-01")),
            day("2024-12-31"),
            DateInterval::Month,
        )
        .unwrap_err();
        assert!(
            backwards.contains("not after its start 2024-03-01"),
            "{backwards}"
        );
        assert!(
            date_boundaries(
                ValueFamily::Integer,
                day("2024-01-01"),
                None,
                day("2024-02-01"),
                DateInterval::Day
            )
            .is_err()
        );
    }

    #[test]
    fn list_partitions_without_other_values_leave_the_rest_out() {
        let parts = value_partitions("r", "r", &[SqlLiteral::Text("eu".into())], false);
        let predicates: Vec<_> = parts.iter().map(|p| p.predicate.as_str()).collect();
        assert_eq!(predicates, ["r = 'eu'"]);
    }
}
