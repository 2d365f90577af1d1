//! The REST side of a journey: one authenticated call ([`Shared::rest`]),
//! the REST steps (`create_thread`, `list_threads`, `history`, `http`), the
//! history check against what the user sent ([`ThreadLog`]), and their
//! goose records.
//!
//! May import: the engine's own files, `metrics` (observations), `scenario`,
//! `protocol`, `auth`, `names`.

use std::time::{Duration, Instant};

use goose::prelude::*;

use super::session::{self, Read, Want, Who};
use super::shared::{at_path, far_future, goose_error, http_error, unfollowed_redirect, Shared};
use super::user::{content_hash, Guard, UserSession};
use crate::protocol::template::{self, Vars};
use crate::scenario::Step;

/// A history read pages through at most this many pages (of the profile's
/// `history.page_size`).
const HISTORY_PAGES_MAX: usize = 100;

/// What a REST step ended with: status, body and how long the call took,
/// or why there was none.
pub(super) type RestResult = Result<(u16, serde_json::Value, Duration), String>;

impl Shared {
    /// One REST call with the user's Bearer token; counts its status under
    /// `rest.<metric>.<status>` and its latency as `<metric>`; an answer of
    /// 400 or more that the step does not `expect` is also
    /// `rest.<metric>.error` (no answer at all: `rest.<metric>.failed`), for
    /// `rest error rate`.
    pub(super) async fn rest(
        &self,
        s: &mut UserSession,
        metric: &str,
        (method, expect): (reqwest::Method, &[u16]),
        path: &str,
        body: Option<serde_json::Value>,
    ) -> RestResult {
        let token = self.rest_token(s).await?;
        let url = format!("{}{path}", self.http_base);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(token.expose())
            .timeout(
                self.cfg
                    .scenario
                    .target
                    .connect_timeout
                    .max(Duration::from_secs(10)),
            );
        if let Some(b) = body {
            req = req.json(&b);
        }
        let t0 = Instant::now();
        let call = async move {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let location = resp.headers().get(reqwest::header::LOCATION).cloned();
            let (bytes, more) = super::body::read_capped(resp, super::body::REST_BODY_MAX)
                .await
                .unwrap_or_default();
            Ok::<_, reqwest::Error>((status, location, bytes, more))
        };
        // A run in flight keeps being read (and timed) during the call.
        let answer = if s.pending.is_some() && s.ws.is_some() {
            tokio::pin!(call);
            loop {
                tokio::select! {
                    biased;
                    r = &mut call => break r,
                    r = self.read(s, Want::Nothing, far_future(), false) => {
                        if let Read::Closed(_) | Read::Broken(_) = r {
                            break call.await;
                        }
                    }
                }
            }
        } else {
            call.await
        };
        let took = t0.elapsed();
        let (status, location, bytes, more) = match answer {
            Ok(a) => a,
            Err(e) => {
                self.obs.count(format!("rest.{metric}.failed"));
                return Err(format!("{metric}: request failed: {}", http_error(&e)));
            }
        };
        if more {
            self.obs.count(format!("rest.{metric}.failed"));
            return Err(format!(
                "{metric}: the answer is larger than {} MiB",
                super::body::REST_BODY_MAX >> 20
            ));
        }
        // Counted (and named in goose's report through the step's status);
        // the step's own status check decides whether it failed.
        let _ = unfollowed_redirect(&self.obs, status, location.as_ref());
        self.obs.sample(metric.to_string(), took.as_micros() as u64);
        self.obs.count(format!("rest.{metric}.{status}"));
        if status >= 400 && !expect.contains(&status) {
            self.obs.count(format!("rest.{metric}.error"));
        }
        self.obs.count_n("bytes.received", bytes.len() as u64);
        let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, v, took))
    }

    /// Checks a thread's messages: every message this user sent there (in a
    /// completed run) must be stored (`persistence_miss` counts each missing
    /// one once), and none may be another user's (`cross_user_history`).
    pub(super) fn check_history(
        &self,
        s: &mut UserSession,
        thread: &str,
        messages: &[serde_json::Value],
    ) {
        let mut found: std::collections::HashMap<u64, usize> = Default::default();
        for m in messages {
            let owner = m.get("user_id").and_then(|u| u.as_str());
            if let Some(other) = owner.filter(|o| *o != s.user_id && *o != s.identity) {
                let v = crate::protocol::validate::Violation::new(
                    "cross_user_history",
                    "history",
                    format!(
                        "the history of thread {thread} read by {} holds a message of {other}",
                        s.user_id
                    ),
                );
                let who = Who {
                    user_id: &s.user_id,
                    run_id: None,
                };
                session::note_violation(&self.obs, &v, &m.to_string(), &who);
                continue;
            }
            if m.get("role")
                .and_then(|r| r.as_str())
                .is_none_or(|r| r == "user")
            {
                if let Some(c) = m.get("content").and_then(|c| c.as_str()) {
                    *found.entry(content_hash(c)).or_default() += 1;
                }
            }
        }
        let Some(log) = s.logs.get_mut(thread) else {
            return;
        };
        // Each remembered message must be found; one missing is counted the
        // first time it is found missing.
        let mut newly_missing = 0u64;
        for (hash, reported) in log.sent.iter_mut() {
            match found.get_mut(hash) {
                Some(n) if *n > 0 => *n -= 1,
                _ if !*reported => {
                    *reported = true;
                    newly_missing += 1;
                }
                _ => {}
            }
        }
        self.obs
            .count_n("history.messages_checked", log.sent.len() as u64);
        if newly_missing > 0 {
            self.obs.count_n("persistence_miss", newly_missing);
        }
    }
}

/// The `history` step: pages through the current thread's messages and
/// checks them against what this user sent there.
pub(super) async fn history(
    shared: &Shared,
    s: &mut UserSession,
    metric: &str,
) -> Result<Duration, (Option<u16>, String)> {
    let thread = s.thread_id.clone();
    let h = &shared.cfg.scenario.profile.history;
    let mut messages = Vec::new();
    let mut took = Duration::ZERO;
    let mut cursor: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    let mut last_page = false;
    for page in 0..HISTORY_PAGES_MAX {
        let path = h.page(&thread, messages.len(), cursor.as_deref());
        match shared
            .rest(s, metric, (reqwest::Method::GET, &[]), &path, None)
            .await
        {
            Ok((200..=299, v, t)) => {
                took += t;
                let got = at_path(&v, &h.items_field)
                    .and_then(|m| m.as_array())
                    .cloned()
                    .unwrap_or_default();
                let total = at_path(&v, &h.total_field).and_then(|t| t.as_u64());
                let n = got.len();
                messages.extend(got);
                let more = match &h.paging {
                    crate::protocol::history::Paging::Offset { .. } => {
                        total.map_or(n == h.page_size, |t| (messages.len() as u64) < t)
                    }
                    crate::protocol::history::Paging::Cursor { next_field, .. } => {
                        cursor = at_path(&v, next_field)
                            .filter(|c| !c.is_null())
                            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string));
                        // A cursor given twice would page in a circle.
                        let repeated = cursor.as_ref().is_some_and(|c| !seen.insert(c.clone()));
                        if repeated {
                            shared.obs.count(crate::names::HISTORY_CURSOR_REPEATED);
                        }
                        cursor.is_some() && !repeated
                    }
                };
                if n == 0 || !more {
                    last_page = true;
                    break;
                }
            }
            // A thread the server never stored (all its messages lost) is 404:
            // every message sent there is missing.
            Ok((404, _, _)) if page == 0 => {
                shared.check_history(s, &thread, &[]);
                return Err((Some(404), "history: HTTP 404".to_string()));
            }
            Ok((st, _, _)) => return Err((Some(st), format!("history: HTTP {st}"))),
            Err(e) => return Err((None, e)),
        }
    }
    if !last_page {
        shared.obs.count(crate::names::HISTORY_PAGES_CAPPED);
    }
    shared.check_history(s, &thread, &messages);
    Ok(took)
}

/// Records a REST step in goose's report with the call's real time.
pub(super) async fn record_rest(
    user: &mut GooseUser,
    name: &str,
    r: Result<Duration, (Option<u16>, String)>,
) -> TransactionResult {
    match r {
        Ok(took) => {
            user.record_custom_request_duration("REST", name, took, true, Some(200), None)
                .await
        }
        Err((status, msg)) => {
            let e = goose_error(&msg);
            user.record_custom_request_duration(
                "REST",
                name,
                Duration::ZERO,
                false,
                status,
                Some(&e),
            )
            .await
        }
    }
}

/// The `create_thread` step: `POST /api/threads`; the new thread becomes the
/// user's current thread.
pub(super) async fn create_thread(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
    title: &Option<String>,
) -> TransactionResult {
    let body = serde_json::json!({
        "title": title.clone().unwrap_or_else(|| format!("chatload {}", s.iteration)),
        "metadata": { "source": "chatload" },
    });
    let r = shared
        .rest(
            &mut s,
            &step.name,
            (reqwest::Method::POST, &[]),
            &shared.cfg.scenario.profile.history.threads_path,
            Some(body),
        )
        .await;
    let r = match r {
        Ok((200..=299, v, took)) => match v.get("id").and_then(|i| i.as_str()) {
            Some(id) => {
                s.threads.push(id.to_string());
                s.thread_id = id.to_string();
                shared.obs.count("threads.created");
                Ok(took)
            }
            None => Err((None, "the created thread has no `id`".to_string())),
        },
        Ok((st, _, _)) => Err((Some(st), format!("create_thread: HTTP {st}"))),
        Err(e) => Err((None, e)),
    };
    // Without the new thread, the steps of this iteration that use
    // `{{thread}}` are skipped (see `steps::skipped`).
    if r.is_ok() {
        s.unavailable.remove("thread");
    } else {
        s.unavailable.insert("thread".to_string());
    }
    drop(s);
    record_rest(user, &step.name, r).await
}

/// The `list_threads` step: `GET /api/threads`.
pub(super) async fn list_threads(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
) -> TransactionResult {
    let r = shared
        .rest(
            &mut s,
            &step.name,
            (reqwest::Method::GET, &[]),
            &shared.cfg.scenario.profile.history.threads(),
            None,
        )
        .await;
    drop(s);
    let r = match r {
        Ok((200..=299, v, took)) if v.is_array() => Ok(took),
        Ok((200..=299, _, _)) => Err((None, "list_threads: not a list".to_string())),
        Ok((st, _, _)) => Err((Some(st), format!("list_threads: HTTP {st}"))),
        Err(e) => Err((None, e)),
    };
    record_rest(user, &step.name, r).await
}

/// The `history` step, recorded.
pub(super) async fn history_step(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
) -> TransactionResult {
    let r = history(shared, &mut s, &step.name).await;
    drop(s);
    record_rest(user, &step.name, r).await
}

/// An `http` step's call, as the scenario gives it.
pub(super) struct HttpCall<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a String,
    pub(super) body: &'a Option<serde_json::Value>,
    pub(super) expect: &'a [u16],
    pub(super) capture: &'a [(String, String)],
    pub(super) persist: &'a Option<String>,
}

/// The `http` step: a templated REST call whose status must be expected;
/// `capture` copies fields of the answer into the user's variables.
pub(super) async fn http(
    shared: &Shared,
    step: &Step,
    user: &mut GooseUser,
    mut s: Guard<'_>,
    call: HttpCall<'_>,
) -> TransactionResult {
    let HttpCall {
        method,
        path,
        body,
        expect,
        capture,
        persist,
    } = call;
    // The same variables as a `send`: the user's data row (the one its
    // last run took), captured fields, the user, thread and iteration.
    let extra = shared.template_extra(&mut s, false);
    let vars = Vars {
        user: &s.user_id,
        thread: &s.thread_id,
        run: "",
        prompt: extra
            .as_ref()
            .and_then(|r| r.get("prompt"))
            .map_or("", String::as_str),
        iteration: s.iteration,
        extra: extra.as_deref(),
    };
    let path = match template::render(&serde_json::Value::String(path.clone()), &vars) {
        serde_json::Value::String(p) => p,
        _ => path.clone(),
    };
    let body = body.as_ref().map(|b| template::render(b, &vars));
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let r = shared
        .rest(&mut s, &step.name, (m, expect), &path, body.clone())
        .await;
    let r = match r {
        Ok((st, v, took)) if expect.contains(&st) => {
            if let Some(text) = persist
                .as_deref()
                .and_then(|p| at_path(body.as_ref()?, p)?.as_str())
            {
                let thread = s.thread_id.clone();
                super::user::remember_sent(&mut s, thread, text);
            }
            capture_fields(shared, &mut s, step, capture, st, &v, took)
        }
        Ok((st, _, _)) => Err((
            Some(st),
            format!("{}: HTTP {st}, expected {expect:?}", step.name),
        )),
        Err(e) => Err((None, e)),
    };
    // A failed call captured nothing: steps using its variables are skipped.
    for (var, _) in capture {
        if r.is_ok() {
            s.unavailable.remove(var);
        } else {
            s.unavailable.insert(var.clone());
        }
    }
    drop(s);
    record_rest(user, &step.name, r).await
}

/// Copies an `http` step's `capture` fields of the answer into the user's
/// variables; a field missing fails the step.
fn capture_fields(
    shared: &Shared,
    s: &mut UserSession,
    step: &Step,
    capture: &[(String, String)],
    st: u16,
    v: &serde_json::Value,
    took: Duration,
) -> Result<Duration, (Option<u16>, String)> {
    let mut missing = Vec::new();
    for (var, p) in capture {
        match at_path(v, p) {
            Some(serde_json::Value::String(x)) => {
                s.captured.insert(var.clone(), x.clone());
            }
            Some(x) if !x.is_null() => {
                s.captured.insert(var.clone(), x.to_string());
            }
            _ => missing.push(p.clone()),
        }
    }
    if missing.is_empty() {
        Ok(took)
    } else {
        shared
            .obs
            .count(format!("rest.{}.capture_missing", step.name));
        Err((
            Some(st),
            format!("{}: no `{}` in the answer", step.name, missing.join("`, `")),
        ))
    }
}
