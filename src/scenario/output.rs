//! `[output]`: where reports go, how often over-time data and the
//! snapshot are written, and the live outputs ([`LiveOutputs`]: progress
//! lines, Prometheus remote write, the raw-results stream). Imports only
//! the `doc` readers and `url`.

use std::path::PathBuf;
use std::time::Duration;

use super::doc::Obj;

/// `[output]` as read (defaults where not written).
pub(super) struct Output {
    pub(super) dir: PathBuf,
    pub(super) interval: Option<Duration>,
    pub(super) checkpoint: Duration,
    pub(super) live: Option<LiveOutputs>,
    pub(super) goose_report: bool,
}

/// The live outputs of `[output]` (the flags `--remote-write` and
/// `--raw-results` set the same fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveOutputs {
    /// A progress line when stderr is not a terminal: at most one per this
    /// long (`progress_every`; `None`: one per interval).
    pub progress_every: Option<Duration>,
    /// Push every interval to this Prometheus remote-write URL (`remote_write`).
    pub remote_write: Option<String>,
    /// The environment variable whose value is sent as the remote-write
    /// requests' `Authorization` header (`remote_write_auth_env`), e.g.
    /// `Basic dXNlcjpwYXNz` or `Bearer abc`: learned as a secret, so it is
    /// redacted wherever it could appear.
    pub remote_write_auth_env: Option<String>,
    /// Stream one JSON line per finished run to `runs.jsonl` (`raw_results`).
    pub raw_results: bool,
}

/// A remote-write URL: `http://` or `https://` with a host.
pub fn check_remote_write_url(u: &str) -> Result<(), String> {
    let parsed =
        url::Url::parse(u).map_err(|e| format!("the remote-write URL is not a URL: {e}"))?;
    // Credentials in the URL would travel into the scenario's echo in every
    // report and into console lines: they belong in the environment.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the remote-write URL carries credentials (user:password@); put them in an environment variable and name it with `remote_write_auth_env` (or --remote-write-auth-env): its value is sent as the Authorization header and redacted everywhere".into());
    }
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "`{u}` must be an http:// or https:// URL with a host, e.g. http://127.0.0.1:9090/api/v1/write"
        ));
    }
    Ok(())
}

/// `progress_every`, `remote_write` and `raw_results` of `[output]`.
/// `interval` is the written `[output] interval`; when it is not written a
/// run's interval is at least 1 s (`default_interval`).
fn read_live(out: &Obj<'_>, interval: Option<Duration>) -> Option<LiveOutputs> {
    let interval = interval.unwrap_or(Duration::from_secs(1));
    let mut live = LiveOutputs::default();
    let mut ok = true;
    if let Some(n) = out.get("progress_every") {
        match n.as_duration() {
            Some(d) if d >= interval => live.progress_every = Some(d),
            Some(_) => {
                n.error(
                    "must be at least output.interval (one progress line per interval at most)",
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = out.get("remote_write") {
        match n.as_str().map(|u| check_remote_write_url(u).map(|()| u)) {
            Some(Ok(u)) => live.remote_write = Some(u.to_string()),
            Some(Err(e)) => {
                n.error(e);
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = out.get("remote_write_auth_env") {
        match n.as_str() {
            Some(v) if !v.is_empty() => live.remote_write_auth_env = Some(v.to_string()),
            Some(_) => {
                n.error("must name an environment variable");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = out.get("raw_results") {
        match n.as_bool() {
            Some(b) => live.raw_results = b,
            None => ok = false,
        }
    }
    ok.then_some(live)
}

pub(super) fn read_output(o: &Obj<'_>) -> Output {
    let mut interval = None;
    let mut checkpoint = Duration::from_secs(60);
    let mut live = Some(LiveOutputs::default());
    let mut goose_report = true;
    let output_dir = match o.obj("output") {
        Some(out) => {
            let d = out.str("dir").map(PathBuf::from);
            if let Some(n) = out.get("interval") {
                match n.as_duration() {
                    Some(d) if d >= Duration::from_millis(100) => interval = Some(d),
                    Some(_) => n.error("must be at least 100ms"),
                    None => {}
                }
            }
            if let Some(n) = out.get("checkpoint") {
                match n.as_duration() {
                    Some(d) if d >= Duration::from_millis(200) => checkpoint = d,
                    Some(_) => n.error("must be at least 200ms"),
                    None => {}
                }
            }
            if let Some(b) = out.get("goose_report").and_then(|n| n.as_bool()) {
                goose_report = b;
            }
            live = read_live(&out, interval);
            out.finish();
            d.unwrap_or_else(|| PathBuf::from("reports"))
        }
        None => PathBuf::from("reports"),
    };
    Output {
        dir: output_dir,
        interval,
        checkpoint,
        live,
        goose_report,
    }
}

/// The interval a run of `total` length gets when none is written.
pub fn default_interval(total: Duration) -> Duration {
    Duration::from_secs(total.as_secs().div_ceil(30).clamp(1, 5))
}
