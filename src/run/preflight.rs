//! Checks before any socket opens: the target URL and the login endpoint
//! against `target.allow`, the `{{env.NAME}}` variables the login body
//! reads, a capacity search against sharding, the tokens file, and whether
//! this machine can carry the plan (`resources.rs`: file descriptors, with
//! RLIMIT_NOFILE raised to its hard limit, and local ports). Every refusal
//! is a usage error (exit 2): nothing was sent.
//!
//! Imports: `scenario` (the one URL allow check), `auth`.

use std::sync::Arc;

use super::{RunError, RunRequest};
use crate::auth::Secret;
use crate::scenario::Scenario;

/// What the checks found: the external target, if any, and the tokens of a
/// tokens file.
pub(super) struct Checked {
    /// `None`: the embedded server.
    pub external: Option<String>,
    pub tokens: Option<Arc<Vec<Secret>>>,
}

/// Everything a run checks before opening a socket.
pub(super) fn check(req: &RunRequest) -> Result<Checked, RunError> {
    let sc = &req.scenario;
    let external = req.target.clone().or_else(|| sc.target.url.clone());
    if let Some(url) = &external {
        check_target(sc, url)?;
    }
    check_login(sc)?;
    super::remote_write::check_host(sc).map_err(RunError::Usage)?;
    check_env(sc)?;
    super::probe::check(sc, req.shard.count, true).map_err(RunError::Usage)?;
    learn_secrets(sc);
    super::probe::learn_identities(sc);
    if sc.workload.capacity.is_some() && req.shard.count > 1 {
        return Err(RunError::Usage(
            "a capacity search runs in one process: the decision to stop at a step needs the whole load's data (remove --shard/--shards, or give this machine more of the load)".into(),
        ));
    }
    let tokens = load_tokens(sc)?;
    super::resources::check(req, external.is_none())?;
    Ok(Checked { external, tokens })
}

/// What `run` would refuse about a scenario as written, whatever the
/// machine: its target and login URLs against `target.allow`. `validate`
/// shows these, so a file that validates is not refused by `run` for them.
pub fn refusals(sc: &Scenario) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(url) = &sc.target.url {
        if let Err(RunError::Usage(e) | RunError::Aborted(e)) = check_target(sc, url) {
            why.push(e);
        }
    }
    if let Err(RunError::Usage(e) | RunError::Aborted(e)) = check_login(sc) {
        why.push(e);
    }
    if let Err(e) = super::remote_write::check_host(sc) {
        why.push(e);
    }
    if let Err(e) = super::probe::check(sc, 1, false) {
        why.push(e);
    }
    why
}

/// The target is a ws(s) URL whose host is in `target.allow` (or loopback).
fn check_target(sc: &Scenario, url: &str) -> Result<(), RunError> {
    crate::scenario::check_ws_url(url).map_err(RunError::Usage)?;
    let host = crate::scenario::target::host_of(url);
    if !crate::scenario::target::host_allowed(&host, &sc.target.allow) {
        return Err(RunError::Usage(format!(
            "target host `{host}` is not in the scenario's target.allow list ({}); add it there to load this target",
            if sc.target.allow.is_empty() { "empty: only loopback is allowed".to_string() } else { sc.target.allow.join(", ") }
        )));
    }
    Ok(())
}

/// A login endpoint given as a full address is loaded too: the same
/// allow list guards it.
fn check_login(sc: &Scenario) -> Result<(), RunError> {
    if let crate::scenario::TokenSource::Login { url, .. } = &sc.auth.source {
        if !url.starts_with('/') {
            let host = crate::scenario::target::host_of(url);
            if !crate::scenario::target::host_allowed(&host, &sc.target.allow) {
                return Err(RunError::Usage(format!(
                    "the login endpoint's host `{host}` is not in the scenario's target.allow list; add it there to log users in at it"
                )));
            }
        }
    }
    Ok(())
}

/// Teaches the redactor every secret `run` would hold that `validate` can
/// print beside (a tag whose value is the signing key): the signing key
/// from its variable, when set, and the login body's secrets. `validate`
/// calls this before describing the scenario, as `run` does before its
/// first line.
pub fn learn_for_output(sc: &Scenario) {
    if let Ok(k) = std::env::var(&sc.auth.secret_env) {
        crate::auth::redact::learn(&k);
    }
    learn_secrets(sc);
    super::probe::learn_identities(sc);
}

/// Teaches the redactor (`auth/redact.rs`) the login body's secrets: the
/// values of its `{{env.NAME}}` variables and its literal strings (a
/// password written into the scenario). Keys and tokens are taught as they
/// are made (`Secret::new`).
fn learn_secrets(sc: &Scenario) {
    fn literals(v: &serde_json::Value) {
        match v {
            serde_json::Value::String(s) if !s.contains("{{") => crate::auth::redact::learn(s),
            serde_json::Value::Array(a) => a.iter().for_each(literals),
            serde_json::Value::Object(m) => m.values().for_each(literals),
            _ => {}
        }
    }
    for name in sc.env_placeholders() {
        if let Ok(v) = std::env::var(&name) {
            crate::auth::redact::learn(&v);
        }
    }
    if let crate::scenario::TokenSource::Login { body, .. } = &sc.auth.source {
        literals(body);
    }
}

/// `{{env.NAME}}` in the login body: a variable that is not set would log
/// every user in with an empty value. (Its value is never printed.)
fn check_env(sc: &Scenario) -> Result<(), RunError> {
    let unset: Vec<String> = sc
        .env_placeholders()
        .into_iter()
        .filter(|n| std::env::var_os(n).is_none())
        .collect();
    if !unset.is_empty() {
        return Err(RunError::Usage(format!(
            "the scenario reads ${} from the environment ({{{{env.NAME}}}} in [auth.login] body), and it is not set; export it before the run",
            unset.join(", $")
        )));
    }
    Ok(())
}

/// Reads `auth.tokens_file` (file source): one token per line, blank lines
/// and `#` comments skipped. Refused before any socket opens when there are
/// fewer tokens than users and `reuse_tokens` is off. Tokens are secrets:
/// messages name the file and counts, never a token.
fn load_tokens(sc: &Scenario) -> Result<Option<Arc<Vec<Secret>>>, RunError> {
    let crate::scenario::TokenSource::File { path, reuse } = &sc.auth.source else {
        return Ok(None);
    };
    // Read once, while the scenario loaded (a FIFO can be read only once).
    let tokens = sc.auth.file_tokens.clone().unwrap_or_default();
    let users = sc.workload.peak_users() as usize;
    if tokens.is_empty() {
        return Err(RunError::Usage(format!(
            "the tokens file {} has no tokens",
            path.display()
        )));
    }
    if tokens.len() < users && !reuse {
        return Err(RunError::Usage(format!(
            "the tokens file {} has {} tokens for {users} users; add tokens, or set auth.reuse_tokens = true to let users share them",
            path.display(),
            tokens.len()
        )));
    }
    Ok(Some(tokens))
}
