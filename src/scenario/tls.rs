//! The TLS keys of `[target]`: `ca_file` (PEM CA certificates added to the
//! trust roots, read through the input rules of `input.rs` while the
//! scenario loads, before any socket opens), `tls_server_name` (the name
//! presented and verified instead of the URL's host) and `insecure` (no
//! certificate verification, never silent: every report prints it).
//!
//! Imports: the `doc` readers, `input` and `model`.

use std::path::Path;

use super::doc::Obj;
use super::model::TargetTls;

/// Reads the TLS keys of the `[target]` table `tbl` into `t`.
pub(super) fn read_tls(tbl: &Obj<'_>, base: &Path, max_bytes: u64, t: &mut TargetTls) {
    if let Some(n) = tbl.get("ca_file") {
        if let Some(f) = n.as_str() {
            match read_ca(&base.join(f), max_bytes) {
                Ok(pem) => {
                    t.ca_file = Some(f.to_string());
                    t.ca_pem = Some(std::sync::Arc::new(pem));
                }
                Err(e) => n.error(e),
            }
        }
    }
    if let Some(n) = tbl.get("tls_server_name") {
        if let Some(name) = n.as_str() {
            match check_server_name(name) {
                Ok(()) => t.server_name = Some(name.to_ascii_lowercase()),
                Err(e) => n.error(e),
            }
        }
    }
    if let Some(b) = tbl.bool("insecure") {
        t.insecure = b;
    }
}

/// The PEM text of a CA file: a regular file within the input size cap,
/// holding at least one certificate that parses.
fn read_ca(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let text = super::input::read_input(path, "CA file", max_bytes, false)?;
    let shown = path.display();
    let certs = reqwest::Certificate::from_pem_bundle(text.as_bytes())
        .map_err(|e| format!("the CA file {shown} is not PEM certificates: {e}"))?;
    if certs.is_empty() || !text.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!(
            "the CA file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(text.into_bytes())
}

/// A DNS host name (what a certificate names): letters, digits, `-` and
/// `.`, no port, no scheme, no IP address.
fn check_server_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let labels_ok = name
        .split('.')
        .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    if name.is_empty() || name.len() > 253 || !ok_chars || !labels_ok {
        return Err(format!(
            "`{name}` is not a DNS host name (letters, digits, `-` and `.`; no port or scheme)"
        ));
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{name}` is an IP address: tls_server_name is a host name the certificate names"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_host_names() {
        assert!(check_server_name("staging.test").is_ok());
        assert!(check_server_name("a-b.example.com").is_ok());
        for bad in [
            "",
            "staging.test:443",
            "https://x",
            "a..b",
            "-a.b",
            "10.0.0.1",
            "a b",
        ] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = read_ca(&p, 1 << 20).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let e = read_ca(dir.path(), 1 << 20).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::write(&p, "x".repeat(100)).unwrap();
        let e = read_ca(&p, 10).unwrap_err();
        assert!(e.contains("max_input_bytes"), "{e}");
    }
}
