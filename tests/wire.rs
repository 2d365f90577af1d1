//! Hostile WebSocket servers (issue 14, items 2, 6 and 7's `crossed_run`):
//! a raw TCP server that upgrades like any WebSocket server, sends the ready
//! frame, then breaks the protocol one way. Each broken socket used to be
//! filed as a network drop (`closes.1006`, `runs.failed.closed`, no reason
//! anywhere); now it is named (`connections.protocol_error.<class>`), its
//! reason is in the failures and its run fails as `protocol_error`. A frame
//! flood used to grow memory without limit (+220 MB/s); now the socket's
//! frames over the limit are dropped at the reader and the socket closed.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// What the server does after the ready frame and the client's first bytes.
#[derive(Clone, Copy)]
enum Mode {
    /// A text frame header claiming 64 MiB (above tungstenite's 16 MiB).
    Frame64Mib,
    /// A header claiming 2^62 bytes.
    Length2Pow62,
    /// A text frame that is not UTF-8.
    InvalidUtf8,
    /// A text frame with RSV1 set (compressed, never negotiated).
    Rsv1,
    /// Tiny frames as fast as it can, from ready on, until `until`.
    Flood { until: Instant },
    /// An event of the client's run, sent `after` the run message (the
    /// client's await timed out by then).
    Late { after: Duration },
    /// An upgrade answer with a wrong `Sec-WebSocket-Accept`.
    BadAccept,
}

/// A server frame (unmasked) with this first byte and payload; the length
/// as written in `len` (`None`: the payload's).
fn frame(first: u8, payload: &[u8], len: Option<u64>) -> Vec<u8> {
    let n = len.unwrap_or(payload.len() as u64);
    let mut f = vec![first];
    if n < 126 {
        f.push(n as u8);
    } else if n <= u16::MAX as u64 {
        f.push(126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(127);
        f.extend_from_slice(&n.to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

fn text(t: &str) -> Vec<u8> {
    frame(0x81, t.as_bytes(), None)
}

/// Reads the upgrade request and answers 101 (echoing the first
/// subprotocol asked for).
async fn upgrade(sock: &mut TcpStream, bad_key: bool) -> Option<()> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&req).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let key = header("Sec-WebSocket-Key")?;
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        if bad_key {
            derive_accept_key(b"not the key")
        } else {
            derive_accept_key(key.as_bytes())
        }
    );
    if let Some(p) = header("Sec-WebSocket-Protocol") {
        let first = p.split(',').next().unwrap_or("").trim().to_string();
        resp.push_str(&format!("Sec-WebSocket-Protocol: {first}\r\n"));
    }
    resp.push_str("\r\n");
    sock.write_all(resp.as_bytes()).await.ok()?;
    sock.write_all(&text(r#"{"type":"connection_established"}"#))
        .await
        .ok()
}

/// Reads what the client sends until it closes (keeps the socket open).
async fn hold(sock: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn serve_one(mut sock: TcpStream, mode: Mode) -> Option<()> {
    upgrade(&mut sock, matches!(mode, Mode::BadAccept)).await?;
    if let Mode::Flood { until } = mode {
        let batch: Vec<u8> = (0..2000).flat_map(|_| text("x")).collect();
        while Instant::now() < until {
            sock.write_all(&batch).await.ok()?;
        }
        hold(&mut sock).await;
        return Some(());
    }
    // The client's first frame (its run message).
    let mut buf = [0u8; 4096];
    let n = sock.read(&mut buf).await.ok()?;
    if n == 0 {
        return None;
    }
    let run_id = client_text(&buf[..n])
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["payload"]["run_id"].as_str().map(str::to_string))
        .unwrap_or_default();
    let bad = match mode {
        Mode::Frame64Mib => frame(0x81, b"{\"type\":", Some(64 << 20)),
        Mode::Length2Pow62 => frame(0x81, b"", Some(1 << 62)),
        Mode::InvalidUtf8 => frame(0x81, &[0xff, 0xfe, 0xfd], None),
        Mode::Rsv1 => frame(0xC1, b"{}", None),
        Mode::Late { after } => {
            tokio::time::sleep(after).await;
            // An event of the run the client started.
            text(&format!(
                r#"{{"type":"agent_started","run_id":"{run_id}"}}"#
            ))
        }
        Mode::Flood { .. } | Mode::BadAccept => unreachable!(),
    };
    sock.write_all(&bad).await.ok()?;
    hold(&mut sock).await;
    Some(())
}

/// The text of a client's (masked) frame at the start of `b`.
fn client_text(b: &[u8]) -> Option<String> {
    let (len, at) = match b.get(1)? & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => return None,
        n => (n as usize, 2),
    };
    let mask = b.get(at..at + 4)?;
    let body = b.get(at + 4..at + 4 + len)?;
    let plain: Vec<u8> = body
        .iter()
        .enumerate()
        .map(|(i, x)| x ^ mask[i % 4])
        .collect();
    String::from_utf8(plain).ok()
}

async fn hostile(mode: Mode) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_one(sock, mode));
        }
    });
    at
}

fn one_run_scenario(run_id: &str, await_timeout: &str, tail: &str) -> String {
    format!(
        r#"
version = 1
name = "wire"
seed = 7
[target]
allow = ["127.0.0.1"]
connect_timeout = "2s"
[workload]
users = 1
iterations = 1
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "hi", run_id = "{run_id}" }} }}
[[journey]]
step = "await"
timeout = "{await_timeout}"
{tail}
"#
    )
}

/// One user, one run against a server in `mode`.
async fn broken_run(mode: Mode, tag: &str) -> chatload::run::RunResult {
    let at = hostile(mode).await;
    let (_d, out) = out_dir(tag);
    let sc = parse(&one_run_scenario("{{run}}", "10s", ""));
    run(sc, Some(format!("ws://{at}/ws")), SECRET, out).await
}

/// The markdown report of a run.
fn report_md(r: &chatload::run::RunResult) -> String {
    let d = chatload::report::ReportData::from_snapshot(&r.snapshot);
    let mut md = Vec::new();
    chatload::report::markdown::render(&d, &mut md).unwrap();
    String::from_utf8(md).unwrap()
}

fn assert_named(r: &chatload::run::RunResult, class: &str) {
    let c = &r.snapshot.counters;
    assert_eq!(
        counter(r, &format!("connections.protocol_error.{class}")),
        1,
        "{c:#?}"
    );
    assert_eq!(counter(r, "runs.failed.protocol_error"), 1, "{c:#?}");
    assert_eq!(counter(r, "runs.failed.closed"), 0, "{c:#?}");
    assert_eq!(counter(r, "closes.1006"), 0, "{c:#?}");
    let report = report_md(r);
    assert!(report.contains("Protocol errors"), "{report}");
    assert!(report.contains(class), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_frame_is_frame_too_large() {
    let _g = goose_lock().await;
    let r = broken_run(Mode::Frame64Mib, "64mib").await;
    assert_named(&r, "frame_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_claiming_2_pow_62_bytes_is_frame_too_large() {
    let _g = goose_lock().await;
    let r = broken_run(Mode::Length2Pow62, "2p62").await;
    assert_named(&r, "frame_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_frame_is_named() {
    let _g = goose_lock().await;
    let r = broken_run(Mode::InvalidUtf8, "utf8").await;
    assert_named(&r, "invalid_utf8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrequested_compressed_frame_is_named() {
    let _g = goose_lock().await;
    let r = broken_run(Mode::Rsv1, "rsv1").await;
    assert_named(&r, "reserved_bits");
    assert!(report_md(&r).contains("compress"), "{}", report_md(&r));
}

/// An upgrade answered with a wrong accept key was `connections.failed.protocol`
/// with the reason only in the failures; now the class is counted too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_accept_key_is_named() {
    let _g = goose_lock().await;
    let at = hostile(Mode::BadAccept).await;
    let (_d, out) = out_dir("accept");
    let sc = parse(&one_run_scenario("{{run}}", "10s", ""));
    let r = run(sc, Some(format!("ws://{at}/ws")), SECRET, out).await;
    let c = &r.snapshot.counters;
    let failed = counter(&r, "connections.failed.protocol");
    assert!(failed >= 1, "{c:#?}");
    assert_eq!(
        counter(&r, "connections.protocol_error.bad_accept_key"),
        failed,
        "{c:#?}"
    );
    assert!(report_md(&r).contains("bad_accept_key"));
}

/// An event of a run whose await timed out arrived while no run was active:
/// it was classed `crossed_run` (with an empty run id in its message); it is
/// a `late_event` of that run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_timed_out_run_is_a_late_event() {
    let _g = goose_lock().await;
    // The await gives up after 300 ms; the event comes at 1 s (3x); the
    // think reads the socket for 3 s after that.
    let at = hostile(Mode::Late {
        after: Duration::from_secs(1),
    })
    .await;
    let (_d, out) = out_dir("late");
    let sc = parse(&one_run_scenario(
        "{{run}}",
        "300ms",
        "[[journey]]\nstep = \"think\"\nduration = \"4s\"\n",
    ));
    let r = run(sc, Some(format!("ws://{at}/ws")), SECRET, out).await;
    let c = &r.snapshot.counters;
    assert_eq!(counter(&r, "runs.failed.no_response"), 1, "{c:#?}");
    assert_eq!(counter(&r, "violations.late_event"), 1, "{c:#?}");
    assert_eq!(counter(&r, "violations.crossed_run"), 0, "{c:#?}");
    let late = r.snapshot.samples.iter().find(|f| f.class == "late_event");
    let late = late.expect("a late_event sample");
    assert!(
        late.run_id.as_deref().is_some_and(|id| !id.is_empty()),
        "{late:?}"
    );
}

/// Peak RSS (VmHWM, KiB) of a running process: the largest seen by polling
/// its status until it exits.
fn watch_peak_rss(child: &mut std::process::Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if child.try_wait().unwrap().is_some() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// 5 sockets against a server that sends tiny frames as fast as it can for
/// 15 s: RSS grew +220 MB/s (to 3.1 GB in 17 s). Now the run's peak RSS
/// stays under 128 MiB, the flood is counted and in the report, and the run
/// fails (`violations rate == 0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flood_stays_bounded_and_fails_the_run() {
    let at = hostile(Mode::Flood {
        until: Instant::now() + Duration::from_secs(15),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.toml");
    let text = "version = 1\nname = \"flood\"\nseed = 7\n[target]\nallow = [\"127.0.0.1\"]\n[workload]\nusers = 5\nduration = \"15s\"\n[[journey]]\nstep = \"connect\"\n[[journey]]\nstep = \"send\"\nmessage = { type = \"start_agent\", payload = { user_request = \"hi\", run_id = \"{{run}}\" } }\n[[journey]]\nstep = \"await\"\ntimeout = \"20s\"\n";
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("out");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["run", path.to_str().unwrap(), "--target"])
        .arg(format!("ws://{at}/ws"))
        .arg("--out")
        .arg(&out)
        .arg("-q")
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chatload runs");
    let peak_kib = tokio::task::spawn_blocking(move || {
        let peak = watch_peak_rss(&mut child);
        (peak, child.wait().unwrap())
    })
    .await
    .unwrap();
    let (peak_kib, status) = peak_kib;
    eprintln!(
        "peak RSS under a 15 s flood from 5 sockets: {} MiB",
        peak_kib / 1024
    );
    assert!(peak_kib < 128 * 1024, "peak RSS {peak_kib} KiB");
    assert_ne!(status.code(), Some(0), "a flood fails the run");
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("snapshot.json")).unwrap()).unwrap();
    let c = &snap["counters"];
    eprintln!(
        "frames.flood {}, connections.protocol_error.flood {}, frames.unparseable {}",
        c["frames.flood"], c["connections.protocol_error.flood"], c["frames.unparseable"]
    );
    assert!(c["frames.flood"].as_u64().unwrap_or(0) > 0, "{c:#}");
    assert!(
        c["connections.protocol_error.flood"].as_u64().unwrap_or(0) >= 5,
        "{c:#}"
    );
    assert!(c["violations.flood"].as_u64().unwrap_or(0) >= 5, "{c:#}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("flood"), "{report}");
}
