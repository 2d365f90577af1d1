//! The view model's rows: [`ReportData::from_snapshot`] formats a snapshot's
//! counters, histograms and samples into the tables every renderer shows
//! (key numbers, latency rows, runs, connections, threads, closes, frames).
//!
//! Imports `metrics`, `names` and `units` (below `report`) and the other
//! view builders of this folder.

use crate::metrics::snapshot::{HistogramData, Snapshot};
use crate::metrics::threshold;
use crate::names;
use crate::units::format_us;

use super::capacity_view::capacity_view;
use super::charts::{distributions, metric_rank, over_time, spectra};
use super::ReportData;

/// One latency metric's row.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    pub metric: String,
    pub count: u64,
    pub p50: String,
    pub p90: String,
    pub p95: String,
    pub p99: String,
    pub max: String,
}

/// A kept offending frame, for the violations table.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleLine {
    pub class: String,
    pub user_id: String,
    pub run_id: String,
    pub message: String,
    pub frame: String,
}

fn row(metric: &str, h: &HistogramData) -> LatencyRow {
    let f = |v: u64| format_us(v as f64);
    LatencyRow {
        metric: metric.to_string(),
        count: h.count,
        p50: f(h.p50_us),
        p90: f(h.p90_us),
        p95: f(h.p95_us),
        p99: f(h.p99_us),
        max: f(h.max_us),
    }
}

fn with_prefix(s: &Snapshot, prefix: &str) -> Vec<(String, u64)> {
    s.counters
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rest.to_string(), *v)))
        .collect()
}

/// The target line of every report: the URL, and its TLS settings (an
/// insecure run says so, in every format).
fn target_text(t: &crate::metrics::snapshot::TargetInfo) -> String {
    let url = if t.embedded {
        format!("{} (embedded reference server)", t.url)
    } else {
        t.url.clone()
    };
    match t.tls_text() {
        tls if tls.is_empty() => url,
        tls => format!("{url} [{tls}]"),
    }
}

impl ReportData {
    pub fn from_snapshot(s: &Snapshot) -> ReportData {
        let mut metrics: Vec<&String> = s.histograms.keys().collect();
        metrics.sort_by_key(|m| metric_rank(m));
        let latencies = metrics.iter().map(|m| row(m, &s.histograms[*m])).collect();
        ReportData {
            title: s.scenario_name.clone(),
            run_id: s.run_id.clone(),
            verdict: s.verdict,
            started_at: s.started_at.clone(),
            duration: format_us(s.duration_s * 1e6),
            target: target_text(&s.target),
            insecure: s.target.insecure,
            users: s.users,
            tags: s.tags.clone().into_iter().collect(),
            tool_version: format!("{} {}", s.tool.name, s.tool.version),
            key_numbers: key_numbers(s),
            latencies,
            runs: runs(s),
            connections: connections(s),
            tokens: with_prefix(s, "tokens."),
            threads: threads(s),
            closes: closes(s),
            protocol_errors: with_prefix(s, "connections.protocol_error."),
            events: with_prefix(s, "events."),
            frames: frames(s),
            thresholds: s.thresholds.clone(),
            violations: with_prefix(s, "violations.")
                .into_iter()
                .filter(|(k, _)| !k.contains('.'))
                .collect(),
            violation_details: with_prefix(s, "violations.")
                .into_iter()
                .filter(|(k, _)| k.contains('.'))
                .collect(),
            samples: samples(s),
            notes: s.notes.clone(),
            server_truth: server_truth(s),
            baseline: s.baseline.clone().map(|mut c| {
                c.sort_rows();
                c
            }),
            over_time: over_time(s),
            distributions: distributions(s),
            spectra: spectra(&s.histograms),
            settings_json: serde_json::to_string_pretty(&s.scenario).unwrap_or_default(),
            shards: s.shards.clone(),
            generator: s.generator.clone(),
            capacity: s.capacity.as_ref().map(|c| capacity_view(c, &s.counters)),
            knee: s.capacity.as_ref().and_then(super::knee_view::knee_view),
            validity: super::validity_view::cause_lines(s),
            offered: super::validity_view::offered_rows(s),
            failures: super::validity_view::failure_rows(s),
            probes: super::probe_view::probe_views(s),
        }
    }
}

/// The generator's own health in one line: where frames were timed, its
/// delay, its CPU against what it could use, its rate, and whether it was
/// saturated (and why).
pub fn generator_text(g: &crate::metrics::snapshot::GeneratorHealth) -> String {
    let us = |v: Option<u64>| v.map_or_else(|| "n/a".to_string(), |v| format_us(v as f64));
    let mut parts = Vec::new();
    if let Some(t) = &g.receive_times {
        parts.push(format!("{t} receive times"));
    }
    if g.delay_p50_us.is_some() {
        parts.push(format!(
            "delay p50 / p99 / p99.9 {} / {} / {}",
            us(g.delay_p50_us),
            us(g.delay_p99_us),
            us(g.delay_p999_us)
        ));
    }
    let mut cpu = g
        .cpu_s
        .map_or("CPU n/a".to_string(), |c| format!("CPU {c:.1} s"));
    if let Some(per_run) = g.cpu_us_per_run {
        cpu.push_str(&format!(" ({per_run:.1} us per run)"));
    }
    if let Some(u) = g.usable_cpus {
        cpu.push_str(&format!(" of {u:.1} usable CPUs"));
    }
    if let Some(b) = g.cpus_busy {
        cpu.push_str(&format!(", those {:.0}% busy", b * 100.0));
    }
    parts.push(cpu);
    if let Some(r) = g.runs_per_s {
        parts.push(format!("{r:.1} runs/s"));
    }
    parts.push(if g.saturated {
        format!("SATURATED ({})", g.saturated_by.join("; "))
    } else {
        "not saturated".to_string()
    });
    parts.join("; ")
}

/// A counter of the snapshot (0 when absent).
fn counter(s: &Snapshot, k: &str) -> u64 {
    s.counters.get(k).copied().unwrap_or(0)
}

/// The headline numbers: runs, connections, the 1011 rate, ttfe and ttc
/// percentiles (and, in the open model, the arrivals).
fn key_numbers(s: &Snapshot) -> Vec<(String, String)> {
    let c = |k: &str| counter(s, k);
    let rec_like = crate::metrics::Recorder {
        histograms: Default::default(),
        counters: s.counters.clone(),
        samples: Vec::new(),
        failures: Vec::new(),
    };
    let rate = |name: &str| {
        threshold::rate(&rec_like, name).map_or_else(
            || "n/a".to_string(),
            |v| crate::units::format_value(v, "fraction"),
        )
    };
    let lat = |m: &str, q: fn(&HistogramData) -> u64| {
        s.histograms
            .get(m)
            .map_or_else(|| "n/a".to_string(), |h| format_us(q(h) as f64))
    };
    let percentiles = |m: &str| {
        format!(
            "{} / {} / {}",
            lat(m, |h| h.p50_us),
            lat(m, |h| h.p95_us),
            lat(m, |h| h.p99_us)
        )
    };
    let mut key_numbers = vec![
        (
            "runs started".to_string(),
            c(names::RUNS_STARTED).to_string(),
        ),
        (
            "runs ok".to_string(),
            format!("{} ({})", c(names::RUNS_OK), rate("run_ok")),
        ),
        ("runs failed".to_string(), c(names::RUNS_FAILED).to_string()),
        (
            "connections upgraded".to_string(),
            format!(
                "{} of {} attempted",
                c(names::CONN_UPGRADED),
                c(names::CONN_ATTEMPTED)
            ),
        ),
        (
            "close_1011 rate".to_string(),
            close_1011_text(rate("close_1011"), c("closes.1011"), c("closes_auth.1011")),
        ),
        ("ttfe p50 / p95 / p99".to_string(), percentiles(names::TTFE)),
        ("ttc p50 / p95 / p99".to_string(), percentiles(names::TTC)),
    ];
    if let Some(g) = &s.generator {
        key_numbers.push(("generator".to_string(), generator_text(g)));
    }
    if s.counters.contains_key(names::STARTS_INTENDED) {
        // Open model: what the rate plan called for, and what the pool could not serve.
        key_numbers.insert(
            1,
            (
                "arrivals".to_string(),
                format!(
                    "{} intended, {} dropped (no free session), {} started late",
                    c(names::STARTS_INTENDED),
                    c(names::STARTS_DROPPED),
                    c(names::STARTS_LATE)
                ),
            ),
        );
    }
    key_numbers
}

/// Runs started and ok, the open model's arrivals, failures by reason.
fn runs(s: &Snapshot) -> Vec<(String, u64)> {
    let c = |k: &str| counter(s, k);
    let mut runs = vec![
        ("started".to_string(), c(names::RUNS_STARTED)),
        ("ok".to_string(), c(names::RUNS_OK)),
    ];
    if s.counters.contains_key(names::STARTS_INTENDED) {
        runs.extend([
            ("arrivals intended".to_string(), c(names::STARTS_INTENDED)),
            (
                "arrivals dropped (no free session)".to_string(),
                c(names::STARTS_DROPPED),
            ),
            (
                "arrivals started late (queued)".to_string(),
                c(names::STARTS_LATE),
            ),
        ]);
    }
    runs.extend(
        with_prefix(s, "runs.failed.")
            .into_iter()
            .map(|(k, v)| (format!("failed: {k}"), v)),
    );
    runs
}

fn connections(s: &Snapshot) -> Vec<(String, u64)> {
    let mut connections = with_prefix(s, "connections.");
    connections.push(("reconnects".into(), counter(s, names::RECONNECTS)));
    connections.extend(
        with_prefix(s, "reconnects.")
            .into_iter()
            .map(|(k, v)| (format!("reconnects {k}"), v)),
    );
    connections
}

/// Threads, history checks, persistence misses and REST statuses.
fn threads(s: &Snapshot) -> Vec<(String, u64)> {
    let mut threads = with_prefix(s, "threads.");
    threads.extend(
        with_prefix(s, "history.")
            .into_iter()
            .map(|(k, v)| (format!("history {k}"), v)),
    );
    if s.counters.contains_key("history.messages_checked") || counter(s, "persistence_miss") > 0 {
        threads.push(("persistence misses".into(), counter(s, "persistence_miss")));
    }
    threads.extend(
        with_prefix(s, "rest.")
            .into_iter()
            .map(|(k, v)| (format!("HTTP {k}"), v)),
    );
    threads
}

/// The key number of 1011 closes: the rate (auth failures left out) and
/// the raw count, with how many of them were recognised auth failures.
fn close_1011_text(rate: String, closes: u64, auth: u64) -> String {
    if auth == 0 {
        return format!("{rate} ({closes} closes)");
    }
    format!("{rate} ({closes} closes, {auth} of them auth failures, counted as tokens rejected)")
}

/// Closes by code (with its name), then by phase and code.
fn closes(s: &Snapshot) -> Vec<(String, u64)> {
    let mut closes: Vec<(String, u64)> = with_prefix(s, "closes.")
        .into_iter()
        .map(|(k, v)| (close_label(&k), v))
        .collect();
    closes.extend(
        with_prefix(s, "closes_by_phase.")
            .into_iter()
            .map(|(k, v)| {
                let (phase, code) = k.split_once('.').unwrap_or((&k, ""));
                // `during_run` reads "1011 during run", `idle` "1011 while idle".
                let phase = phase.replace('_', " ");
                let phase = phase.strip_prefix("during ").unwrap_or(&phase);
                let when = if phase == "idle" { "while" } else { "during" };
                (format!("{code} {when} {phase}"), v)
            }),
    );
    closes.extend(
        with_prefix(s, "closes_auth.")
            .into_iter()
            .map(|(code, v)| (format!("{code} ending an auth failure"), v)),
    );
    closes
}

fn frames(s: &Snapshot) -> Vec<(String, u64)> {
    let mut frames = with_prefix(s, "frames.");
    frames.extend(
        with_prefix(s, "bytes.")
            .into_iter()
            .map(|(k, v)| (format!("bytes {k}"), v)),
    );
    frames
}

fn samples(s: &Snapshot) -> Vec<SampleLine> {
    s.samples
        .iter()
        .map(|f| SampleLine {
            class: f.class.clone(),
            user_id: f.user_id.clone(),
            run_id: f.run_id.clone().unwrap_or_else(|| "-".into()),
            message: f.message.clone(),
            frame: f.frame.clone(),
        })
        .collect()
}

/// The reference server's truth counters, when the run had one.
fn server_truth(s: &Snapshot) -> Vec<(String, u64)> {
    s.server_truth
        .as_ref()
        .and_then(|v| v.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

/// `1011` -> `1011 internal error`.
pub fn close_label(code: &str) -> String {
    let name = match code {
        "1000" => "normal",
        "1001" => "going away",
        "1002" => "protocol error",
        "1003" => "unsupported data",
        "1005" => "no status",
        "1006" => "abnormal, no close frame",
        "1008" => "policy violation (auth)",
        "1009" => "message too big",
        "1011" => "internal error",
        "1012" => "service restart",
        "1013" => "try again later",
        _ => "",
    };
    if name.is_empty() {
        code.to_string()
    } else {
        format!("{code} {name}")
    }
}
