//! S3 and S3-compatible targets (aws-sdk-s3, slim features: no default HTTP client, rustls). Keys are
//! deterministic — `<prefix>/<task>/<schema>.<table>[/<partition>]/<file>` — so an upload
//! that is repeated overwrites rather than duplicates. Every operation is retried with
//! exponential backoff and full jitter while the error can pass (network, timeouts, 5xx,
//! throttling); errors that cannot pass (missing bucket, refused credentials) fail at once
//! with the cause and the fix.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use crate::config::stages::ServerSideEncryption;
use crate::config::{ChecksumMode, TargetSettings};
use crate::model::{CancelSwitch, StageFailure};

/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait after a failed try; doubled each time, with full jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Why an S3 operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    /// Trying again will not help; the message names the cause and the fix.
    #[error("{0}")]
    Fatal(String),
    /// Every try failed with an error that could have passed.
    #[error("{0}")]
    GaveUp(String),
    #[error("stopped")]
    Cancelled,
}

/// A stage's failure from an S3 error. An operation that gave up has already been tried
/// `target.attempts` times with backoff (the message says to raise it): the subtask does
/// not run again on top of that, so it is fatal like an error that cannot pass.
impl From<S3Error> for StageFailure {
    fn from(error: S3Error) -> StageFailure {
        match error {
            S3Error::Fatal(message) | S3Error::GaveUp(message) => StageFailure::Fatal(message),
            S3Error::Cancelled => StageFailure::Stopped,
        }
    }
}

/// One failed try, before the retry loop decides what it means.
#[derive(Debug)]
pub enum Attempt {
    Fatal(String),
    Transient(String),
}

/// A bucket and prefix on one endpoint, with one client. The client and its connection
/// pool live on the runtime that created them: keep an `S3Target` on one long-lived
/// arbiter (each actix arbiter is a runtime of its own, and the pool's connections belong
/// to the runtime that opened them).
#[derive(Clone)]
pub struct S3Target {
    client: Client,
    settings: TargetSettings,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Target({})", self.settings.url())
    }
}

impl S3Target {
    /// Build the client: credentials from the standard chain (environment, the named
    /// profile of `~/.aws/credentials` and `~/.aws/config`, instance metadata).
    pub async fn connect(settings: &TargetSettings) -> Result<S3Target, S3Error> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(client) = http_client(settings)? {
            loader = loader.http_client(client);
        }
        let shared = loader.load().await;
        let checksum = settings.checksum == ChecksumMode::WhenSupported;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(settings.path_style)
            .request_checksum_calculation(if checksum {
                RequestChecksumCalculation::WhenSupported
            } else {
                RequestChecksumCalculation::WhenRequired
            })
            .response_checksum_validation(if checksum {
                ResponseChecksumValidation::WhenSupported
            } else {
                ResponseChecksumValidation::WhenRequired
            })
            // The SDK's own quick retries for throttling; outages are ridden out by ours.
            .retry_config(RetryConfig::standard().with_max_attempts(2))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .build(),
            );
        if shared.region().is_none() {
            config = config.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(S3Target {
            client: Client::from_conf(config.build()),
            settings: settings.clone(),
        })
    }

    /// The `x-amz-server-side-encryption` every object is written with.
    fn encryption(&self) -> Option<aws_sdk_s3::types::ServerSideEncryption> {
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        match self.settings.server_side_encryption {
            ServerSideEncryption::None => None,
            ServerSideEncryption::Aes256 => Some(Sse::Aes256),
            ServerSideEncryption::Kms => Some(Sse::AwsKms),
        }
    }

    pub fn settings(&self) -> &TargetSettings {
        &self.settings
    }

    /// The key of `file` of a subtask: `<prefix>/<task>/<subtask id>/<file>`.
    pub fn key(&self, task: &str, subtask_id: &str, file: &str) -> String {
        object_key(&self.settings.prefix, task, subtask_id, file)
    }

    /// `s3://bucket/key`.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.bucket)
    }

    fn where_(&self) -> String {
        match &self.settings.endpoint {
            Some(e) => format!("bucket `{}` at {e}", self.settings.bucket),
            None => format!("bucket `{}`", self.settings.bucket),
        }
    }

    /// Upload a file under `key`: one PutObject, or a multipart upload with
    /// `concurrency` parts at a time when it is larger than the part size.
    pub async fn upload_file(
        &self,
        path: &Path,
        key: &str,
        cancel: &CancelSwitch,
    ) -> Result<u64, S3Error> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| {
                S3Error::Fatal(format!("cannot read {} to upload it: {e}", path.display()))
            })?
            .len();
        if size <= self.settings.part_size {
            self.retrying(&format!("uploading {key}"), cancel, || async {
                let body = file_body(path, 0, size).await?;
                self.client
                    .put_object()
                    .bucket(&self.settings.bucket)
                    .key(key)
                    .set_server_side_encryption(self.encryption())
                    .set_ssekms_key_id(self.settings.kms_key_id.clone())
                    .content_length(size as i64)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.classify(e))?;
                Ok(())
            })
            .await?;
        } else {
            self.upload_multipart(path, key, size, cancel).await?;
        }
        Ok(size)
    }

    async fn upload_multipart(
        &self,
        path: &Path,
        key: &str,
        size: u64,
        cancel: &CancelSwitch,
    ) -> Result<(), S3Error> {
        let part_size = self.settings.part_size;
        let parts = size.div_ceil(part_size);
        if parts > 10_000 {
            return Err(S3Error::Fatal(format!(
                "{} is {size} bytes: more than 10,000 parts of {} MB; raise \
                 target.part_size_mb or lower files.chunk_mb",
                path.display(),
                part_size / (1024 * 1024)
            )));
        }
        let upload_id = self
            .retrying(&format!("starting the upload of {key}"), cancel, || async {
                let out = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.settings.bucket)
                    .key(key)
                    .set_server_side_encryption(self.encryption())
                    .set_ssekms_key_id(self.settings.kms_key_id.clone())
                    .send()
                    .await
                    .map_err(|e| self.classify(e))?;
                out.upload_id()
                    .map(str::to_string)
                    .ok_or_else(|| Attempt::Fatal("the endpoint returned no upload id".into()))
            })
            .await?;
        let upload_id = upload_id.as_str();
        let result: Result<Vec<CompletedPart>, S3Error> = futures::stream::iter(1..=parts)
            .map(|number| async move {
                let offset = (number - 1) * part_size;
                let length = part_size.min(size - offset);
                let what = format!("uploading part {number} of {parts} of {key}");
                self.retrying(&what, cancel, || async {
                    let body = file_body(path, offset, length).await?;
                    let out = self
                        .client
                        .upload_part()
                        .bucket(&self.settings.bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number as i32)
                        .content_length(length as i64)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| self.classify(e))?;
                    Ok(CompletedPart::builder()
                        .part_number(number as i32)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .build())
                })
                .await
            })
            .buffered(self.settings.concurrency)
            .try_collect()
            .await;
        let completed = match result {
            Ok(parts) => parts,
            Err(e) => {
                // Best effort: a device keeps the parts of an abandoned upload otherwise.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.settings.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .send()
                    .await;
                return Err(e);
            }
        };
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(completed))
            .build();
        self.retrying(
            &format!("completing the upload of {key}"),
            cancel,
            || async {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.settings.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(completed.clone())
                    .send()
                    .await
                    .map_err(|e| self.classify(e))?;
                Ok(())
            },
        )
        .await
    }

    /// Upload bytes held in memory (manifests, the probe).
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        cancel: &CancelSwitch,
    ) -> Result<(), S3Error> {
        let bytes = bytes::Bytes::from(bytes);
        self.retrying(&format!("uploading {key}"), cancel, || async {
            self.client
                .put_object()
                .bucket(&self.settings.bucket)
                .key(key)
                .set_server_side_encryption(self.encryption())
                .set_ssekms_key_id(self.settings.kms_key_id.clone())
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await
                .map_err(|e| self.classify(e))?;
            Ok(())
        })
        .await
    }

    /// Open an object for reading; the body streams.
    pub async fn get(&self, key: &str, cancel: &CancelSwitch) -> Result<ByteStream, S3Error> {
        self.retrying(&format!("reading {key}"), cancel, || async {
            let out = self
                .client
                .get_object()
                .bucket(&self.settings.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| self.classify(e))?;
            Ok(out.body)
        })
        .await
    }

    /// Delete objects one by one (DeleteObjects needs Content-MD5 on some devices).
    pub async fn delete(&self, keys: &[String], cancel: &CancelSwitch) -> Result<(), S3Error> {
        for key in keys {
            self.retrying(&format!("deleting {key}"), cancel, || async {
                self.client
                    .delete_object()
                    .bucket(&self.settings.bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| self.classify(e))?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Write, read back and delete a small object under the task's prefix: proves the
    /// endpoint answers, the credentials are accepted and the bucket takes writes.
    pub async fn probe(&self, task: &str, attempts: u32) -> Result<String, S3Error> {
        let probe = S3Target {
            client: self.client.clone(),
            settings: TargetSettings {
                attempts,
                ..self.settings.clone()
            },
        };
        let cancel = CancelSwitch::default();
        let key = object_key(
            &self.settings.prefix,
            task,
            ".dbhaul-probe",
            &format!("{}-{}", std::process::id(), fastrand::u64(..)),
        );
        let body = format!("dbhaul probe {key}\n").into_bytes();
        probe.put_bytes(&key, body.clone(), &cancel).await?;
        let read = probe.get(&key, &cancel).await?;
        let read = read
            .collect()
            .await
            .map_err(|e| S3Error::Fatal(format!("reading the probe object back: {e}")))?
            .into_bytes();
        probe.delete(std::slice::from_ref(&key), &cancel).await?;
        if read.as_ref() != body.as_slice() {
            return Err(S3Error::Fatal(format!(
                "the probe object came back different ({} bytes written, {} read): the \
                 endpoint alters uploads; set target.checksum = \"when_required\"",
                body.len(),
                read.len()
            )));
        }
        Ok(format!("{}: write, read back, delete", self.where_()))
    }

    /// Run `op` until it succeeds, fails for good, or has been tried `attempts` times.
    pub async fn retrying<T, F, Fut>(
        &self,
        what: &str,
        cancel: &CancelSwitch,
        mut op: F,
    ) -> Result<T, S3Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let attempts = self.settings.attempts.max(1);
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=attempts {
            let outcome = tokio::select! {
                outcome = op() => outcome,
                () = cancel.cancelled() => return Err(S3Error::Cancelled),
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Attempt::Fatal(message)) => {
                    return Err(S3Error::Fatal(format!("{what}: {message}")));
                }
                Err(Attempt::Transient(message)) if attempt == attempts => {
                    return Err(S3Error::GaveUp(format!(
                        "{what}: {message} (gave up after {attempts} tries; raise \
                         target.attempts to wait longer)"
                    )));
                }
                Err(Attempt::Transient(message)) => {
                    let wait = backoff.mul_f64(fastrand::f64());
                    crate::telemetry::metrics::retry("s3");
                    tracing::warn!(
                        "{what}: {message}; try {attempt} of {attempts}, next in {:.1} s",
                        wait.as_secs_f64()
                    );
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Err(S3Error::Cancelled),
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    fn classify<E>(&self, error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Attempt
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(&self.where_(), &self.settings, error)
    }
}

/// `<prefix>/<task>/<subtask id>/<file>`, without a leading `/` when the prefix is empty.
pub fn object_key(prefix: &str, task: &str, subtask_id: &str, file: &str) -> String {
    if prefix.is_empty() {
        format!("{task}/{subtask_id}/{file}")
    } else {
        format!("{prefix}/{task}/{subtask_id}/{file}")
    }
}

async fn file_body(path: &Path, offset: u64, length: u64) -> Result<ByteStream, Attempt> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(length))
        .build()
        .await
        .map_err(|e| Attempt::Fatal(format!("cannot read {}: {e}", path.display())))
}

/// The HTTP client when the defaults will not do: a device's own certificate to trust
/// (`target.ca_bundle`, besides the system's roots) or a proxy (`target.proxy`).
fn http_client(
    settings: &TargetSettings,
) -> Result<Option<aws_sdk_s3::config::SharedHttpClient>, S3Error> {
    use aws_smithy_http_client::Connector;
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    use aws_smithy_runtime_api::client::http::{SharedHttpConnector, http_client_fn};
    if settings.ca_bundle.is_none() && settings.proxy.is_none() {
        return Ok(None);
    }
    let mut trust = TrustStore::default();
    if let Some(ca) = &settings.ca_bundle {
        let pem = std::fs::read(ca).map_err(|e| {
            S3Error::Fatal(format!(
                "target.ca_bundle: cannot read {}: {e}",
                ca.display()
            ))
        })?;
        trust = trust.with_pem_certificate(pem);
    }
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| {
            S3Error::Fatal(format!(
                "target.ca_bundle: {} is not a PEM certificate: {e}",
                settings
                    .ca_bundle
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
            ))
        })?;
    let proxy = match &settings.proxy {
        Some(url) => ProxyConfig::all(url.as_str())
            .map_err(|e| S3Error::Fatal(format!("target.proxy = \"{url}\": {e}")))?,
        None => ProxyConfig::disabled(),
    };
    // The SDK asks for a connector per request: one per distinct settings is kept, so
    // connections (and TLS sessions) are reused as the SDK's own client reuses them.
    let built: std::sync::Mutex<std::collections::HashMap<String, SharedHttpConnector>> =
        Default::default();
    Ok(Some(http_client_fn(
        move |connector_settings, components| {
            let key = format!("{connector_settings:?}");
            let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
            built
                .entry(key)
                .or_insert_with(|| {
                    let mut builder = Connector::builder();
                    builder.set_connector_settings(Some(connector_settings.clone()));
                    builder.set_sleep_impl(components.sleep_impl());
                    SharedHttpConnector::new(
                        builder
                            .proxy_config(proxy.clone())
                            .tls_provider(tls::Provider::Rustls(
                                tls::rustls_provider::CryptoMode::AwsLc,
                            ))
                            .tls_context(context.clone())
                            .build(),
                    )
                })
                .clone()
        },
    )))
}

fn classify<E>(
    where_: &str,
    settings: &TargetSettings,
    error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Attempt
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = error_chain(&error);
    match &error {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = error.code().unwrap_or("").to_string();
            let message = error.message().unwrap_or("").to_string();
            match (code.as_str(), status) {
                ("NoSuchBucket", _) | ("", 404) => Attempt::Fatal(format!(
                    "{where_} does not exist; create it, or fix target.url"
                )),
                (
                    "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken"
                    | "InvalidClientTokenId",
                    _,
                ) => Attempt::Fatal(format!(
                    "{where_} refused the credentials ({code}: {message}); check the access \
                     key and secret in the environment (AWS_ACCESS_KEY_ID, \
                     AWS_SECRET_ACCESS_KEY) or in the profile{}",
                    settings
                        .profile
                        .as_ref()
                        .map(|p| format!(" `{p}` (target.profile)"))
                        .unwrap_or_default()
                )),
                ("AccessDenied" | "AllBucketPermissionsDenied", _) | ("", 403) => {
                    Attempt::Fatal(format!(
                        "{where_} denied access ({code} {message}); the credentials need \
                         s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket on it"
                    ))
                }
                ("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable", _) => {
                    Attempt::Transient(format!("{where_} answered {status} {code}"))
                }
                (_, 429 | 500..) => {
                    Attempt::Transient(format!("{where_} answered {status} {code}"))
                }
                _ => Attempt::Fatal(format!(
                    "{where_} answered {status} {code} {message} ({detail})"
                )),
            }
        }
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            Attempt::Transient(match &settings.proxy {
                Some(proxy) => format!(
                    "cannot reach {} through the proxy {proxy} ({detail}); check that the \
                     proxy runs and lets the endpoint through (target.proxy)",
                    settings.endpoint.as_deref().unwrap_or("S3")
                ),
                None => format!(
                    "cannot reach {} ({detail}); check target.endpoint and the network",
                    settings.endpoint.as_deref().unwrap_or("S3")
                ),
            })
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Attempt::Transient(format!("{where_}: no complete answer ({detail})"))
        }
        SdkError::DispatchFailure(_)
            if detail.contains("credentials") || detail.contains("identity") =>
        {
            Attempt::Fatal(format!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 target.profile to a profile of ~/.aws/credentials ({detail})"
            ))
        }
        _ => Attempt::Fatal(format!("{where_}: {detail}")),
    }
}

use crate::telemetry::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_become_stage_failures_that_keep_their_words() {
        let cases = [
            (
                S3Error::Fatal("no bucket".into()),
                StageFailure::Fatal("no bucket".into()),
            ),
            (
                S3Error::GaveUp("gave up".into()),
                StageFailure::Fatal("gave up".into()),
            ),
            (S3Error::Cancelled, StageFailure::Stopped),
        ];
        for (error, failure) in cases {
            assert_eq!(StageFailure::from(error), failure);
        }
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        assert_eq!(
            object_key(
                "exports/2026",
                "erp",
                "public.orders/part-003",
                "00000001.csv.gz"
            ),
            "exports/2026/erp/public.orders/part-003/00000001.csv.gz"
        );
        assert_eq!(
            object_key("", "erp", "main.t", "manifest.json"),
            "erp/main.t/manifest.json"
        );
    }
}
