//! The `[target]` and `[warehouse]` sections: where the upload and copy stages send data.
//! Parsed as written ([`TargetSection`], [`WarehouseSection`]), validated into
//! [`TargetSettings`] and [`WarehouseSettings`]. Errors are `(span, message)` pairs that
//! [`super::job`] turns into `file:line:col` messages.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::Secret;

/// Which warehouse a task copies into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WarehouseKind {
    Postgres,
    Redshift,
}

impl WarehouseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WarehouseKind::Postgres => "postgres",
            WarehouseKind::Redshift => "redshift",
        }
    }
}

/// Default multipart part size: 16 MiB (S3 allows 5 MiB to 5 GiB).
pub const DEFAULT_PART_SIZE_MB: u64 = 16;
/// Default number of parts, or chunks, uploaded at once per subtask.
pub const DEFAULT_UPLOAD_CONCURRENCY: u32 = 4;
/// Default tries per object before the subtask fails (exponential backoff with jitter,
/// about four minutes in all).
pub const DEFAULT_UPLOAD_ATTEMPTS: u32 = 12;

type SpanError = (Option<Range<usize>>, String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TargetSection {
    url: Spanned<String>,
    endpoint: Option<Spanned<String>>,
    region: Option<String>,
    profile: Option<String>,
    path_style: Option<bool>,
    ca_bundle: Option<Spanned<String>>,
    checksum: Option<ChecksumMode>,
    #[serde(default = "default_part_size_mb")]
    part_size_mb: Spanned<u64>,
    #[serde(default = "default_concurrency")]
    concurrency: Spanned<u32>,
    #[serde(default = "default_attempts")]
    attempts: Spanned<u32>,
    #[serde(default)]
    device: TargetDevice,
    #[serde(default)]
    server_side_encryption: ServerSideEncryption,
    kms_key_id: Option<Spanned<String>>,
    proxy: Option<Spanned<String>>,
}

/// How S3 encrypts the objects it stores: `none` (the bucket's default applies),
/// `aes256` (SSE-S3) or `aws:kms` (SSE-KMS, with `kms_key_id` or the account's S3 key).
/// Redshift's COPY reads both without being told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum ServerSideEncryption {
    #[default]
    #[serde(rename = "none")]
    None,
    #[serde(rename = "aes256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    Kms,
}

/// What the target is: AWS S3 or an S3-compatible server (`s3`, the default), or a
/// Snowball Edge-style device, which takes chunks of at most [`DEVICE_MAX_CHUNK_MB`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetDevice {
    #[default]
    S3,
    SnowballEdge,
}

/// The largest chunk a Snowball Edge-style device takes, in MB.
pub const DEVICE_MAX_CHUNK_MB: u64 = 1000;

impl TargetSection {
    pub(super) fn device(&self) -> TargetDevice {
        self.device
    }
}

fn default_part_size_mb() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_PART_SIZE_MB)
}
fn default_concurrency() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_UPLOAD_CONCURRENCY)
}
fn default_attempts() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_UPLOAD_ATTEMPTS)
}

/// Whether uploads carry the SDK's CRC32 checksums. Many S3-compatible servers store the
/// aws-chunked framing that comes with them as object data (moto and MinIO versions did), so custom
/// endpoints default to `when_required`. dbhaul's own SHA-256 per chunk is in the manifest
/// and checked when the copy stage reads a chunk back, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    WhenSupported,
    WhenRequired,
}

/// A validated `[target]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSettings {
    pub bucket: String,
    /// Key prefix without leading or trailing `/`; may be empty.
    pub prefix: String,
    /// Custom endpoint (S3-compatible device); `None` for AWS S3.
    pub endpoint: Option<String>,
    /// `None`: from the environment or profile, else `us-east-1`.
    pub region: Option<String>,
    pub profile: Option<String>,
    pub path_style: bool,
    pub ca_bundle: Option<PathBuf>,
    pub checksum: ChecksumMode,
    pub part_size: u64,
    pub concurrency: usize,
    pub attempts: u32,
    pub server_side_encryption: ServerSideEncryption,
    /// SSE-KMS: the key's id or ARN; `None` for the account's `aws/s3` key.
    pub kms_key_id: Option<String>,
    /// `http://host:port` (or https://) every S3 request goes through.
    pub proxy: Option<String>,
}

impl TargetSettings {
    /// `s3://bucket/prefix`, as written.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl TargetSection {
    pub(super) fn validate(self) -> Result<TargetSettings, SpanError> {
        let url = self.url.get_ref().trim();
        let (bucket, prefix) = parse_s3_url(url).map_err(|m| {
            (
                Some(self.url.span()),
                format!("target.url = \"{url}\": {m}"),
            )
        })?;
        let endpoint = match &self.endpoint {
            None => None,
            Some(e) => {
                let value = e.get_ref().trim().trim_end_matches('/').to_string();
                let parsed = url::Url::parse(&value)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                if parsed.is_none() {
                    return Err((
                        Some(e.span()),
                        format!(
                            "target.endpoint = \"{value}\" is not an http:// or https:// URL \
                             such as \"https://192.0.2.10:8443\""
                        ),
                    ));
                }
                Some(value)
            }
        };
        let ca_bundle = match &self.ca_bundle {
            None => None,
            Some(path) => {
                let path_buf = PathBuf::from(path.get_ref());
                if let Err(e) = std::fs::metadata(&path_buf) {
                    return Err((
                        Some(path.span()),
                        format!(
                            "target.ca_bundle = \"{}\" cannot be read ({e}); give the PEM \
                             certificate of the device (for a Snowball Edge: `snowballEdge \
                             get-certificate`)",
                            path.get_ref()
                        ),
                    ));
                }
                Some(path_buf)
            }
        };
        let part_size_mb = *self.part_size_mb.get_ref();
        if !(5..=5120).contains(&part_size_mb) {
            return Err((
                Some(self.part_size_mb.span()),
                format!(
                    "target.part_size_mb = {part_size_mb}: S3 multipart parts must be 5 to 5120 MB"
                ),
            ));
        }
        let concurrency = *self.concurrency.get_ref();
        if !(1..=64).contains(&concurrency) {
            return Err((
                Some(self.concurrency.span()),
                format!("target.concurrency = {concurrency}: must be 1 to 64"),
            ));
        }
        let attempts = *self.attempts.get_ref();
        if !(1..=100).contains(&attempts) {
            return Err((
                Some(self.attempts.span()),
                format!("target.attempts = {attempts}: must be 1 to 100"),
            ));
        }
        let kms_key_id = match &self.kms_key_id {
            None => None,
            Some(key) if self.server_side_encryption != ServerSideEncryption::Kms => {
                return Err((
                    Some(key.span()),
                    "target.kms_key_id goes with server_side_encryption = \"aws:kms\"".into(),
                ));
            }
            Some(key) => {
                let key_id = key.get_ref().trim().to_string();
                if key_id.is_empty() || key_id.contains(char::is_whitespace) {
                    return Err((
                        Some(key.span()),
                        "target.kms_key_id is empty or has spaces; give a key id, alias or \
                         ARN such as \"arn:aws:kms:us-east-1:123456789012:key/…\""
                            .into(),
                    ));
                }
                Some(key_id)
            }
        };
        let proxy = match &self.proxy {
            None => None,
            Some(p) => {
                let value = p.get_ref().trim().to_string();
                let ok = url::Url::parse(&value)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                    .is_some();
                if !ok {
                    return Err((
                        Some(p.span()),
                        format!(
                            "target.proxy = \"{value}\" is not an http:// or https:// URL such \
                             as \"http://proxy.example:3128\""
                        ),
                    ));
                }
                Some(value)
            }
        };
        let custom = endpoint.is_some();
        Ok(TargetSettings {
            bucket,
            prefix,
            region: self
                .region
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
            profile: self
                .profile
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty()),
            path_style: self.path_style.unwrap_or(custom),
            ca_bundle,
            checksum: self.checksum.unwrap_or(if custom {
                ChecksumMode::WhenRequired
            } else {
                ChecksumMode::WhenSupported
            }),
            part_size: part_size_mb * 1024 * 1024,
            concurrency: concurrency as usize,
            attempts,
            endpoint,
            server_side_encryption: self.server_side_encryption,
            kms_key_id,
            proxy,
        })
    }
}

/// `s3://bucket[/prefix]` → bucket and prefix (no leading or trailing `/`).
fn parse_s3_url(url: &str) -> Result<(String, String), String> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err("must start with s3://, as in \"s3://bucket/prefix\"".into());
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !valid {
        return Err(format!(
            "`{bucket}` is not a bucket name (3 to 63 lower-case letters, digits, `-` and `.`)"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.contains("//") {
        return Err("the prefix has an empty path segment (`//`)".into());
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WarehouseSection {
    kind: WarehouseKind,
    url: Spanned<String>,
    password_env: Option<Spanned<String>>,
    #[serde(default = "default_schema")]
    schema: String,
    iam_role: Option<Spanned<String>>,
    #[serde(default)]
    create_tables: bool,
    #[serde(default)]
    count_source: bool,
    copy: Option<CopySection>,
}

/// `[warehouse.copy]` as written: Redshift's COPY options by their names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CopySection {
    maxerror: Option<Spanned<u32>>,
    acceptinvchars: Option<Spanned<String>>,
    blanksasnull: Option<Spanned<bool>>,
    emptyasnull: Option<Spanned<bool>>,
    truncatecolumns: Option<Spanned<bool>>,
    compupdate: Option<Spanned<bool>>,
    statupdate: Option<Spanned<bool>>,
}

/// Redshift's most rejected rows for one COPY.
pub const MAX_MAXERROR: u32 = 100_000;

/// `[warehouse.copy]`, validated: options of the warehouse's COPY. Redshift takes each as
/// its COPY option of the same name; PostgreSQL takes `emptyasnull` (as `FORCE_NULL` on
/// every column) and refuses the others, which its COPY has no equivalent for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyOptions {
    /// `MAXERROR`: rows Redshift may reject per subtask; the subtask then completes with
    /// fewer rows in the warehouse, and says how many were rejected (`stl_load_errors`).
    pub maxerror: u32,
    /// `ACCEPTINVCHARS AS 'c'`: invalid UTF-8 replaced by this character.
    pub acceptinvchars: Option<char>,
    /// `BLANKSASNULL`: whitespace-only text loads as NULL.
    pub blanksasnull: bool,
    /// `EMPTYASNULL`: empty text loads as NULL.
    pub emptyasnull: bool,
    /// `TRUNCATECOLUMNS`: text longer than its column is cut to fit.
    pub truncatecolumns: bool,
    /// `COMPUPDATE ON`: Redshift chooses column encodings on an empty table (default off).
    pub compupdate: bool,
    /// `STATUPDATE ON`: Redshift updates statistics after the load (default off).
    pub statupdate: bool,
}

impl CopyOptions {
    /// Whether a load of `loaded` rows of `expected` is whole: all of them, or fewer by at
    /// most the `maxerror` rows Redshift was allowed to reject.
    pub fn accepts(&self, loaded: u64, expected: u64) -> bool {
        loaded <= expected && expected - loaded <= u64::from(self.maxerror)
    }
}

/// Every COPY option set (`maxerror = 10`, `acceptinvchars = "?"`), for tests.
#[cfg(test)]
pub fn every_copy_option() -> CopyOptions {
    CopyOptions {
        maxerror: 10,
        acceptinvchars: Some('?'),
        blanksasnull: true,
        emptyasnull: true,
        truncatecolumns: true,
        compupdate: true,
        statupdate: true,
    }
}

impl CopySection {
    fn validate(self, kind: WarehouseKind) -> Result<CopyOptions, SpanError> {
        let flag = |v: &Option<Spanned<bool>>| v.as_ref().is_some_and(|v| *v.get_ref());
        // Where a switch is set to true, for the refusal's line and column.
        let on = |v: &Option<Spanned<bool>>| v.as_ref().filter(|v| *v.get_ref()).map(|v| v.span());
        if kind == WarehouseKind::Postgres {
            let refused = [
                (
                    "maxerror",
                    self.maxerror
                        .as_ref()
                        .filter(|v| *v.get_ref() > 0)
                        .map(|v| v.span()),
                    "it stops at the first row it cannot load; fix the row, or leave it out with a filter",
                ),
                (
                    "acceptinvchars",
                    self.acceptinvchars.as_ref().map(|v| v.span()),
                    "it refuses text that is not valid in the database's encoding",
                ),
                (
                    "blanksasnull",
                    on(&self.blanksasnull),
                    "it loads whitespace as written; a filter or a view on the source can turn it into NULL",
                ),
                (
                    "truncatecolumns",
                    on(&self.truncatecolumns),
                    "it refuses a value longer than its column; widen the column",
                ),
                (
                    "compupdate",
                    on(&self.compupdate),
                    "it has no column compression encodings to choose",
                ),
                (
                    "statupdate",
                    on(&self.statupdate),
                    "autovacuum analyzes a table after large loads; run ANALYZE for statistics at once",
                ),
            ];
            if let Some((name, span, why)) = refused.into_iter().find(|(_, s, _)| s.is_some()) {
                return Err((
                    span,
                    format!(
                        "warehouse.copy.{name} is a Redshift COPY option that PostgreSQL's COPY \
                         has no equivalent for: {why}; remove it (warehouse.kind = \"postgres\")"
                    ),
                ));
            }
        }
        let maxerror = self.maxerror.as_ref().map_or(0, |v| *v.get_ref());
        if maxerror > MAX_MAXERROR {
            return Err((
                self.maxerror.as_ref().map(|v| v.span()),
                format!("warehouse.copy.maxerror = {maxerror}: Redshift takes 0 to {MAX_MAXERROR}"),
            ));
        }
        let acceptinvchars = match &self.acceptinvchars {
            None => None,
            Some(v) => {
                let mut chars = v.get_ref().chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii_graphic() || c == ' ' => Some(c),
                    _ => {
                        return Err((
                            Some(v.span()),
                            format!(
                                "warehouse.copy.acceptinvchars = \"{}\": give the one printable \
                                 ASCII character that replaces invalid UTF-8, such as \"?\"",
                                v.get_ref().escape_default()
                            ),
                        ));
                    }
                }
            }
        };
        Ok(CopyOptions {
            maxerror,
            acceptinvchars,
            blanksasnull: flag(&self.blanksasnull),
            emptyasnull: flag(&self.emptyasnull),
            truncatecolumns: flag(&self.truncatecolumns),
            compupdate: flag(&self.compupdate),
            statupdate: flag(&self.statupdate),
        })
    }
}

fn default_schema() -> String {
    "public".into()
}

/// A validated `[warehouse]`.
#[derive(Debug, Clone)]
pub struct WarehouseSettings {
    pub kind: WarehouseKind,
    /// The connection URL as written (a password in it is never printed: see
    /// [`WarehouseSettings::display_url`]).
    pub url: String,
    pub password: Option<Secret>,
    /// The schema tables are copied into (and where the bookkeeping table lives).
    pub schema: String,
    /// Redshift: the IAM role its COPY reads S3 with.
    pub iam_role: Option<String>,
    /// Create missing tables from the source column types (docs/type-map.md).
    pub create_tables: bool,
    /// Also compare each subtask's rows with a `COUNT(*)` on the source.
    pub count_source: bool,
    /// `[warehouse.copy]`: options of the warehouse's COPY.
    pub copy: CopyOptions,
    /// `files.lob_objects`: LOB columns hold object URLs, so a created table has them as
    /// text.
    pub lob_urls: bool,
}

impl WarehouseSettings {
    /// The URL with any password replaced by `***`.
    pub fn display_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.url.clone(),
        }
    }
}

impl WarehouseSection {
    pub(super) fn validate(
        self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<WarehouseSettings, SpanError> {
        let url = self.url.get_ref().trim().to_string();
        let is_pg_url = url.starts_with("postgresql://") || url.starts_with("postgres://");
        if !is_pg_url || crate::net::postgres::parse_url(&url).is_err() {
            return Err((
                Some(self.url.span()),
                "warehouse.url is not a PostgreSQL URL such as \
                 \"postgresql://loader@dw.example:5432/dw\" (Redshift: \
                 \"postgresql://loader@cluster.abc.us-east-1.redshift.amazonaws.com:5439/dev?sslmode=require\")"
                    .into(),
            ));
        }
        let password = match &self.password_env {
            None => None,
            Some(var) => match env(var.get_ref()) {
                Some(value) => Some(Secret::new(value)),
                None => {
                    return Err((
                        Some(var.span()),
                        format!(
                            "warehouse.password_env names `{}`, which is not set; export it \
                             with the warehouse password before running",
                            var.get_ref()
                        ),
                    ));
                }
            },
        };
        let schema = self.schema.trim().to_string();
        if schema.is_empty() {
            return Err((None, "warehouse.schema is empty".into()));
        }
        let iam_role = self
            .iam_role
            .as_ref()
            .map(|r| r.get_ref().trim().to_string())
            .filter(|r| !r.is_empty());
        if let Some(role) = &iam_role
            && (!role.starts_with("arn:") || role.contains('\''))
        {
            return Err((
                self.iam_role.as_ref().map(|r| r.span()),
                format!(
                    "warehouse.iam_role = \"{role}\" is not a role ARN such as \
                     \"arn:aws:iam::123456789012:role/RedshiftCopy\""
                ),
            ));
        }
        if self.kind == WarehouseKind::Redshift && iam_role.is_none() {
            return Err((
                Some(self.url.span()),
                "warehouse.kind = \"redshift\" needs iam_role = \"arn:aws:iam::...:role/...\": \
                 Redshift's COPY reads the uploaded chunks from S3 with that role"
                    .into(),
            ));
        }
        let copy = self.copy.unwrap_or_default().validate(self.kind)?;
        Ok(WarehouseSettings {
            copy,
            kind: self.kind,
            url,
            password,
            schema,
            iam_role,
            create_tables: self.create_tables,
            count_source: self.count_source,
            lob_urls: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        let ok = [
            ("s3://bucket", ("bucket", "")),
            ("s3://my.bucket-1/a/b/", ("my.bucket-1", "a/b")),
            ("s3://abc/", ("abc", "")),
        ];
        for (url, (bucket, prefix)) in ok {
            assert_eq!(
                parse_s3_url(url).unwrap(),
                (bucket.to_string(), prefix.to_string())
            );
        }
        for bad in ["bucket/x", "s3://B", "s3://ab", "s3://a_b", "s3://abc/x//y"] {
            assert!(parse_s3_url(bad).is_err(), "{bad}");
        }
    }
}
