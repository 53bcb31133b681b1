//! The CSV encoder: RFC 4180, UTF-8, one line per row, the hot path of every extraction.
//!
//! NULL and the empty string stay apart in a form PostgreSQL's and Redshift's COPY read
//! back: NULL is the null string unquoted (by default nothing at all), the empty string is
//! `""`. A value is quoted when it holds the delimiter, a quote, CR or LF, when it is empty,
//! when it equals the null string, or when it is `\.` alone on its line (PostgreSQL's
//! end-of-data marker) — the rules of PostgreSQL's own CSV output.
//! Binary values are written as `\x` followed by hex digits, PostgreSQL's bytea input form.
//! Streamed (LOB) text is always quoted, since its content is not known up front.
//!
//! No allocation per value: everything is appended to one growing buffer that is handed
//! downstream whole.

use crate::config::FileSettings;
use crate::source::fetch::Field;

pub struct CsvEncoder {
    out: Vec<u8>,
    delimiter: u8,
    null: Vec<u8>,
    rtrim: bool,
    /// Bytes that force quoting, as a lookup table.
    special: [bool; 256],
    /// Whether the next field is the first of its row (no delimiter before it).
    at_row_start: bool,
    streaming_binary: bool,
    /// Bytes of the value being streamed so far (the buffer may be handed on mid-value).
    streamed: u64,
    /// What comes before the hex digits of a binary value.
    binary_prefix: &'static [u8],
    /// Rows have one column: a value `\.` is quoted (alone on a line it would end a
    /// PostgreSQL COPY), as PostgreSQL's own CSV does.
    single_column: bool,
}

impl CsvEncoder {
    pub fn new(settings: &FileSettings, capacity: usize) -> CsvEncoder {
        let mut special = [false; 256];
        for b in [b'"', b'\r', b'\n', settings.delimiter] {
            special[b as usize] = true;
        }
        CsvEncoder {
            out: Vec::with_capacity(capacity),
            delimiter: settings.delimiter,
            null: settings.null_string.as_bytes().to_vec(),
            rtrim: settings.rtrim,
            special,
            at_row_start: true,
            streaming_binary: false,
            streamed: 0,
            binary_prefix: settings.binary_format.prefix(),
            single_column: false,
        }
    }

    /// Rows of `n` columns (a value `\.` needs quotes only when it is alone on its line).
    pub fn columns(mut self, n: usize) -> CsvEncoder {
        self.single_column = n == 1;
        self
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// Hand out what was encoded so far, keeping a buffer of the same capacity.
    pub fn take(&mut self) -> Vec<u8> {
        let capacity = self.out.capacity();
        std::mem::replace(&mut self.out, Vec::with_capacity(capacity))
    }

    fn separator(&mut self) {
        if self.at_row_start {
            self.at_row_start = false;
        } else {
            self.out.push(self.delimiter);
        }
    }

    pub fn field(&mut self, field: Field<'_>) {
        self.separator();
        match field {
            Field::Null => self.out.extend_from_slice(&self.null),
            Field::Text(value) => self.text(value),
            Field::Binary(value) => self.binary(value),
            Field::Float64(v) => self.float(v.is_nan(), v.is_infinite(), v < 0.0, 15, v),
            Field::Float32(v) => self.float(v.is_nan(), v.is_infinite(), v < 0.0, 6, v),
        }
    }

    /// A float as PostgreSQL prints it (`float8out`, `float4out` with the default
    /// `extra_float_digits = 1`): the shortest digits that read back to the same value, in
    /// plain notation when the decimal exponent is in `-4..max_exp` (`0.0001`, `100000`)
    /// and in scientific notation with a signed two-digit exponent otherwise (`1e-05`,
    /// `1.5e+300`); infinities and NaN in the words PostgreSQL and Redshift accept. The same
    /// bytes as PostgreSQL's own COPY, whatever the source.
    fn float(
        &mut self,
        nan: bool,
        infinite: bool,
        negative: bool,
        max_exp: i32,
        value: impl std::fmt::LowerExp,
    ) {
        use std::io::Write;
        let word: &[u8] = match (nan, infinite, negative) {
            (true, _, _) => b"NaN",
            (_, true, true) => b"-Infinity",
            (_, true, false) => b"Infinity",
            _ => {
                // `{:e}` gives the shortest round-trip digits: `-1.2345e-7`.
                let mut buf = [0u8; 48];
                let mut cursor = std::io::Cursor::new(&mut buf[..]);
                write!(cursor, "{value:e}").expect("a float fits 48 bytes");
                let len = cursor.position() as usize;
                pg_float_layout(&buf[..len], max_exp, &mut self.out);
                return;
            }
        };
        self.out.extend_from_slice(word);
    }

    fn text(&mut self, mut value: &[u8]) {
        if self.rtrim {
            while let [rest @ .., b' '] = value {
                value = rest;
            }
        }
        let needs_quotes = value.is_empty()
            || value.iter().any(|b| self.special[*b as usize])
            || value == self.null.as_slice()
            || (self.single_column && value == b"\\.");
        if !needs_quotes {
            self.out.extend_from_slice(value);
            return;
        }
        self.out.push(b'"');
        self.quoted_body(value);
        self.out.push(b'"');
    }

    /// The inside of a quoted field: quotes doubled, everything else as is.
    fn quoted_body(&mut self, value: &[u8]) {
        let mut rest = value;
        while let Some(i) = rest.iter().position(|b| *b == b'"') {
            self.out.extend_from_slice(&rest[..=i]);
            self.out.push(b'"');
            rest = &rest[i + 1..];
        }
        self.out.extend_from_slice(rest);
    }

    fn hex(&mut self, value: &[u8]) {
        let start = self.out.len();
        self.out.resize(start + value.len() * 2, 0);
        hex::encode_to_slice(value, &mut self.out[start..]).expect("sized for hex");
    }

    /// A binary value: prefix and hex digits. Without a prefix an empty value would be an
    /// empty field, which reads back as NULL, so it is written `""`.
    fn binary(&mut self, value: &[u8]) {
        if value.is_empty() && self.binary_prefix.is_empty() {
            self.out.extend_from_slice(b"\"\"");
            return;
        }
        self.out.extend_from_slice(self.binary_prefix);
        self.hex(value);
    }

    pub fn begin_stream(&mut self, binary: bool) {
        self.separator();
        self.streaming_binary = binary;
        self.streamed = 0;
        let opening: &[u8] = if binary { self.binary_prefix } else { b"\"" };
        self.out.extend_from_slice(opening);
    }

    pub fn piece(&mut self, bytes: &[u8]) {
        self.streamed += bytes.len() as u64;
        if self.streaming_binary {
            self.hex(bytes);
        } else {
            self.quoted_body(bytes);
        }
    }

    pub fn end_stream(&mut self) {
        if !self.streaming_binary {
            self.out.push(b'"');
        } else if self.streamed == 0 && self.binary_prefix.is_empty() {
            self.out.extend_from_slice(b"\"\"");
        }
    }

    pub fn end_row(&mut self) {
        self.out.push(b'\n');
        self.at_row_start = true;
    }
}

/// Lay out `[-]d[.ddd]e[-]x` (Rust's `{:e}`) as PostgreSQL does (see [`CsvEncoder::float`]).
fn pg_float_layout(sci: &[u8], max_exp: i32, out: &mut Vec<u8>) {
    let (negative, sci) = match sci.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, sci),
    };
    let e_at = sci.iter().position(|b| *b == b'e').expect("an exponent");
    let (mantissa, exponent) = (&sci[..e_at], &sci[e_at + 1..]);
    let exp: i32 = std::str::from_utf8(exponent)
        .ok()
        .and_then(|e| e.parse().ok())
        .expect("a decimal exponent");
    let (first, rest) = mantissa.split_first().expect("a digit");
    let fraction = rest.strip_prefix(b".").unwrap_or(rest);
    if negative {
        out.push(b'-');
    }
    if (-4..max_exp).contains(&exp) {
        if exp >= 0 {
            let exp = exp as usize;
            out.push(*first);
            let whole = fraction.len().min(exp);
            out.extend_from_slice(&fraction[..whole]);
            out.extend(std::iter::repeat_n(b'0', exp - whole));
            if fraction.len() > exp {
                out.push(b'.');
                out.extend_from_slice(&fraction[exp..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.push(*first);
            out.extend_from_slice(fraction);
        }
    } else {
        out.push(*first);
        if !fraction.is_empty() {
            out.push(b'.');
            out.extend_from_slice(fraction);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let magnitude = exp.unsigned_abs();
        if magnitude >= 100 {
            out.push(b'0' + (magnitude / 100) as u8);
        }
        out.push(b'0' + (magnitude / 10 % 10) as u8);
        out.push(b'0' + (magnitude % 10) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_printed_as_postgresql_prints_them() {
        // Each pair as `SELECT v::float8` / `v::float4` prints it on PostgreSQL 15.
        let doubles: &[(f64, &str)] = &[
            (1e15, "1e+15"),
            (1e14, "100000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1.0, "1"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-1234.5, "-1234.5"),
            (0.1, "0.1"),
            (123.456, "123.456"),
            (5e-324, "5e-324"),
        ];
        let written = |field: Field<'_>| {
            let mut encoder = CsvEncoder::new(&FileSettings::default(), 64);
            encoder.field(field);
            String::from_utf8(encoder.take()).unwrap()
        };
        for (value, expected) in doubles {
            assert_eq!(written(Field::Float64(*value)), *expected, "{value:e}");
        }
        let singles: &[(f32, &str)] = &[
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.1, "0.1"),
            (3.4028235e38, "3.4028235e+38"),
            (1.1754944e-38, "1.1754944e-38"),
        ];
        for (value, expected) in singles {
            assert_eq!(written(Field::Float32(*value)), *expected, "{value:e}");
        }
    }

    fn encode(settings: &FileSettings, rows: &[&[Field<'_>]]) -> String {
        let columns = rows.first().map_or(0, |r| r.len());
        let mut encoder = CsvEncoder::new(settings, 64).columns(columns);
        for row in rows {
            for field in *row {
                encoder.field(*field);
            }
            encoder.end_row();
        }
        String::from_utf8(encoder.take()).unwrap()
    }

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        use Field::*;
        let default = FileSettings::default();
        let cases: &[(&[Field<'_>], &str)] = &[
            (&[Null, Text(b"")], ",\"\"\n"),
            (
                &[Text(b"plain"), Text(b"with space ")],
                "plain,with space \n",
            ),
            (
                &[Text(b"a,b"), Text(b"say \"hi\"")],
                "\"a,b\",\"say \"\"hi\"\"\"\n",
            ),
            (
                &[Text(b"line\nbreak"), Text(b"cr\rhere")],
                "\"line\nbreak\",\"cr\rhere\"\n",
            ),
            (&[Text(b"\\.")], "\"\\.\"\n"),
            (&[Text(b"\\."), Text(b"x")], "\\.,x\n"),
            (&[Text("grüße 東京".as_bytes())], "grüße 東京\n"),
            (
                &[Binary(&[0x00, 0xff, 0x10]), Binary(&[])],
                "\\x00ff10,\\x\n",
            ),
            (&[Text(b"\"")], "\"\"\"\"\n"),
            (
                &[
                    Float64(0.1),
                    Float64(1.0 / 3.0),
                    Float64(1e300),
                    Float64(-2.5e-300),
                ],
                "0.1,0.3333333333333333,1e+300,-2.5e-300\n",
            ),
            (
                &[
                    Float64(f64::NAN),
                    Float64(f64::INFINITY),
                    Float64(f64::NEG_INFINITY),
                    Float32(0.1),
                ],
                "NaN,Infinity,-Infinity,0.1\n",
            ),
        ];
        for (row, expected) in cases {
            assert_eq!(encode(&default, &[row]), *expected);
        }
    }

    #[test]
    fn null_string_delimiter_and_rtrim_settings() {
        use Field::*;
        let settings = FileSettings {
            delimiter: b'|',
            null_string: "\\N".into(),
            rtrim: true,
            ..FileSettings::default()
        };
        let row: &[Field<'_>] = &[
            Null,
            Text(b"\\N"),
            Text(b"a|b"),
            Text(b"a,b"),
            Text(b"pad   "),
            Text(b"   "),
        ];
        assert_eq!(
            encode(&settings, &[row]),
            "\\N|\"\\N\"|\"a|b\"|a,b|pad|\"\"\n"
        );
    }

    #[test]
    fn plain_hex_binary_keeps_empty_apart_from_null() {
        use crate::model::chunk::BinaryFormat;
        let settings = FileSettings {
            binary_format: BinaryFormat::Hex,
            ..FileSettings::default()
        };
        let mut encoder = CsvEncoder::new(&settings, 64);
        encoder.field(Field::Binary(&[0xab, 0x01]));
        encoder.field(Field::Binary(&[]));
        encoder.field(Field::Null);
        encoder.begin_stream(true);
        encoder.end_stream();
        encoder.begin_stream(true);
        encoder.piece(&[0xff]);
        encoder.end_stream();
        encoder.end_row();
        assert_eq!(
            String::from_utf8(encoder.take()).unwrap(),
            "ab01,\"\",,\"\",ff\n"
        );
    }

    #[test]
    fn streamed_values_are_quoted_and_hexed() {
        let mut encoder = CsvEncoder::new(&FileSettings::default(), 64);
        encoder.field(Field::Text(b"1"));
        encoder.begin_stream(false);
        encoder.piece(b"say \"");
        encoder.piece(b"hi\"");
        encoder.end_stream();
        encoder.begin_stream(true);
        encoder.piece(&[0xde, 0xad]);
        encoder.piece(&[0xbe, 0xef]);
        encoder.end_stream();
        encoder.begin_stream(false);
        encoder.end_stream();
        encoder.end_row();
        assert_eq!(
            String::from_utf8(encoder.take()).unwrap(),
            "1,\"say \"\"hi\"\"\",\\xdeadbeef,\"\"\n"
        );
    }
}
