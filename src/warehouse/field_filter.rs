//! Leaving fields out of CSV rows on their way into COPY. A chunk has a field for every
//! extracted column, but COPY may not write every target column: PostgreSQL computes a
//! generated column itself and refuses a value for it. So the copy stage names only the
//! columns COPY writes and strips the other fields from every row as the decompressed chunk
//! streams by ([`FieldFilter`]).
//!
//! The rows are RFC 4180 as the CSV encoder writes them: the task's delimiter, quotes
//! doubled inside quoted fields, and quoted fields that may hold the delimiter, CR and LF.
//! Rows end with LF; an unquoted CR ends a row as well (PostgreSQL reads CR and CRLF line
//! ends too). The decompressor hands over pieces cut anywhere — inside a quoted field, between
//! the two quotes of a doubled quote, between CR and LF — so the filter keeps its place from
//! one piece to the next. Kept bytes are copied unchanged, in runs, with no allocation per
//! row; the filter never reads a value, it only finds where fields begin and end.
//!
//! One rewrite: when a single field is kept, a value `\.` would be alone on its line, where
//! PostgreSQL takes it for the end of the data. The encoder quotes it only when the row has
//! one field, so the filter does what the encoder would have done for the narrower row:
//! it writes `"\."`.

/// Strips the fields at given positions from every row of a CSV stream.
#[derive(Debug, Clone)]
pub struct FieldFilter {
    /// Whether the field at each position is left out; fields past the end are kept.
    dropped: Vec<bool>,
    delimiter: u8,
    /// Exactly one field of a row is kept (its value `\.` must then be quoted).
    one_kept: bool,
    /// The position of the current field in its row.
    field: usize,
    in_quotes: bool,
    /// Whether the current field is kept.
    keeping: bool,
    /// Whether a kept field began earlier in this row (a kept field after it needs a
    /// delimiter before it).
    kept_before: bool,
    lone: Lone,
}

/// How far the start of the one kept field matches `\.`; matched bytes are held back
/// until it is known whether the value is `\.` exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lone {
    /// Not at the start of the kept field, or it does not start with `\.`.
    Off,
    /// At the start of the kept field, nothing read yet.
    Start,
    /// `\` held back.
    Backslash,
    /// `\.` held back.
    Dot,
}

impl FieldFilter {
    /// A filter leaving out the fields at `positions` (0-based) of rows of `fields` fields.
    pub fn new(delimiter: u8, fields: usize, positions: &[usize]) -> FieldFilter {
        let mut dropped = vec![false; fields];
        for &position in positions {
            if let Some(slot) = dropped.get_mut(position) {
                *slot = true;
            }
        }
        let one_kept = dropped.iter().filter(|d| !**d).count() == 1;
        let mut filter = FieldFilter {
            dropped,
            delimiter,
            one_kept,
            field: 0,
            in_quotes: false,
            keeping: false,
            kept_before: false,
            lone: Lone::Off,
        };
        filter.enter_field();
        filter
    }

    /// Filter the next piece of the stream, appending what is kept to `out`.
    pub fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) {
        let mut rest = piece;
        while let Some((&byte, after)) = rest.split_first() {
            if self.lone != Lone::Off && self.lone_byte(byte, out) {
                rest = after;
                continue;
            }
            // The run of ordinary bytes up to the next one that opens or closes quotes or
            // ends a field, copied whole when the field is kept.
            let run = if self.in_quotes {
                rest.iter().position(|b| *b == b'"')
            } else {
                rest.iter()
                    .position(|b| *b == self.delimiter || matches!(*b, b'"' | b'\r' | b'\n'))
            };
            let end = run.unwrap_or(rest.len());
            if self.keeping {
                out.extend_from_slice(&rest[..end]);
            }
            let Some(&special) = rest.get(end) else {
                return;
            };
            self.special_byte(special, out);
            rest = &rest[end + 1..];
        }
    }

    /// The end of the stream: a value held back is written out.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.lone {
            Lone::Off | Lone::Start => {}
            Lone::Backslash => out.push(b'\\'),
            Lone::Dot => out.extend_from_slice(b"\"\\.\""),
        }
        self.lone = Lone::Off;
    }

    /// A quote, or an unquoted delimiter, CR or LF.
    fn special_byte(&mut self, byte: u8, out: &mut Vec<u8>) {
        if byte == b'"' {
            // A doubled quote inside a quoted field closes and opens again: the same place.
            self.in_quotes = !self.in_quotes;
            if self.keeping {
                out.push(byte);
            }
        } else if byte == self.delimiter {
            self.field += 1;
            if self.enter_field() {
                out.push(self.delimiter);
            }
        } else {
            debug_assert!(matches!(byte, b'\r' | b'\n'));
            out.push(byte);
            self.field = 0;
            self.kept_before = false;
            self.enter_field();
        }
    }

    /// Begin the field at `self.field`; whether a delimiter goes before it.
    fn enter_field(&mut self) -> bool {
        self.keeping = !self.dropped.get(self.field).copied().unwrap_or(false);
        if !self.keeping {
            return false;
        }
        if self.one_kept {
            self.lone = Lone::Start;
        }
        std::mem::replace(&mut self.kept_before, true)
    }

    /// A byte at the start of the one kept field; false when it is to be read as usual
    /// (after whatever was held back has been written).
    fn lone_byte(&mut self, byte: u8, out: &mut Vec<u8>) -> bool {
        let ends_field = byte == self.delimiter || matches!(byte, b'\r' | b'\n');
        let (next, consumed) = match (self.lone, byte) {
            (Lone::Start, b'\\') => (Lone::Backslash, true),
            (Lone::Backslash, b'.') => (Lone::Dot, true),
            (Lone::Dot, _) if ends_field => {
                out.extend_from_slice(b"\"\\.\"");
                (Lone::Off, false)
            }
            (Lone::Backslash, _) => {
                out.push(b'\\');
                (Lone::Off, false)
            }
            (Lone::Dot, _) => {
                out.extend_from_slice(b"\\.");
                (Lone::Off, false)
            }
            (Lone::Start | Lone::Off, _) => (Lone::Off, false),
        };
        self.lone = next;
        consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `input` through a filter, whole and cut into two pieces at every position.
    fn filtered(delimiter: u8, fields: usize, dropped: &[usize], input: &str) -> String {
        let run = |pieces: &[&[u8]]| {
            let mut filter = FieldFilter::new(delimiter, fields, dropped);
            let mut out = Vec::new();
            for piece in pieces {
                filter.push(piece, &mut out);
            }
            filter.finish(&mut out);
            String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
        };
        let bytes = input.as_bytes();
        let whole = run(&[bytes]);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(run(&[a, b]), whole, "{input:?} cut at {cut}");
        }
        let one_byte_each: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&one_byte_each), whole, "{input:?} a byte at a time");
        whole
    }

    #[test]
    fn the_fields_at_the_given_positions_are_left_out_byte_for_byte() {
        let cases: &[(u8, usize, &[usize], &str, &str)] = &[
            // Nothing left out: the stream unchanged.
            (b',', 3, &[], "1,a,2\n", "1,a,2\n"),
            // First, middle, last.
            (b',', 3, &[0], "1,a,2\n3,b,4\n", "a,2\nb,4\n"),
            (b',', 3, &[1], "1,a,2\n3,b,4\n", "1,2\n3,4\n"),
            (b',', 3, &[2], "1,a,2\n3,b,4\n", "1,a\n3,b\n"),
            (b',', 4, &[0, 2], "1,a,2,b\n", "a,b\n"),
            // NULL (nothing) and "" stay apart, in kept and in left-out fields.
            (b',', 3, &[1], ",\"\",\n\"\",,\"\"\n", ",\n\"\",\"\"\n"),
            // Quoted fields holding the delimiter, doubled quotes, CR and LF.
            (
                b',',
                3,
                &[1],
                "\"a,b\",\"say \"\"hi\"\", x\",\"line\nbreak\r\"\n",
                "\"a,b\",\"line\nbreak\r\"\n",
            ),
            (
                b',',
                3,
                &[0, 2],
                "\"x\n,\"\"\",\"\"\"\",\"\r\n\"\n",
                "\"\"\"\"\n",
            ),
            // The task's delimiter; a comma is then an ordinary byte.
            (b'|', 3, &[1], "a,b|\"c|d\"|e\n", "a,b|e\n"),
            (b'\t', 2, &[0], "1\tx,y\n", "x,y\n"),
            // CRLF and CR line ends are kept.
            (b',', 2, &[1], "1,a\r\n2,b\r\n", "1\r\n2\r\n"),
            (b',', 2, &[0], "1,a\r2,b\r", "a\rb\r"),
            // A last row without its line end.
            (b',', 2, &[1], "1,a\n2,b", "1\n2"),
            (b',', 2, &[1], "", ""),
            // Multi-byte UTF-8 passes whole.
            (b',', 2, &[0], "1,grüße 東京\n", "grüße 東京\n"),
            // One field kept: `\.` alone on its line would end PostgreSQL's COPY, so it is
            // quoted; values that only start like it are not.
            (b',', 2, &[1], "\\.,5\n", "\"\\.\"\n"),
            (b',', 2, &[0], "5,\\.\n", "\"\\.\"\n"),
            (b',', 2, &[1], "\\.,5", "\"\\.\""),
            (b',', 2, &[1], "\\.\r\n", "\"\\.\"\r\n"),
            (
                b',',
                2,
                &[1],
                "\\..,5\n\\,5\n\\x,5\n.,5\n",
                "\\..\n\\\n\\x\n.\n",
            ),
            (b',', 2, &[1], "\\", "\\"),
            (b',', 2, &[1], "\"\\.\",5\n", "\"\\.\"\n"),
            (b',', 2, &[1], ",5\n\\.x\n", "\n\\.x\n"),
            // Two fields kept: `\.` is not alone, and stays as it is.
            (b',', 3, &[2], "\\.,a,5\n", "\\.,a\n"),
        ];
        for (delimiter, fields, dropped, input, expected) in cases {
            assert_eq!(
                filtered(*delimiter, *fields, dropped, input),
                *expected,
                "fields {dropped:?} of {input:?}"
            );
        }
    }
}
