//! TLS for the agent's API. The agent serves a self-signed certificate made at configure
//! time; the controller pins its SHA-256 fingerprint at registration and from then on
//! accepts that certificate and no other. The pinning verifier still checks the handshake
//! signatures (a verifier that only compares fingerprints would accept a replayed
//! certificate): whoever answers must hold the pinned certificate's key.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use crate::net::tls::{fingerprint, fingerprint_of_pem, parse_fingerprint, self_signed};

/// A daemon's server configuration from its certificate and key files.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(super::crypto_provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private))
        .map_err(|e| {
            format!(
                "the certificate {} and the key {} do not make a TLS server: {e}",
                cert.display(),
                key.display()
            )
        })
}

/// Accepts exactly one certificate, by fingerprint — or, while a registration is being
/// confirmed (`expected` empty), any certificate, recording the fingerprint it saw.
#[derive(Debug)]
pub struct PinnedVerifier {
    expected: Option<String>,
    /// Who presents the certificate and where its pin came from, for the refusal.
    peer: &'static str,
    pinned_by: &'static str,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedVerifier {
    pub fn new(expected: Option<String>) -> (PinnedVerifier, Arc<Mutex<Option<String>>>) {
        PinnedVerifier::for_peer(expected, "agent", "at registration")
    }

    /// A verifier whose refusal names `peer` ("controller") and where the pin came from.
    pub fn for_peer(
        expected: Option<String>,
        peer: &'static str,
        pinned_by: &'static str,
    ) -> (PinnedVerifier, Arc<Mutex<Option<String>>>) {
        let seen = Arc::new(Mutex::new(None));
        (
            PinnedVerifier {
                expected,
                peer,
                pinned_by,
                seen: seen.clone(),
                provider: super::crypto_provider(),
            },
            seen,
        )
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen.clone());
        }
        match &self.expected {
            Some(expected) if *expected != seen => Err(rustls::Error::General(format!(
                "the {}'s certificate changed: its fingerprint is {seen}, but {expected} \
                 was pinned {}",
                self.peer, self.pinned_by
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that pins `expected` (or records what it sees when `None`).
pub fn pinned_client_config(
    expected: Option<String>,
) -> (rustls::ClientConfig, Arc<Mutex<Option<String>>>) {
    pinned_client_config_for(PinnedVerifier::new(expected))
}

/// A client configuration around a verifier made with [`PinnedVerifier::for_peer`].
pub fn pinned_client_config_for(
    (verifier, seen): (PinnedVerifier, Arc<Mutex<Option<String>>>),
) -> (rustls::ClientConfig, Arc<Mutex<Option<String>>>) {
    let config = rustls::ClientConfig::builder_with_provider(super::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    (config, seen)
}

/// A client configuration that trusts the certificates of a PEM file as roots: an
/// operator's own CA (or the server's certificate itself), checked with the host name.
pub fn trusting_client_config(ca: &Path) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", ca.display()))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{} holds no usable certificate", ca.display()));
    }
    client_config_with_roots(roots)
}

/// A client configuration that trusts the system's certificate authorities.
pub fn system_roots_client_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    client_config_with_roots(roots)
}

fn client_config_with_roots(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    Ok(
        rustls::ClientConfig::builder_with_provider(super::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot make a TLS client: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// The certificate and key in `cert` and `key`, made self-signed for `hosts` when neither
/// exists yet (the key 0600); the certificate's fingerprint.
pub fn ensure_self_signed(cert: &Path, key: &Path, hosts: &[String]) -> Result<String, String> {
    if !cert.exists() && !key.exists() {
        let (cert_pem, key_pem) = self_signed(hosts)?;
        crate::config::files::write_private(key, key_pem.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
        crate::config::files::write_private(cert, cert_pem.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    }
    fingerprint_of_pem(cert)
}
