//! TLS for staging targets (issue 14): a `wss://` target signed by a
//! throwaway CA. Without `target.ca_file` the connect fails with a named TLS
//! reason; with it the run succeeds (the socket and the `https://` ticket
//! call both verify against it); with a certificate issued only for
//! `staging.test`, `target.tls_server_name = "staging.test"` reaches it at
//! 127.0.0.1 (SNI and the HTTP `Host` header carry the name); with
//! `target.insecure = true` it succeeds and every report says insecure.
//!
//! The TLS server is a small terminating proxy in front of the reference
//! server: native-tls accepts, records each connection's `Host` header and
//! pipes the bytes to the plain reference server.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chatload::auth::Secret;
use chatload::server::{self, Settings};
use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "tls-test-key";

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn`, signed by `issuer` (self-signed: a CA).
fn certificate(
    cn: &str,
    k: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    sans: &[&str],
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial()).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(k).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            let usage = KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build();
            b.append_extension(usage.unwrap()).unwrap();
            b.sign(k, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            let usage = KeyUsage::new().critical().digital_signature().build();
            b.append_extension(usage.unwrap()).unwrap();
            b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                .unwrap();
            let mut san = SubjectAlternativeName::new();
            for s in sans {
                if s.parse::<std::net::IpAddr>().is_ok() {
                    san.ip(s);
                } else {
                    san.dns(s);
                }
            }
            let ext = san.build(&b.x509v3_context(Some(ca), None)).unwrap();
            b.append_extension(ext).unwrap();
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

fn rand_serial() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A throwaway CA (its PEM) and a server identity it signed for `sans`.
struct Pki {
    ca_pem: Vec<u8>,
    ca: X509,
    ca_key: PKey<Private>,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = key();
        let ca = certificate("chatload test CA", &ca_key, None, &[]);
        Pki {
            ca_pem: ca.to_pem().unwrap(),
            ca,
            ca_key,
        }
    }

    fn identity(&self, sans: &[&str]) -> native_tls::Identity {
        let k = key();
        let cert = certificate(sans[0], &k, Some((&self.ca, &self.ca_key)), sans);
        native_tls::Identity::from_pkcs8(
            &cert.to_pem().unwrap(),
            &k.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap()
    }
}

/// A TLS listener on 127.0.0.1:0 in front of `upstream`; the `Host` header
/// of every connection's first request is recorded.
async fn tls_proxy(
    id: native_tls::Identity,
    upstream: SocketAddr,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let acceptor = tokio_native_tls::TlsAcceptor::from(native_tls::TlsAcceptor::new(id).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hosts = Arc::new(Mutex::new(Vec::new()));
    let seen = hosts.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                // A refused handshake (the client's verification) ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                if let Some(h) = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Host: ").or(l.strip_prefix("host: ")))
                {
                    seen.lock().unwrap().push(h.to_string());
                }
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                if up.write_all(&head).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    (addr, hosts)
}

/// How the token is presented: `Ticket` first makes the `https://` ticket
/// call (reqwest), then opens the socket (native-tls); `Header` only opens
/// the socket.
#[derive(Clone, Copy)]
enum Via {
    Ticket,
    Header,
}

/// One user, one agent run against `wss://127.0.0.1:<port>/ws`, with
/// `target_keys` in `[target]`.
async fn tls_run(
    proxy: SocketAddr,
    target_keys: &str,
    via: Via,
    tag: &str,
) -> (chatload::run::RunResult, tempfile::TempDir) {
    let present = match via {
        Via::Ticket => "ticket",
        Via::Header => "header",
    };
    let extra = format!(
        "[target]\nconnect_timeout = \"5s\"\nfail_fast = false\n{target_keys}\n[auth]\npresent = [\"{present}\"]\n"
    );
    let sc = parse(&iterations_scenario(1, 1, &extra));
    let (dir, out) = out_dir(tag);
    let r = run(sc, Some(format!("wss://{proxy}/ws")), SECRET, out).await;
    (r, dir)
}

async fn reference() -> server::RunningServer {
    server::spawn(
        Settings::new(Secret::new(SECRET)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn failure_reasons(r: &chatload::run::RunResult) -> Vec<String> {
    r.snapshot
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.stage, f.reason))
        .collect()
}

fn ca_file(dir: &tempfile::TempDir, pki: &Pki) -> String {
    let p = dir.path().join("staging-ca.pem");
    std::fs::write(&p, &pki.ca_pem).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_ca_is_trusted_only_when_given() {
    let _g = goose_lock().await;
    let srv = reference().await;
    let pki = Pki::new();
    let (proxy, hosts) = tls_proxy(pki.identity(&["127.0.0.1"]), srv.addr).await;

    // Not in the system's roots: neither the ticket call nor the socket
    // gets through, and the reason is named.
    for (via, stage) in [(Via::Ticket, "ticket"), (Via::Header, "connect")] {
        let (r, _d) = tls_run(proxy, "", via, "no-ca").await;
        assert_eq!(counter(&r, "runs.ok"), 0);
        let why = failure_reasons(&r);
        let named = format!("{stage}: tls: tls_unknown_issuer");
        assert!(why.iter().any(|w| w.starts_with(&named)), "{why:?}");
    }
    assert!(
        hosts.lock().unwrap().is_empty(),
        "nothing passed the TLS handshake"
    );

    // With the CA file: the ticket (reqwest) and the socket (native-tls).
    let keep = tempfile::tempdir().unwrap();
    let ca = ca_file(&keep, &pki);
    let (r, _d) = tls_run(proxy, &format!("ca_file = {ca:?}"), Via::Ticket, "ca").await;
    assert_eq!(counter(&r, "runs.ok"), 1, "{:?}", failure_reasons(&r));
    assert_eq!(counter(&r, "tickets.issued"), 1);
    assert!(!r.snapshot.target.insecure);
    assert!(!r.report.target.contains("INSECURE"), "{}", r.report.target);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_name_override_presents_and_verifies_that_name() {
    let _g = goose_lock().await;
    let srv = reference().await;
    let pki = Pki::new();
    // Issued for staging.test only, served at 127.0.0.1.
    let (proxy, hosts) = tls_proxy(pki.identity(&["staging.test"]), srv.addr).await;
    let keep = tempfile::tempdir().unwrap();
    let ca = ca_file(&keep, &pki);

    // The CA is trusted but the certificate does not name 127.0.0.1.
    for (via, stage) in [(Via::Ticket, "ticket"), (Via::Header, "connect")] {
        let (r, _d) = tls_run(proxy, &format!("ca_file = {ca:?}"), via, "mismatch").await;
        assert_eq!(counter(&r, "runs.ok"), 0);
        let why = failure_reasons(&r);
        let named = format!("{stage}: tls: tls_name_mismatch");
        assert!(why.iter().any(|w| w.starts_with(&named)), "{why:?}");
    }

    let keys = format!("ca_file = {ca:?}\ntls_server_name = \"staging.test\"");
    let (r, _d) = tls_run(proxy, &keys, Via::Ticket, "server-name").await;
    assert_eq!(counter(&r, "runs.ok"), 1, "{:?}", failure_reasons(&r));
    assert_eq!(counter(&r, "tickets.issued"), 1);
    let port = proxy.port();
    let seen = hosts.lock().unwrap().clone();
    // The ticket call and the upgrade both named staging.test.
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(
        seen.iter().all(|h| h == &format!("staging.test:{port}")),
        "{seen:?}"
    );
    assert_eq!(
        r.snapshot.target.tls_server_name.as_deref(),
        Some("staging.test")
    );
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_run_succeeds_and_every_report_says_so() {
    let _g = goose_lock().await;
    let srv = reference().await;
    let pki = Pki::new();
    let (proxy, _) = tls_proxy(pki.identity(&["127.0.0.1"]), srv.addr).await;
    let (r, _d) = tls_run(proxy, "insecure = true", Via::Ticket, "insecure").await;
    assert_eq!(counter(&r, "runs.ok"), 1, "{:?}", failure_reasons(&r));
    assert!(r.snapshot.target.insecure);
    let read = |f: &str| std::fs::read_to_string(r.out_dir.join(f)).unwrap();
    let snapshot: serde_json::Value = serde_json::from_str(&read("snapshot.json")).unwrap();
    assert_eq!(snapshot["target"]["insecure"], true);
    for f in ["report.md", "report.html"] {
        assert!(read(f).contains("INSECURE"), "{f} does not say insecure");
    }
    let junit = read("junit.xml");
    assert!(junit.contains("target.insecure"), "{junit}");
    assert!(junit.contains("TLS certificates verified"), "{junit}");
    // `validate` says so before the run.
    let sc = parse(&iterations_scenario(1, 1, "[target]\ninsecure = true\n"));
    let told = chatload::cli::validate::describe(&sc);
    assert!(told.contains("INSECURE"), "{told}");
    let mut console = Vec::new();
    chatload::report::console::render(&r.report, &mut console).unwrap();
    assert!(String::from_utf8(console).unwrap().contains("INSECURE"));
    srv.shutdown().await;
}
