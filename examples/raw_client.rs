//! A minimal raw WebSocket client doing chatload's default journey, the
//! baseline of issue 16's ratio harness (`bench/ratio.py`): what the journey
//! costs without a load tester's machinery.
//!
//! One tokio task per user; the same WebSocket settings as chatload (4 KiB
//! read buffer, no write buffer, TCP_NODELAY) and the same global allocator
//! (mimalloc), so CPU, memory and allocation counts compare like for like.
//! Per user: an HS256 JWT with the claims chatload mints by default, offered
//! as `Sec-WebSocket-Protocol: jwt.<token>` (chatload's default
//! presentation, which `chatload serve` accepts); wait for the
//! `connection_established` frame; then loop { send `start_agent`; read the
//! run's events up to `agent_completed`; check their order and fields;
//! record ttfe and ttc } until the duration ends.
//!
//!     CHATLOAD_JWT_SECRET=key cargo run --release --example raw_client -- \
//!         --url ws://127.0.0.1:8080/ws --users 50 --duration 30
//!     ... --idle --users 5000 --duration 20     # connect, become ready, hold idle
//!
//! Prints one JSON line on stdout.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::de::{IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Args {
    url: String,
    users: usize,
    duration: Duration,
    idle: bool,
    /// Connects in flight at once (idle mode's ramp).
    connects: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: "ws://127.0.0.1:8080/ws".into(),
        users: 50,
        duration: Duration::from_secs(30),
        idle: false,
        connects: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--url" => a.url = v(),
            "--users" => a.users = v().parse().expect("--users"),
            "--duration" => a.duration = Duration::from_secs_f64(v().parse().expect("--duration")),
            "--connects" => a.connects = v().parse().expect("--connects"),
            "--idle" => a.idle = true,
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

/// chatload's `ws_config` (src/engine/connect.rs).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(16 * 1024 * 1024))
}

/// The claims chatload mints by default (`auth::netra_claims` plus sub, iat,
/// exp, jti; 30 min lifetime).
fn mint(key: &jsonwebtoken::EncodingKey, user: &str, n: u64) -> String {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "netra-auth-service",
        "aud": "netra-platform",
        "token_type": "access",
        "email": format!("{user}@loadtest.chatload.invalid"),
        "sub": user,
        "iat": iat,
        "exp": iat + 30 * 60,
        "jti": format!("{user}-{n}"),
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, key).expect("sign")
}

async fn connect(url: &str, token: &str) -> Result<Ws, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    let proto = HeaderValue::from_str(&format!("jwt.{token}")).map_err(|e| e.to_string())?;
    req.headers_mut().insert("Sec-WebSocket-Protocol", proto);
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let stream = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        req,
        MaybeTlsStream::Plain(stream),
        Some(ws_config()),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// A numeric timestamp or an ISO string (the reference server's data
/// envelope sends ISO 8601).
struct Ts;
impl<'de> Deserialize<'de> for Ts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ts, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a numeric or ISO 8601 timestamp")
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ts, E> {
                Ok(Ts)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ts, E> {
                Ok(Ts)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ts, E> {
                Ok(Ts)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Ts, E> {
                let b = s.as_bytes();
                // YYYY-MM-DDTHH:MM:SS...
                if b.len() >= 19
                    && b[4] == b'-'
                    && b[7] == b'-'
                    && b[10] == b'T'
                    && b[..4].iter().all(u8::is_ascii_digit)
                {
                    Ok(Ts)
                } else {
                    Err(E::custom("not an ISO 8601 timestamp"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields an event may carry at its root or under `data`/`payload`.
#[derive(Deserialize, Default)]
struct Fields<'a> {
    #[serde(borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thread_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    timestamp: Option<Ts>,
    #[serde(borrow)]
    tool_name: Option<Cow<'a, str>>,
    results: Option<IgnoredAny>,
    result: Option<IgnoredAny>,
    final_response: Option<IgnoredAny>,
}

/// One event frame, parsed once with borrowed strings.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    run_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thread_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    timestamp: Option<Ts>,
    #[serde(borrow)]
    tool_name: Option<Cow<'a, str>>,
    results: Option<IgnoredAny>,
    result: Option<IgnoredAny>,
    final_response: Option<IgnoredAny>,
    #[serde(borrow)]
    data: Option<Fields<'a>>,
    #[serde(borrow)]
    payload: Option<Fields<'a>>,
}

impl<'a> Event<'a> {
    /// A field from the root, else `data`, else `payload`.
    fn find<'s, T>(
        &'s self,
        root: Option<T>,
        inner: impl Fn(&'s Fields<'a>) -> Option<T>,
    ) -> Option<T> {
        root.or_else(|| self.data.as_ref().and_then(&inner))
            .or_else(|| self.payload.as_ref().and_then(&inner))
    }
    fn text<'s>(
        &'s self,
        pick: fn(&'s Fields<'a>) -> Option<&'s str>,
        root: Option<&'s str>,
    ) -> Option<&'s str> {
        root.or_else(|| self.data.as_ref().and_then(pick))
            .or_else(|| self.payload.as_ref().and_then(pick))
    }
}

/// Who a run belongs to.
struct Ids<'r> {
    run: &'r str,
    thread: &'r str,
    user: &'r str,
}

/// Where a run is in the sequence started, thinking*, (executing, completed)*, completed.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Sent,
    Started,
    Thinking,
    ToolOpen,
    ToolDone,
}

/// Checks one event against the run; `Ok(true)` on `agent_completed`.
fn check(text: &str, ids: &Ids<'_>, phase: &mut Phase) -> Result<bool, &'static str> {
    let ev: Event<'_> = serde_json::from_str(text).map_err(|_| "unparsable frame")?;
    if ev.kind == "agent_error" || ev.kind == "error" {
        return Err("agent_error");
    }
    let run = ev.text(|f| f.run_id.as_deref(), ev.run_id.as_deref());
    let thread = ev.text(|f| f.thread_id.as_deref(), ev.thread_id.as_deref());
    let user = ev.text(|f| f.user_id.as_deref(), ev.user_id.as_deref());
    if run != Some(ids.run) {
        return Err("run_id");
    }
    if thread != Some(ids.thread) {
        return Err("thread_id");
    }
    if user != Some(ids.user) {
        return Err("user_id");
    }
    if ev
        .find(ev.timestamp.as_ref(), |f| f.timestamp.as_ref())
        .is_none()
    {
        return Err("timestamp");
    }
    let tool = || {
        ev.text(|f| f.tool_name.as_deref(), ev.tool_name.as_deref())
            .is_some()
    };
    let results = || {
        ev.find(ev.results.as_ref(), |f| f.results.as_ref())
            .is_some()
            || ev.find(ev.result.as_ref(), |f| f.result.as_ref()).is_some()
    };
    let next = match (ev.kind.as_ref(), *phase) {
        ("agent_started", Phase::Sent) => Phase::Started,
        ("agent_thinking", Phase::Started | Phase::Thinking) => Phase::Thinking,
        ("tool_executing", Phase::Started | Phase::Thinking | Phase::ToolDone) if tool() => {
            Phase::ToolOpen
        }
        ("tool_completed", Phase::ToolOpen) if tool() && results() => Phase::ToolDone,
        ("agent_completed", Phase::Started | Phase::Thinking | Phase::ToolDone) => {
            let answer = ev
                .find(ev.final_response.as_ref(), |f| f.final_response.as_ref())
                .is_some();
            if !(answer || results()) {
                return Err("agent_completed without a result");
            }
            return Ok(true);
        }
        _ => return Err("order or a missing tool field"),
    };
    *phase = next;
    Ok(false)
}

#[derive(Default)]
struct Out {
    runs: u64,
    failed: u64,
    connect_failed: u64,
    ready: u64,
    failures: BTreeMap<&'static str, u64>,
    /// Closes the server sent (or 1006: the connection ended without one).
    close_codes: BTreeMap<u16, u64>,
    ttfe: Option<Histogram<u64>>,
    ttc: Option<Histogram<u64>>,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// Waits for the ready frame (`connection_established`).
async fn ready(ws: &mut Ws) -> Result<(), &'static str> {
    let wait = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    #[derive(Deserialize)]
                    struct Ty<'a> {
                        #[serde(rename = "type", borrow)]
                        kind: Cow<'a, str>,
                    }
                    let ty: Ty<'_> =
                        serde_json::from_str(t.as_str()).map_err(|_| "unparsable ready frame")?;
                    if ty.kind == "connection_established" {
                        return Ok(());
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return Err("closed before ready"),
                Ok(_) => {}
            }
        }
        Err("closed before ready")
    });
    wait.await.unwrap_or(Err("ready timeout"))
}

enum Read {
    Done,
    Closed(u16),
}

/// One run: send `start_agent`, read and check its events.
async fn run(
    ws: &mut Ws,
    ids: &Ids<'_>,
    out: &mut Out,
    ttfe: &mut Histogram<u64>,
    ttc: &mut Histogram<u64>,
) -> Result<(), Read> {
    let msg = format!(
        r#"{{"type":"start_agent","payload":{{"user_request":"Summarise my cloud spend","thread_id":"{}","run_id":"{}"}}}}"#,
        ids.thread, ids.run
    );
    let t0 = Instant::now();
    if ws.send(Message::text(msg)).await.is_err() {
        return Err(Read::Closed(1006));
    }
    let mut phase = Phase::Sent;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                *out.failures.entry("run timeout").or_default() += 1;
                return Err(Read::Done);
            }
            Ok(m) => m,
        };
        match m {
            Some(Ok(Message::Text(t))) => match check(t.as_str(), ids, &mut phase) {
                Ok(done) => {
                    let us = t0.elapsed().as_micros() as u64;
                    if phase == Phase::Started && !done {
                        ttfe.saturating_record(us.max(1));
                    }
                    if done {
                        ttc.saturating_record(us.max(1));
                        return Ok(());
                    }
                }
                Err(why) => {
                    *out.failures.entry(why).or_default() += 1;
                    return Err(Read::Done);
                }
            },
            Some(Ok(Message::Close(f))) => {
                return Err(Read::Closed(f.map_or(1005, |f| u16::from(f.code))))
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(Read::Closed(1006)),
        }
    }
}

async fn user(
    i: usize,
    a: Arc<Args>,
    key: Arc<jsonwebtoken::EncodingKey>,
    sem: Arc<Semaphore>,
    end: tokio::time::Instant,
) -> Out {
    let mut out = Out::default();
    let name = format!("chatload-user-{i}");
    let permit = sem.acquire().await;
    let token = mint(&key, &name, 1);
    let mut ws = match connect(&a.url, &token).await {
        Ok(ws) => ws,
        Err(_) => {
            out.connect_failed = 1;
            return out;
        }
    };
    if let Err(why) = ready(&mut ws).await {
        *out.failures.entry(why).or_default() += 1;
        out.connect_failed = 1;
        return out;
    }
    drop(permit);
    out.ready = 1;
    if a.idle {
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(end) => break,
                m = ws.next() => match m {
                    Some(Ok(Message::Close(f))) => {
                        *out.close_codes.entry(f.map_or(1005, |f| u16::from(f.code))).or_default() += 1;
                        return out;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        *out.close_codes.entry(1006).or_default() += 1;
                        return out;
                    }
                }
            }
        }
    } else {
        let (mut ttfe, mut ttc) = (hist(), hist());
        let thread = format!("thread-{name}");
        let mut seq = 0u64;
        while tokio::time::Instant::now() < end {
            seq += 1;
            let run_id = format!("run-{name}-{seq}");
            let ids = Ids {
                run: &run_id,
                thread: &thread,
                user: &name,
            };
            match run(&mut ws, &ids, &mut out, &mut ttfe, &mut ttc).await {
                Ok(()) => out.runs += 1,
                Err(Read::Done) => {
                    out.failed += 1;
                    break;
                }
                Err(Read::Closed(code)) => {
                    out.failed += 1;
                    *out.close_codes.entry(code).or_default() += 1;
                    out.ttfe = Some(ttfe);
                    out.ttc = Some(ttc);
                    return out;
                }
            }
        }
        out.ttfe = Some(ttfe);
        out.ttc = Some(ttc);
    }
    // The client ends the session: close 1000 and read the server's echo.
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while ws.next().await.is_some() {}
    })
    .await;
    out
}

#[tokio::main]
async fn main() {
    let a = Arc::new(args());
    let secret =
        std::env::var("CHATLOAD_JWT_SECRET").expect("CHATLOAD_JWT_SECRET must name the HS256 key");
    let key = Arc::new(jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()));
    // Journey users all start at once; idle users connect `connects` at a time.
    let sem = Arc::new(Semaphore::new(if a.idle {
        a.connects
    } else {
        a.users.max(1)
    }));
    let started = Instant::now();
    let end = tokio::time::Instant::now() + a.duration;
    let tasks: Vec<_> = (0..a.users)
        .map(|i| tokio::spawn(user(i, a.clone(), key.clone(), sem.clone(), end)))
        .collect();
    let mut total = Out::default();
    let (mut ttfe, mut ttc) = (hist(), hist());
    for t in tasks {
        let o = t.await.expect("user task");
        total.runs += o.runs;
        total.failed += o.failed;
        total.connect_failed += o.connect_failed;
        total.ready += o.ready;
        for (k, v) in o.failures {
            *total.failures.entry(k).or_default() += v;
        }
        for (k, v) in o.close_codes {
            *total.close_codes.entry(k).or_default() += v;
        }
        if let Some(h) = o.ttfe {
            ttfe.add(h).expect("merge");
        }
        if let Some(h) = o.ttc {
            ttc.add(h).expect("merge");
        }
    }
    let q = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    let line = serde_json::json!({
        "mode": if a.idle { "idle" } else { "journey" },
        "users": a.users,
        "ready": total.ready,
        "connect_failed": total.connect_failed,
        "runs": total.runs,
        "failed": total.failed,
        "failures": total.failures,
        "ttfe_us": {"p50": q(&ttfe, 0.5), "p99": q(&ttfe, 0.99)},
        "ttc_us": {"p50": q(&ttc, 0.5), "p99": q(&ttc, 0.99)},
        "close_codes": total.close_codes.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    println!("{line}");
}
