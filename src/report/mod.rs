//! Reports: one view model ([`ReportData`], built from a snapshot only), one
//! renderer per format. A report never needs the network or the live run.

pub mod console;
pub mod history;
pub mod html;
pub mod junit;
pub mod markdown;

use crate::metrics::snapshot::{HistogramData, Snapshot};
use crate::metrics::threshold::{self, RuleResult};
use crate::names;
use crate::units::format_us;

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

/// Everything a renderer shows, already formatted.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    pub title: String,
    pub run_id: String,
    pub verdict: crate::outcome::Verdict,
    pub started_at: String,
    pub duration: String,
    pub target: String,
    pub users: u64,
    pub tool_version: String,
    pub key_numbers: Vec<(String, String)>,
    pub latencies: Vec<LatencyRow>,
    pub runs: Vec<(String, u64)>,
    pub connections: Vec<(String, u64)>,
    /// Token sources, refreshes, rejections and expiries.
    pub tokens: Vec<(String, u64)>,
    /// Threads, switches, REST statuses, history checks and persistence misses.
    pub threads: Vec<(String, u64)>,
    pub closes: Vec<(String, u64)>,
    pub events: Vec<(String, u64)>,
    pub frames: Vec<(String, u64)>,
    pub thresholds: Vec<RuleResult>,
    /// Violations by class (totals), then by class and detail.
    pub violations: Vec<(String, u64)>,
    pub violation_details: Vec<(String, u64)>,
    /// One line per kept offending frame: class, user, run and what was wrong.
    pub samples: Vec<SampleLine>,
    pub notes: Vec<String>,
    pub server_truth: Vec<(String, u64)>,
    /// Comparison with a baseline run.
    pub baseline: Option<crate::metrics::compare::Comparison>,
    /// Over-time data, one point per interval (x = seconds since start at the interval's end).
    pub over_time: OverTime,
    /// Latency distributions: per metric, (bucket upper bound in µs, count).
    pub distributions: Vec<(String, Vec<(u64, u64)>)>,
    /// The scenario as run, pretty JSON (holds no secret values).
    pub settings_json: String,
    /// Merged runs: one line per shard.
    pub shards: Vec<crate::metrics::snapshot::ShardSummary>,
    /// How hard the generator worked (single runs).
    pub generator: Option<crate::metrics::snapshot::GeneratorHealth>,
    /// A capacity search's steps and knee.
    pub capacity: Option<CapacityView>,
}

/// A capacity search, formatted.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityView {
    /// The knee, what broke and the headroom, in one line.
    pub summary: String,
    pub slo: Vec<String>,
    pub rows: Vec<CapacityRow>,
    /// The step that is the knee.
    pub knee_index: Option<u32>,
    pub passed: bool,
}

/// One step of a capacity search.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityRow {
    pub index: u32,
    pub load: String,
    pub runs: u64,
    pub ttc_p50: String,
    pub ttc_p95: String,
    pub ttc_p99: String,
    /// Failed runs per started run.
    pub error_rate: String,
    /// 1011 closes per started run.
    pub close_1011: String,
    /// Open model: arrivals of the step that did not start on time
    /// (`dropped D, late L`); `None` in the closed model.
    pub not_on_time: Option<String>,
    pub held: bool,
    /// The SLOs that failed, with what was measured.
    pub broke: String,
}

fn capacity_view(c: &crate::metrics::capacity::CapacityResult) -> CapacityView {
    let rows = c
        .steps
        .iter()
        .map(|st| {
            let n = |k: &str| st.counters.get(k).copied().unwrap_or(0);
            let started = n(names::RUNS_STARTED);
            let per_run = |k: &str| {
                if started == 0 {
                    "n/a".to_string()
                } else {
                    crate::units::format_value(n(k) as f64 / started as f64, "fraction")
                }
            };
            let ttc = |q: fn(&HistogramData) -> u64| {
                st.histograms
                    .get(names::TTC)
                    .map_or_else(|| "n/a".to_string(), |h| format_us(q(h) as f64))
            };
            CapacityRow {
                index: st.index,
                load: st.load_text.clone(),
                runs: started,
                ttc_p50: ttc(|h| h.p50_us),
                ttc_p95: ttc(|h| h.p95_us),
                ttc_p99: ttc(|h| h.p99_us),
                error_rate: per_run(names::RUNS_FAILED),
                close_1011: per_run("closes.1011"),
                not_on_time: st.counters.contains_key(names::STARTS_INTENDED).then(|| {
                    format!(
                        "{} dropped, {} late",
                        n(names::STARTS_DROPPED),
                        n(names::STARTS_LATE)
                    )
                }),
                held: st.held,
                broke: st
                    .slo
                    .iter()
                    .filter(|v| !v.passed)
                    .map(|v| format!("{} (measured {})", v.threshold, v.observed_text))
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })
        .collect();
    let knee_index = c
        .steps
        .iter()
        .take_while(|s| s.held)
        .last()
        .map(|s| s.index);
    CapacityView {
        summary: c.summary(),
        slo: c.slo.clone(),
        rows,
        knee_index,
        passed: c.passed(),
    }
}

/// Series for the over-time charts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverTime {
    /// (t, ttfe p50, p95, p99) in µs.
    pub ttfe: Vec<(f64, f64, f64, f64)>,
    /// (t, ttc p50, p95, p99) in µs.
    pub ttc: Vec<(f64, f64, f64, f64)>,
    /// The first and last drift windows (seconds), when the run has drift rules.
    pub drift_spans: Option<[(f64, f64); 2]>,
    /// (t, ok runs per second, failed runs per second).
    pub runs: Vec<(f64, f64, f64)>,
    /// Per close code: (t, closes per second).
    pub closes: Vec<(String, Vec<(f64, f64)>)>,
}

fn over_time(s: &Snapshot) -> OverTime {
    let mut o = OverTime::default();
    let mut codes: std::collections::BTreeSet<String> = Default::default();
    for i in &s.intervals {
        for k in i.counters.keys() {
            if let Some(c) = k.strip_prefix("closes.") {
                codes.insert(c.to_string());
            }
        }
    }
    let mut closes: Vec<(String, Vec<(f64, f64)>)> =
        codes.into_iter().map(|c| (c, Vec::new())).collect();
    for i in chart_intervals(&s.intervals).iter() {
        let t = i.start_s + i.length_s;
        let len = i.length_s.max(1e-3);
        let c = |k: &str| i.counters.get(k).copied().unwrap_or(0) as f64;
        for (metric, series) in [(names::TTFE, &mut o.ttfe), (names::TTC, &mut o.ttc)] {
            if let Some(h) = i.histograms.get(metric) {
                series.push((t, h.p50_us as f64, h.p95_us as f64, h.p99_us as f64));
            }
        }
        o.runs
            .push((t, c(names::RUNS_OK) / len, c(names::RUNS_FAILED) / len));
        for (code, series) in &mut closes {
            series.push((t, c(&format!("closes.{code}")) / len));
        }
    }
    o.closes = closes;
    let has_drift = s
        .scenario
        .get("thresholds")
        .and_then(|t| t.as_object())
        .is_some_and(|t| {
            t.keys()
                .any(|k| k.split_whitespace().nth(2) == Some("drift"))
        });
    if has_drift {
        if let Ok(spec) = crate::metrics::merge::drift_spec_from_echo(&s.scenario) {
            o.drift_spans = crate::metrics::threshold::drift_spans(&s.intervals, spec);
        }
    }
    o
}

/// The intervals the charts plot: a last interval shorter than half the one
/// before it (the run ended a moment after an interval closed) is merged into
/// that one, exactly (counters add, histograms merge). Plotted alone, a few
/// runs over a few milliseconds read as a spike in the per-second rates.
fn chart_intervals(
    intervals: &[crate::metrics::snapshot::IntervalData],
) -> std::borrow::Cow<'_, [crate::metrics::snapshot::IntervalData]> {
    match intervals {
        [.., prev, last] if last.length_s < prev.length_s / 2.0 => {
            let n = intervals.len();
            let mut v = intervals[..n - 2].to_vec();
            v.extend(crate::metrics::collector::roll_up(&intervals[n - 2..]));
            std::borrow::Cow::Owned(v)
        }
        _ => std::borrow::Cow::Borrowed(intervals),
    }
}

fn distributions(s: &Snapshot) -> Vec<(String, Vec<(u64, u64)>)> {
    let mut out = Vec::new();
    let mut metrics: Vec<&String> = s.histograms.keys().collect();
    metrics.sort_by_key(|m| metric_rank(m));
    for m in metrics {
        let Ok(h) = s.histograms[m].decode(m) else {
            continue;
        };
        if h.is_empty() {
            continue;
        }
        let mut buckets: Vec<(u64, u64)> = h
            .iter_log(100, 2.0)
            .map(|v| (v.value_iterated_to(), v.count_since_last_iteration()))
            .collect();
        // Leading empty buckets carry no information.
        let first = buckets.iter().position(|b| b.1 > 0).unwrap_or(0);
        buckets.drain(..first.saturating_sub(1));
        out.push((m.clone(), buckets));
    }
    out
}

/// Order latency metrics the way people read a run: connect, ready, first
/// event, per-event, completion.
fn metric_rank(m: &str) -> (u8, String) {
    let r = match m {
        names::WS_CONNECT => 0,
        names::WS_READY => 1,
        names::TTFE => 2,
        names::TTC => 4,
        names::EVENT_GAP_MAX => 5,
        names::SEND_LAG => 6,
        _ if m.starts_with("event_") => 3,
        _ => 7,
    };
    (r, m.to_string())
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

impl ReportData {
    pub fn from_snapshot(s: &Snapshot) -> ReportData {
        let c = |k: &str| s.counters.get(k).copied().unwrap_or(0);
        let rec_like = crate::metrics::Recorder {
            histograms: Default::default(),
            counters: s.counters.clone(),
            samples: Vec::new(),
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
        let key_numbers = vec![
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
                format!("{} ({} closes)", rate("close_1011"), c("closes.1011")),
            ),
            (
                "ttfe p50 / p95 / p99".to_string(),
                format!(
                    "{} / {} / {}",
                    lat(names::TTFE, |h| h.p50_us),
                    lat(names::TTFE, |h| h.p95_us),
                    lat(names::TTFE, |h| h.p99_us)
                ),
            ),
            (
                "ttc p50 / p95 / p99".to_string(),
                format!(
                    "{} / {} / {}",
                    lat(names::TTC, |h| h.p50_us),
                    lat(names::TTC, |h| h.p95_us),
                    lat(names::TTC, |h| h.p99_us)
                ),
            ),
        ];
        let mut metrics: Vec<&String> = s.histograms.keys().collect();
        metrics.sort_by_key(|m| metric_rank(m));
        let latencies = metrics.iter().map(|m| row(m, &s.histograms[*m])).collect();
        let mut runs = vec![
            ("started".to_string(), c(names::RUNS_STARTED)),
            ("ok".to_string(), c(names::RUNS_OK)),
        ];
        let mut key_numbers = key_numbers;
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
        let mut connections = with_prefix(s, "connections.");
        connections.push(("reconnects".into(), c(names::RECONNECTS)));
        connections.extend(
            with_prefix(s, "reconnects.")
                .into_iter()
                .map(|(k, v)| (format!("reconnects {k}"), v)),
        );
        let tokens = with_prefix(s, "tokens.");
        let mut threads = with_prefix(s, "threads.");
        threads.extend(
            with_prefix(s, "history.")
                .into_iter()
                .map(|(k, v)| (format!("history {k}"), v)),
        );
        if s.counters.contains_key("history.messages_checked") || c("persistence_miss") > 0 {
            threads.push(("persistence misses".into(), c("persistence_miss")));
        }
        threads.extend(
            with_prefix(s, "rest.")
                .into_iter()
                .map(|(k, v)| (format!("HTTP {k}"), v)),
        );
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
        let mut frames = with_prefix(s, "frames.");
        frames.extend(
            with_prefix(s, "bytes.")
                .into_iter()
                .map(|(k, v)| (format!("bytes {k}"), v)),
        );
        ReportData {
            title: s.scenario_name.clone(),
            run_id: s.run_id.clone(),
            verdict: s.verdict,
            started_at: s.started_at.clone(),
            duration: format_us(s.duration_s * 1e6),
            target: if s.target.embedded {
                format!("{} (embedded reference server)", s.target.url)
            } else {
                s.target.url.clone()
            },
            users: s.users,
            tool_version: format!("{} {}", s.tool.name, s.tool.version),
            key_numbers,
            latencies,
            runs,
            connections,
            tokens,
            threads,
            closes,
            events: with_prefix(s, "events."),
            frames,
            thresholds: s.thresholds.clone(),
            violations: with_prefix(s, "violations.")
                .into_iter()
                .filter(|(k, _)| !k.contains('.'))
                .collect(),
            violation_details: with_prefix(s, "violations.")
                .into_iter()
                .filter(|(k, _)| k.contains('.'))
                .collect(),
            samples: s
                .samples
                .iter()
                .map(|f| SampleLine {
                    class: f.class.clone(),
                    user_id: f.user_id.clone(),
                    run_id: f.run_id.clone().unwrap_or_else(|| "-".into()),
                    message: f.message.clone(),
                    frame: f.frame.clone(),
                })
                .collect(),
            notes: s.notes.clone(),
            server_truth: s
                .server_truth
                .as_ref()
                .and_then(|v| v.as_object())
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
                        .collect()
                })
                .unwrap_or_default(),
            baseline: s.baseline.clone(),
            over_time: over_time(s),
            distributions: distributions(s),
            settings_json: serde_json::to_string_pretty(&s.scenario).unwrap_or_default(),
            shards: s.shards.clone(),
            generator: s.generator.clone(),
            capacity: s.capacity.as_ref().map(capacity_view),
        }
    }

    /// Shard lines for tables: index, run, users, runs started, ok, CPU, send lag p99, verdict.
    pub fn shard_rows(&self) -> Vec<[String; 8]> {
        self.shards
            .iter()
            .map(|s| {
                let g = s.generator.as_ref();
                [
                    s.index.to_string(),
                    s.run_id.clone(),
                    s.users.to_string(),
                    s.runs_started.to_string(),
                    s.runs_ok.to_string(),
                    g.and_then(|g| g.cpu_s)
                        .map_or("n/a".into(), |c| format!("{c:.1}s")),
                    g.and_then(|g| g.send_lag_p99_us)
                        .map_or("n/a".into(), |v| format_us(v as f64)),
                    format!(
                        "{}{}",
                        s.verdict,
                        if g.is_some_and(|g| g.saturated) {
                            " (generator saturated)"
                        } else {
                            ""
                        }
                    ),
                ]
            })
            .collect()
    }

    /// The failed thresholds, as written.
    pub fn failed_thresholds(&self) -> Vec<&RuleResult> {
        self.thresholds.iter().filter(|v| !v.passed).collect()
    }
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

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[value(name = "md")]
    Markdown,
    Html,
    Json,
    Junit,
}

impl Format {
    /// Every format, in the order a run and `merge` write them (the one list:
    /// a new format is a variant here, its arms below and its renderer file).
    pub const ALL: [Format; 4] = [Format::Json, Format::Markdown, Format::Html, Format::Junit];

    /// The file a run writes for this format.
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Markdown => "report.md",
            Format::Html => "report.html",
            Format::Json => "snapshot.json",
            Format::Junit => "junit.xml",
        }
    }
}

/// Renders one format from a snapshot's view model (the JSON format is the snapshot itself).
pub fn render(report: &ReportData, snapshot: &Snapshot, format: Format) -> Vec<u8> {
    let mut out = Vec::new();
    let r = match format {
        Format::Markdown => markdown::render(report, &mut out),
        Format::Html => html::render(report, &mut out),
        Format::Junit => junit::render(report, &mut out),
        Format::Json => {
            out.extend_from_slice(snapshot.to_json().as_bytes());
            Ok(())
        }
    };
    r.expect("rendering into memory cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::collector::Interval;
    use crate::metrics::snapshot::IntervalData;
    use crate::metrics::Recorder;

    fn interval(start_s: f64, length_s: f64, ok: u64) -> IntervalData {
        let mut rec = Recorder::default();
        rec.count(names::RUNS_OK, ok);
        rec.record(names::TTC, 1000 * ok);
        IntervalData::from_interval(&Interval {
            start_s,
            length_s,
            rec,
        })
    }

    #[test]
    fn a_short_last_interval_joins_the_one_before_it_on_the_charts() {
        // 10 runs/s, then 3 runs in the 0.1 s before the end: 30/s alone.
        let ivs = vec![
            interval(0.0, 2.0, 20),
            interval(2.0, 2.0, 20),
            interval(4.0, 0.1, 3),
        ];
        let chart = chart_intervals(&ivs);
        assert_eq!(chart.len(), 2);
        assert_eq!(chart[0], ivs[0]);
        let last = &chart[1];
        assert_eq!(last.start_s, 2.0);
        assert!((last.length_s - 2.1).abs() < 1e-9, "{}", last.length_s);
        assert_eq!(last.counters[names::RUNS_OK], 23);
        assert_eq!(last.histograms[names::TTC].count, 2);
        // Its rate is the two intervals' together, not a spike.
        let rate = last.counters[names::RUNS_OK] as f64 / last.length_s;
        assert!((rate - 23.0 / 2.1).abs() < 1e-6, "{rate}");
        // An ordinary last interval, or a lone one, is plotted as it is.
        let even = vec![interval(0.0, 2.0, 20), interval(2.0, 1.5, 15)];
        assert_eq!(chart_intervals(&even).len(), 2);
        assert_eq!(chart_intervals(&even[..1]).len(), 1);
        assert!(chart_intervals(&[]).is_empty());
    }
}
