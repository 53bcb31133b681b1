//! PostgreSQL connections made outside ODBC (the native COPY reads of a PostgreSQL source,
//! the warehouse): URLs as libpq reads them, and TLS as libpq's `sslmode` asks.

use std::str::FromStr;
use std::sync::Arc;

/// Parse a warehouse URL as libpq reads it. tokio-postgres knows `sslmode` disable, prefer
/// and require; libpq's `verify-ca` and `verify-full` become `require` plus certificate
/// verification (the returned flag). Like libpq, `prefer` and `require` encrypt without
/// checking the server's certificate.
pub fn parse_url(raw: &str) -> Result<(tokio_postgres::Config, bool), String> {
    let mut verify = false;
    let mut text = raw.to_string();
    if let Ok(mut url) = url::Url::parse(raw) {
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        if pairs
            .iter()
            .any(|(k, v)| k == "sslmode" && v.starts_with("verify-"))
        {
            verify = true;
            let rewritten: Vec<(String, String)> = pairs
                .into_iter()
                .map(|(k, v)| {
                    if k == "sslmode" {
                        (k, "require".to_string())
                    } else {
                        (k, v)
                    }
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(rewritten);
            text = url.to_string();
        }
    }
    let config = tokio_postgres::Config::from_str(&text).map_err(|e| e.to_string())?;
    Ok((config, verify))
}

pub fn tls_connector(verify: bool) -> tokio_postgres_rustls::MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions");
    let config = if verify {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth()
    };
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// `sslmode=prefer|require`: any certificate is accepted, as libpq does, but the handshake
/// signatures are still verified, so the session is encrypted to whoever holds the key.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
