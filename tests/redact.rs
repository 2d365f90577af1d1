//! Secrets in no form, in no output (issue 14, item 5). A hostile server
//! records every token it receives and echoes every header, every frame and
//! every secret it knows back, in every encoding, inside frames chatload
//! keeps as offending samples (unknown types, whose names become counter
//! names, and error frames). The real binary runs against it with the
//! presentations that send encoded tokens, in mint mode (key from the
//! environment) and login mode (password from `{{env.LOGIN_PASSWORD}}`);
//! then every file of the run folder and the captured stdout/stderr are
//! searched for the key, the password and each recorded token in each form:
//! none may be found.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, post};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

const KEY: &str = "hostile-test-signing/key+\"quoted\"";
const PASSWORD: &str = "pass word/+\"x\"&<y>";

/// What the hostile server knows: the key (a server holds it), the
/// passwords it was sent, every token it received.
#[derive(Default)]
struct Seen {
    passwords: BTreeSet<String>,
    tokens: BTreeSet<String>,
    logins: u64,
}

type Shared = Arc<Mutex<Seen>>;

/// Every form of `s` the search looks for: raw, base64url with and without
/// padding, standard base64 with and without padding, percent-encoded,
/// JSON-escaped, and with the `jwt.`, `jwt-auth.`, `bearer.` prefixes.
fn forms(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let pct = |t: &str| {
        t.bytes()
            .map(|c| {
                if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                    (c as char).to_string()
                } else {
                    format!("%{c:02X}")
                }
            })
            .collect::<String>()
    };
    let json = serde_json::to_string(s).unwrap();
    let mut out = vec![
        s.to_string(),
        URL_SAFE_NO_PAD.encode(b),
        URL_SAFE.encode(b),
        STANDARD.encode(b),
        STANDARD_NO_PAD.encode(b),
        pct(s),
        pct(&STANDARD.encode(b)),
        json[1..json.len() - 1].to_string(),
    ];
    let plain = out.clone();
    for p in ["jwt.", "jwt-auth.", "bearer."] {
        for f in &plain[..3] {
            out.push(format!("{p}{f}"));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The raw token in an offered subprotocol entry, base64url or not.
fn token_of_entry(e: &str) -> Option<String> {
    let rest = e
        .strip_prefix("jwt.")
        .or_else(|| e.strip_prefix("bearer."))?;
    if rest.starts_with("eyJ") {
        return Some(rest.to_string());
    }
    URL_SAFE_NO_PAD
        .decode(rest)
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .or(Some(rest.to_string()))
}

async fn login(State(st): State<Shared>, body: String) -> impl IntoResponse {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut s = st.lock().unwrap();
    if let Some(p) = v.get("password").and_then(|p| p.as_str()) {
        s.passwords.insert(p.to_string());
    }
    s.logins += 1;
    let token = format!("opaque-login-token-{:04}-zq", s.logins);
    axum::Json(serde_json::json!({ "access_token": token, "echo": body }))
}

async fn upgrade(
    State(st): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    let offered: Vec<String> = headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|e| e.trim().to_string()))
        .collect();
    let mut token = offered.iter().find_map(|e| token_of_entry(e));
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        token = a.strip_prefix("Bearer ").map(str::to_string).or(token);
    }
    if let Some(q) = uri.query() {
        for kv in q.split('&') {
            if let Some(t) = kv.strip_prefix("token=") {
                token = Some(t.to_string());
            }
        }
    }
    let echoed: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let mut secrets = vec![KEY.to_string()];
    {
        let mut s = st.lock().unwrap();
        if let Some(t) = &token {
            s.tokens.insert(t.clone());
            secrets.push(t.clone());
        }
        secrets.extend(s.passwords.iter().cloned());
    }
    let all: Vec<String> = secrets.iter().flat_map(|s| forms(s)).collect();
    let echo = serde_json::json!({"type": "echo_all", "headers": echoed, "uri": uri.to_string(), "forms": all});
    ws.protocols(offered)
        .on_upgrade(move |socket| hostile(socket, echo, secrets))
}

/// Sends the echo, one unknown frame type per secret's encoded forms (the
/// type becomes a counter name), an error frame, then echoes every frame.
async fn hostile(mut socket: WebSocket, echo: serde_json::Value, secrets: Vec<String>) {
    let mut frames = vec![echo.to_string()];
    for s in &secrets {
        let f = forms(s);
        frames.push(
            serde_json::json!({"type": URL_SAFE_NO_PAD.encode(s.as_bytes()), "all": f}).to_string(),
        );
        frames.push(serde_json::json!({"type": s}).to_string());
        frames.push(
            serde_json::json!({"type": "error", "error": "auth_failed", "message": f.join(" ")})
                .to_string(),
        );
    }
    for f in frames {
        if socket.send(Message::Text(f.into())).await.is_err() {
            return;
        }
    }
    while let Some(Ok(m)) = socket.recv().await {
        if let Message::Text(t) = m {
            let back = serde_json::json!({"type": "echo_frame", "frame": t.as_str()});
            if socket
                .send(Message::Text(back.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

async fn hostile_server() -> (SocketAddr, Shared) {
    let st: Shared = Default::default();
    let app = Router::new()
        .route("/auth/login", post(login))
        .route("/ws", any(upgrade))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (at, st)
}

fn scenario(auth: &str) -> String {
    format!(
        r#"
version = 1
name = "hostile-echo"
seed = 5
[target]
connect_timeout = "2s"
{auth}
[workload]
users = 2
duration = "2s"
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "hi", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "1s"
"#
    )
}

/// Runs the binary against `at` with `auth`; the run folder and the console text.
fn run_binary(at: SocketAddr, auth: &str, dir: &Path) -> (PathBuf, String) {
    let sc = dir.join("scenario.toml");
    std::fs::write(&sc, scenario(auth)).unwrap();
    let out = dir.join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args(["run", sc.to_str().unwrap(), "--target"])
        .arg(format!("ws://{at}/ws"))
        .args(["--out", out.to_str().unwrap()])
        .env("CHATLOAD_JWT_SECRET", KEY)
        .env("LOGIN_PASSWORD", PASSWORD)
        .output()
        .expect("the binary runs");
    let console = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.join("snapshot.json").exists(),
        "the run wrote no snapshot: {console}"
    );
    (out, console)
}

fn files(dir: &Path, into: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, into);
        } else {
            into.push(p);
        }
    }
}

/// Every (where, form) of a secret found in the run folder or the console.
fn leaks(out: &Path, console: &str, secrets: &[String]) -> Vec<String> {
    let mut texts = vec![("console".to_string(), console.to_string())];
    let mut paths = Vec::new();
    files(out, &mut paths);
    for p in paths {
        let bytes = std::fs::read(&p).unwrap();
        texts.push((
            p.display().to_string(),
            String::from_utf8_lossy(&bytes).into(),
        ));
    }
    let mut found = Vec::new();
    for s in secrets {
        for f in forms(s) {
            for (name, t) in &texts {
                if t.contains(&f) {
                    found.push(format!("{name}: {f}"));
                }
            }
        }
    }
    found
}

async fn hostile_run(auth: &str) -> (Vec<String>, String) {
    let (at, st) = hostile_server().await;
    let dir = tempfile::tempdir().unwrap();
    let auth = auth.to_string();
    let path = dir.path().to_path_buf();
    let (out, console) = tokio::task::spawn_blocking(move || run_binary(at, &auth, &path))
        .await
        .unwrap();
    let seen = std::mem::take(&mut *st.lock().unwrap());
    assert!(
        !seen.tokens.is_empty(),
        "no socket reached the server: {console}"
    );
    // The echoes were kept (as samples and counter names), redacted.
    let violations = std::fs::read_to_string(out.join("violations.jsonl")).unwrap_or_default();
    assert!(
        violations.contains("<redacted-jwt>") || violations.contains("<redacted>"),
        "no echo was kept: {violations}"
    );
    let mut secrets = vec![KEY.to_string(), PASSWORD.to_string()];
    secrets.extend(seen.tokens.iter().cloned());
    secrets.extend(seen.passwords.iter().cloned());
    (leaks(&out, &console, &secrets), console)
}

fn mint(present: &str) -> String {
    format!("[auth]\nmode = \"mint\"\npresent = [\"{present}\"]")
}

fn login_auth(present: &str) -> String {
    format!(
        "[auth]\nmode = \"login\"\npresent = [\"{present}\"]\n[auth.login]\nurl = \"/auth/login\"\nbody = {{ user_id = \"{{{{user}}}}\", password = \"{{{{env.LOGIN_PASSWORD}}}}\" }}\ntoken = \"access_token\""
    )
}

async fn assert_no_leak(auth: String) {
    let (found, console) = hostile_run(&auth).await;
    assert!(
        found.is_empty(),
        "{} secret forms leaked ({auth}):\n{}\n--- console:\n{console}",
        found.len(),
        found
            .iter()
            .map(|l| l.chars().take(110).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_in_base64_subprotocols_and_the_key_leak_nowhere() {
    for present in ["subprotocol:jwt-base64", "subprotocol:browser"] {
        assert_no_leak(mint(present)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_in_a_header_or_query_leak_nowhere() {
    for present in ["header", "query"] {
        assert_no_leak(mint(present)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_password_and_opaque_login_tokens_leak_nowhere() {
    for present in ["subprotocol:jwt-base64", "header"] {
        assert_no_leak(login_auth(present)).await;
    }
}
