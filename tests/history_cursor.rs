//! A cursor-paged history against a server whose cursor needs encoding and
//! that gives the same cursor again: the cursor travels as one
//! percent-encoded query value, and the read stops at the repeat (counted
//! as `history.cursor_repeated`, with a note) instead of paging in a circle
//! up to the page cap.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::RawQuery;
use axum::routing::{get, post};
use axum::Router;
use common::*;

/// The cursor the server always gives: `&`, `=`, space and a non-ASCII byte.
const CURSOR: &str = "p&q=1 é";

/// Creates thread `t1`; every page of its history holds one message and the
/// same next cursor. Keeps the query of every history call.
async fn circular_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let queries = Arc::new(Mutex::new(Vec::new()));
    let q = queries.clone();
    let app = Router::new()
        .route(
            "/api/threads",
            post(|| async { axum::Json(serde_json::json!({ "id": "t1" })) }),
        )
        .route(
            "/api/threads/t1/messages",
            get(move |RawQuery(query): RawQuery| {
                let q = q.clone();
                async move {
                    q.lock().unwrap().push(query.unwrap_or_default());
                    axum::Json(serde_json::json!({
                        "messages": [{ "role": "assistant", "content": "hello" }],
                        "next": CURSOR,
                    }))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("ws://{at}/ws"), queries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_ends_the_read_and_the_cursor_is_encoded() {
    let _g = goose_lock().await;
    let (target, queries) = circular_server().await;
    let text = r#"version = 1
name = "cursor"
seed = 1
[profile.history]
cursor = "after"
next = "next"
page_size = 10
[workload]
users = 1
iterations = 1
[[journey]]
step = "create_thread"
[[journey]]
step = "history"
"#;
    let (_tmp, out) = out_dir("cursor");
    let r = run(parse(text), Some(target), SECRET, out).await;
    let queries = queries.lock().unwrap().clone();
    assert_eq!(
        queries,
        ["limit=10", "limit=10&after=p%26q%3D1+%C3%A9"],
        "the first page, then the encoded cursor once: its repeat ends the read"
    );
    assert_eq!(counter(&r, "history.cursor_repeated"), 1);
    assert_eq!(counter(&r, "history.pages_capped"), 0);
    assert!(
        r.snapshot
            .notes
            .iter()
            .any(|n| n.contains("repeated cursor")),
        "{:?}",
        r.snapshot.notes
    );
}
