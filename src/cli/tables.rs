//! `dbhaul tables --source CONNECTION`: what a source holds, through the ODBC catalog —
//! tables and views with row estimates, and each column with its type and whether it is a
//! LOB (streamed whole, or left out with `extract_lobs = false`).

use serde::Serialize;

use super::{Exit, TablesArgs, report_error};
use crate::source::{Source, catalog};

#[derive(Serialize)]
struct TableListing {
    table: String,
    kind: String,
    rows_estimate: Option<i64>,
    primary_key: Vec<String>,
    columns: Vec<ColumnListing>,
}

#[derive(Serialize)]
struct ColumnListing {
    name: String,
    source_type: String,
    size: Option<usize>,
    lob: bool,
}

pub fn run(args: TablesArgs) -> Exit {
    let password = match super::password_from_env(args.password_env.as_ref()) {
        Ok(password) => password,
        Err(exit) => return exit,
    };
    let (source, conn) = match Source::open(&args.source, password.as_ref()) {
        Ok(opened) => opened,
        Err(e) => {
            report_error(format!("source: {e}"));
            return Exit::for_error(e.is_configuration());
        }
    };
    let listing = (|| {
        let mut listing = Vec::new();
        for entry in catalog::list_tables(&conn, &source, args.schema.as_deref())? {
            let columns = catalog::columns(&conn, &source, &entry.table)?;
            listing.push(TableListing {
                table: entry.table.to_string(),
                kind: entry.kind.to_ascii_lowercase(),
                rows_estimate: catalog::row_estimate(&conn, &source, &entry.table)?,
                primary_key: catalog::primary_key(&conn, &source, &entry.table)?,
                columns: columns
                    .into_iter()
                    .map(|c| ColumnListing {
                        lob: c.fetch.is_lob(),
                        size: c.size,
                        source_type: c.display_type(),
                        name: c.name,
                    })
                    .collect(),
            });
        }
        Ok::<_, crate::source::SourceError>(listing)
    })();
    let listing = match listing {
        Ok(listing) => listing,
        Err(e) => {
            report_error(e);
            return Exit::Failed;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&listing).expect("listing serializes")
        );
        return Exit::Done;
    }
    if listing.is_empty() {
        println!(
            "no tables{}",
            args.schema.map(|s| format!(" in {s}")).unwrap_or_default()
        );
    }
    for table in listing {
        let rows = table
            .rows_estimate
            .map_or("rows unknown".to_string(), |n| format!("~{n} rows"));
        println!("{}  ({}, {})", table.table, table.kind, rows);
        for column in table.columns {
            let mut notes = Vec::new();
            if table.primary_key.contains(&column.name) {
                notes.push("key");
            }
            if column.lob {
                notes.push("LOB");
            }
            println!(
                "    {:<32} {:<24} {}",
                column.name,
                column.source_type,
                notes.join(" ")
            );
        }
    }
    Exit::Done
}
