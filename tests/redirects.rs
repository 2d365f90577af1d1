//! HTTP redirects never get around `target.allow` (issue 14, item 1). A login
//! endpoint answering 307 to an unlisted loopback address (127.0.0.2) used to
//! have chatload send the login body there: now no redirect is followed by
//! default, and with `target.follow_redirects = true` every hop's host must
//! pass the one allow check. The unlisted address's own request counter is
//! the proof: it must stay 0.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use chatload::auth::Secret;
use chatload::server::{self, Settings};
use common::*;

const SECRET: &str = "redirect-test-key";

async fn serve(addr: &str, app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    at
}

/// A server on 127.0.0.2, not in the allow list, that counts every request.
async fn unlisted_sink() -> (SocketAddr, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let app = Router::new().fallback(move || {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            axum::Json(serde_json::json!({ "access_token": "stolen" }))
        }
    });
    (serve("127.0.0.2:0", app).await, hits)
}

/// Answers every request with `307 Temporary Redirect` to `to` (a 307 keeps
/// the method and body: a login POST would be replayed there, password
/// included).
async fn redirector(to: String) -> SocketAddr {
    let app = Router::new().fallback(move || {
        let to = to.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response() }
    });
    serve("127.0.0.1:0", app).await
}

fn scenario(login_url: &str, follow: bool, duration: &str) -> String {
    format!(
        r#"
version = 1
name = "redirects"
seed = 3
[target]
allow = ["127.0.0.1"]
follow_redirects = {follow}
connect_timeout = "2s"
[auth]
mode = "login"
[auth.login]
url = "{login_url}"
body = {{ user_id = "{{{{user}}}}", password = "hunter2" }}
token = "access_token"
[workload]
users = 2
duration = "{duration}"
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = {{ type = "start_agent", payload = {{ user_request = "hi", run_id = "{{{{run}}}}" }} }}
[[journey]]
step = "await"
timeout = "5s"
"#
    )
}

/// Where the login redirect points.
enum Hop {
    /// The counting server on 127.0.0.2, not in `target.allow`.
    Unlisted,
    /// The reference server's own login, on an allowed host.
    Allowed,
}

/// One 2-user run whose login endpoint answers 307 to `hop`, with
/// `target.follow_redirects = follow`; with the unlisted host's hit count.
async fn login_redirected(
    hop: Hop,
    follow: bool,
    tag: &str,
    duration: &str,
) -> (chatload::run::RunResult, u64) {
    let srv = server::spawn(
        Settings::new(Secret::new(SECRET)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let (sink, hits) = unlisted_sink().await;
    let to = match hop {
        Hop::Unlisted => format!("http://{sink}/auth/dev/login"),
        Hop::Allowed => format!("{}/auth/dev/login", srv.http_url()),
    };
    let login = redirector(to).await;
    let (_d, out) = out_dir(tag);
    let sc = parse(&scenario(
        &format!("http://{login}/auth/dev/login"),
        follow,
        duration,
    ));
    let r = run(sc, Some(srv.ws_url()), SECRET, out).await;
    (r, hits.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_by_default() {
    let _g = goose_lock().await;
    let (r, hits) = login_redirected(Hop::Unlisted, false, "no-follow", "2s").await;
    assert_eq!(hits, 0, "the unlisted address got requests");
    assert!(counter(&r, "http.redirects.not_followed") > 0);
    assert!(counter(&r, "tokens.login_failed.307") > 0);
    assert_eq!(counter(&r, "connections.ready"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_redirect_to_an_unlisted_host_is_refused_and_counted() {
    let _g = goose_lock().await;
    // A refused login hop leaves the users without tokens: fail fast ends
    // the 60 s plan at once, naming the refused hop.
    let t0 = std::time::Instant::now();
    let (r, hits) = login_redirected(Hop::Unlisted, true, "refused", "60s").await;
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(r.snapshot.verdict, "aborted");
    assert!(
        r.snapshot
            .notes
            .iter()
            .any(|n| n.contains("fail fast")
                && n.contains("refused: its host is not in target.allow")),
        "{:?}",
        r.snapshot.notes
    );
    assert_eq!(hits, 0, "the unlisted address got requests");
    let refused = counter(&r, "http.redirects.refused");
    assert!(refused > 0);
    // Every login attempt was refused at its hop: none produced a token.
    assert_eq!(refused, counter(&r, "tokens.login_failed"));
    assert_eq!(counter(&r, "tokens.login"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_redirect_to_an_allowed_host_logs_in() {
    let _g = goose_lock().await;
    let (r, _) = login_redirected(Hop::Allowed, true, "followed", "2s").await;
    assert_eq!(counter(&r, "http.redirects.refused"), 0);
    assert!(
        counter(&r, "tokens.login") >= 2,
        "each user logs in through the redirect"
    );
    assert!(counter(&r, "runs.ok") > 0);
}
