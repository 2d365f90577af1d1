//! TLS for staging targets: one set of settings (`target.ca_file`,
//! `target.tls_server_name`, `target.insecure`) for both TLS stacks chatload
//! already has: native-tls under the WebSocket client (tokio-tungstenite)
//! and reqwest's default TLS under the login, ticket, REST and `http` calls.
//! Also names a TLS failure's kind (`unknown_issuer`, `name_mismatch`, ...).
//!
//! Imports no other engine file.

use std::net::ToSocketAddrs as _;

use tokio_tungstenite::Connector;

use crate::scenario::TargetTls;

/// What a socket needs to open a `wss://` connection the scenario's way.
#[derive(Clone, Default)]
pub struct WsTls {
    /// `None`: tokio-tungstenite's default connector (system roots).
    pub(super) connector: Option<Connector>,
    /// The target URL's host, whose calls present [`WsTls::server_name`].
    pub(super) target_host: String,
    /// `target.tls_server_name`.
    pub(super) server_name: Option<String>,
}

impl WsTls {
    /// The settings of `tls` for the target `target_url`.
    pub fn new(tls: &TargetTls, target_url: &str) -> Result<WsTls, String> {
        let connector = if tls.ca_pem.is_some() || tls.insecure {
            let mut b = native_tls::TlsConnector::builder();
            if let Some(pem) = &tls.ca_pem {
                for cert in pem_blocks(pem) {
                    let c = native_tls::Certificate::from_pem(cert.as_bytes())
                        .map_err(|e| tls_error(format!("a certificate of target.ca_file: {e}")))?;
                    b.add_root_certificate(c);
                }
            }
            if tls.insecure {
                b.danger_accept_invalid_certs(true);
            }
            let c = b.build().map_err(|e| tls_error(e.to_string()))?;
            Some(Connector::NativeTls(c))
        } else {
            None
        };
        Ok(WsTls {
            connector,
            target_host: crate::scenario::target::host_of(target_url),
            server_name: tls.server_name.clone(),
        })
    }

    /// `url` with the target's host replaced by `target.tls_server_name`
    /// (other hosts unchanged): what a request presents as SNI and `Host`.
    pub fn present(&self, url: &str) -> String {
        let Some(name) = &self.server_name else {
            return url.to_string();
        };
        match url::Url::parse(url) {
            Ok(mut u) if u.host_str() == Some(self.target_host.as_str()) => {
                if u.set_host(Some(name)).is_ok() {
                    u.to_string()
                } else {
                    url.to_string()
                }
            }
            _ => url.to_string(),
        }
    }
}

fn tls_error(why: String) -> String {
    format!("cannot set up TLS: {why}")
}

/// The PEM certificate blocks of a bundle (native-tls reads one at a time).
fn pem_blocks(pem: &[u8]) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        out.push(rest[start..stop].to_string());
        rest = &rest[stop..];
    }
    out
}

/// Applies the TLS settings to the shared HTTP client: the CA file's
/// certificates added to the roots, verification off with `insecure`, and
/// with `tls_server_name` that name resolved to the target host's
/// addresses (calls to the target's host are sent to the name, see
/// [`WsTls::present`], so SNI and `Host` carry it).
pub fn http(
    mut b: reqwest::ClientBuilder,
    tls: &TargetTls,
    target_url: &str,
) -> Result<reqwest::ClientBuilder, String> {
    if let Some(pem) = &tls.ca_pem {
        for c in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| tls_error(format!("target.ca_file: {e}")))?
        {
            b = b.add_root_certificate(c);
        }
    }
    if tls.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(name) = &tls.server_name {
        let u = url::Url::parse(target_url).map_err(|e| tls_error(e.to_string()))?;
        let host = u.host_str().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<_> = (host, u.port_or_known_default().unwrap_or(443))
            .to_socket_addrs()
            .map_err(|e| tls_error(format!("cannot resolve {host}: {e}")))?
            .collect();
        b = b.resolve_to_addrs(name, &addrs);
    }
    Ok(b)
}

/// The kind of a TLS failure from its error text (OpenSSL's under
/// native-tls, rustls's under reqwest): `unknown_issuer` (the chain does not
/// end at a trusted root: a staging CA needs `target.ca_file`),
/// `name_mismatch` (the certificate does not name the host: see
/// `target.tls_server_name`), `expired`, or `handshake` (anything else).
pub fn kind(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));
    if has(&[
        "hostname mismatch",
        "ip address mismatch",
        "notvalidforname",
        "not valid for name",
    ]) {
        "name_mismatch"
    } else if has(&["certificate has expired", "expired"]) {
        "expired"
    } else if has(&[
        "unable to get local issuer",
        "self-signed",
        "self signed",
        "unknownissuer",
        "unknown ca",
        "unable to get issuer",
    ]) {
        "unknown_issuer"
    } else {
        "handshake"
    }
}

/// For an HTTP call's error whose causes name a certificate or TLS: its
/// reason (`tls_<kind>: ...`); `None` for other errors.
pub fn http_failure(e: &reqwest::Error) -> Option<String> {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let t = text.to_ascii_lowercase();
    (t.contains("certificate") || t.contains("tls") || t.contains("handshake"))
        .then(|| reason(&text))
}

/// A TLS failure's reason as reports show it: `tls_<kind>: <detail>`.
pub fn reason(detail: &str) -> String {
    format!("tls_{}: {detail}", kind(detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_are_named() {
        let openssl = "error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed:../ssl/statem/statem_clnt.c:1889: (unable to get local issuer certificate)";
        assert_eq!(kind(openssl), "unknown_issuer");
        assert_eq!(
            kind("certificate verify failed: (Hostname mismatch)"),
            "name_mismatch"
        );
        assert_eq!(
            kind("invalid peer certificate: UnknownIssuer"),
            "unknown_issuer"
        );
        assert_eq!(
            kind("invalid peer certificate: NotValidForName"),
            "name_mismatch"
        );
        let rustls = "invalid peer certificate: certificate not valid for name \"127.0.0.1\"";
        assert_eq!(kind(rustls), "name_mismatch");
        assert_eq!(kind("(certificate has expired)"), "expired");
        assert_eq!(kind("unexpected eof"), "handshake");
        assert!(reason(openssl).starts_with("tls_unknown_issuer: "));
    }

    #[test]
    fn only_the_targets_host_presents_the_server_name() {
        let t = WsTls {
            connector: None,
            target_host: "127.0.0.1".into(),
            server_name: Some("staging.test".into()),
        };
        assert_eq!(
            t.present("https://127.0.0.1:8443/api/x?a=1"),
            "https://staging.test:8443/api/x?a=1"
        );
        assert_eq!(
            t.present("https://auth.example/x"),
            "https://auth.example/x"
        );
        let none = WsTls::default();
        assert_eq!(none.present("wss://127.0.0.1/ws"), "wss://127.0.0.1/ws");
    }

    #[test]
    fn a_bundle_splits_into_its_certificates() {
        let one = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        let bundle = format!("# a\n{one}\n\n{one}\n");
        assert_eq!(pem_blocks(bundle.as_bytes()), vec![one, one]);
    }
}
