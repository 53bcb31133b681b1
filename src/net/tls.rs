//! Certificate helpers every daemon side needs: fingerprints as `openssl` prints and users
//! paste them, and the self-signed certificates an agent and a controller make for
//! themselves. The pinning verifier and the servers' configurations are `api::tls`'s.

use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

/// The SHA-256 fingerprint of a DER certificate: 32 upper-case hex bytes joined by `:`, as
/// `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Read a fingerprint as users paste it: with or without colons, any case, with or without a
/// `SHA256:` or `sha256=` prefix.
pub fn parse_fingerprint(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let lower = trimmed.to_ascii_lowercase();
    let body = lower
        .strip_prefix("sha256:")
        .or_else(|| lower.strip_prefix("sha256="))
        .or_else(|| lower.strip_prefix("sha256 fingerprint="))
        .unwrap_or(&lower);
    let hex_digits: String = body.chars().filter(|c| *c != ':' && *c != ' ').collect();
    let bytes = hex::decode(&hex_digits)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            format!(
                "`{trimmed}` is not a SHA-256 fingerprint: expected 32 hex bytes such as \
             `3F:A1:...` (64 hex digits), as `dbhaul agent configure` prints it"
            )
        })?;
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// The fingerprint of the first certificate of a PEM file.
pub fn fingerprint_of_pem(path: &Path) -> Result<String, String> {
    let cert = CertificateDer::from_pem_file(path)
        .map_err(|e| format!("cannot read the certificate {}: {e}", path.display()))?;
    Ok(fingerprint(&cert))
}

/// A self-signed certificate and key for an agent, as PEM: valid for `hosts` (names or IP
/// addresses) and `localhost`.
pub fn self_signed(hosts: &[String]) -> Result<(String, String), String> {
    let mut names: Vec<String> = hosts.to_vec();
    for default in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == default) {
            names.push(default.to_string());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot make a certificate: {e}"))?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_as_users_paste_them() {
        let canonical = (0..32u8)
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let plain = canonical.replace(':', "").to_lowercase();
        for raw in [
            canonical.clone(),
            plain.clone(),
            format!("SHA256:{plain}"),
            format!("sha256={canonical}"),
            format!("  {canonical}\n"),
        ] {
            assert_eq!(
                parse_fingerprint(&raw).as_deref(),
                Ok(canonical.as_str()),
                "{raw}"
            );
        }
        for bad in ["", "AB:CD", &plain[..62], &format!("{plain}00"), "zz"] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }
}
