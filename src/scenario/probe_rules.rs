//! Probe rules: the keys of `[thresholds]` that start with `probe.`, judged
//! on the series the probes recorded (`metrics/probe_judge.rs`).
//!
//! ```text
//! rule      = key " = " value
//! key       = "probe." NAME [ " " kind ]
//! kind      = "drift" | "slope" | "after_close"      ; none: a bound
//! value     = OP " " rhs | "{ rule = \"" OP " " rhs "\"" [ ", consecutive = " INT ] [ ", wait = \"" DURATION "\"" ] " }"
//! OP        = "<" | "<=" | ">" | ">=" | "=="
//! rhs       = term { ("+" | "-") term }                ; bound and after_close
//!           | NUMBER "%"                               ; drift: relative change, first vs last window
//!           | NUMBER [ SIZE ] "/" ( "h" | "min" | "s" ) ; slope: least squares over the steady phase
//! term      = NUMBER [ SIZE ] | OWN [ "*" NUMBER ] | NUMBER "*" OWN
//! OWN       = "sockets_open" | "users_active" | "runs_in_flight"
//! SIZE      = "B" | "KB" | "MB" | "GB" | "KiB" | "MiB" | "GiB"
//! ```
//!
//! A bound fails after `consecutive` samples in a row break it (default 3):
//! a probe lags behind a close by up to its period, which must not flap.
//! `after_close` reads the probe once more `wait` (default 5s) after the
//! last socket closed. The steady phase of drift and slope: from the end of
//! the ramp to the peak, plus `[drift] warmup`, to the plan's end.
//!
//! Imports `units`, the threshold operators and the `doc` readers.

use std::time::Duration;

use super::doc::Obj;
use super::probe::Probe;
use super::thresholds::Op;

/// chatload's own series a bound may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnSeries {
    /// Ready sockets not yet closed (`chatload_sockets_open`).
    SocketsOpen,
    /// Users the plan wants now.
    UsersActive,
    /// Runs started and not yet ended.
    RunsInFlight,
}

impl OwnSeries {
    pub const ALL: [OwnSeries; 3] = [
        OwnSeries::SocketsOpen,
        OwnSeries::UsersActive,
        OwnSeries::RunsInFlight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OwnSeries::SocketsOpen => "sockets_open",
            OwnSeries::UsersActive => "users_active",
            OwnSeries::RunsInFlight => "runs_in_flight",
        }
    }
}

/// `constant + Σ factor × own series`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Linear {
    pub constant: f64,
    pub terms: Vec<(f64, OwnSeries)>,
}

impl Linear {
    /// Its value for chatload's own figures at one moment.
    pub fn eval(&self, own: impl Fn(OwnSeries) -> f64) -> f64 {
        self.constant + self.terms.iter().map(|(f, s)| f * own(*s)).sum::<f64>()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeRuleKind {
    /// Every sample against `rhs`, failing after `consecutive` in a row.
    Bound { rhs: Linear, consecutive: u32 },
    /// The mean of the steady phase's last window against its first, as a
    /// relative change (limit: a fraction).
    Drift { limit: f64 },
    /// The least-squares slope over the steady phase, per hour.
    Slope { per_hour: f64 },
    /// The value read `wait` after the last socket closed, against `rhs`.
    AfterClose { rhs: Linear, wait: Duration },
}

/// One probe rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRule {
    /// As written: `probe.active_connections <= sockets_open * 1.1 + 5`.
    pub expr: String,
    /// The probe value it judges (without `probe.`).
    pub value: String,
    pub op: Op,
    pub kind: ProbeRuleKind,
}

impl ProbeRule {
    /// The longest `after_close` wait of `rules` (the run probes once more after it).
    pub fn after_close_wait(rules: &[ProbeRule]) -> Option<Duration> {
        rules
            .iter()
            .filter_map(|r| match r.kind {
                ProbeRuleKind::AfterClose { wait, .. } => Some(wait),
                ProbeRuleKind::Bound { .. }
                | ProbeRuleKind::Drift { .. }
                | ProbeRuleKind::Slope { .. } => None,
            })
            .max()
    }

    /// Whether it compares against a series of chatload's own that only
    /// covers one shard's users.
    pub fn uses_own_sockets(&self) -> bool {
        let lin = match &self.kind {
            ProbeRuleKind::Bound { rhs, .. } | ProbeRuleKind::AfterClose { rhs, .. } => rhs,
            ProbeRuleKind::Drift { .. } | ProbeRuleKind::Slope { .. } => return false,
        };
        lin.terms
            .iter()
            .any(|(_, s)| matches!(s, OwnSeries::SocketsOpen | OwnSeries::RunsInFlight))
    }
}

fn split_op(s: &str) -> Result<(Op, &str), String> {
    super::thresholds::parse_op(s.trim()).ok_or_else(|| {
        format!(
            "`{}` must start with an operator: <, <=, >, >= or ==",
            s.trim()
        )
    })
}

fn number(s: &str) -> Result<f64, String> {
    let v = if s.ends_with(|c: char| c.is_ascii_alphabetic()) {
        crate::units::parse_bytes(s)? as f64
    } else {
        s.parse::<f64>()
            .map_err(|_| format!("`{s}` is not a number (a size such as 2MB is one too)"))?
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("`{s}` is not a finite number"))
    }
}

fn own(s: &str) -> Option<OwnSeries> {
    OwnSeries::ALL.into_iter().find(|o| o.name() == s)
}

fn term(t: &str) -> Result<(f64, Option<OwnSeries>), String> {
    let t = t.trim();
    if let Some((a, b)) = t.split_once('*') {
        let (a, b) = (a.trim(), b.trim());
        return match (own(a), own(b)) {
            (Some(s), None) => Ok((number(b)?, Some(s))),
            (None, Some(s)) => Ok((number(a)?, Some(s))),
            _ => Err(format!("`{t}`: a product is one of chatload's series (sockets_open, users_active, runs_in_flight) times a number")),
        };
    }
    match own(t) {
        Some(s) => Ok((1.0, Some(s))),
        None => number(t).map(|n| (n, None)).map_err(|e| {
            format!("{e}; a bound's terms are numbers and chatload's series sockets_open, users_active, runs_in_flight")
        }),
    }
}

/// `sockets_open * 1.1 + 5` into a [`Linear`].
pub fn parse_linear(s: &str) -> Result<Linear, String> {
    let mut lin = Linear::default();
    let mut sign = 1.0;
    let mut start = 0;
    let bytes = s.as_bytes();
    let push = |piece: &str, sign: f64, lin: &mut Linear| -> Result<(), String> {
        if piece.trim().is_empty() {
            return Err(format!("`{s}`: a term is missing"));
        }
        match term(piece)? {
            (n, None) => lin.constant += sign * n,
            (f, Some(o)) => lin.terms.push((sign * f, o)),
        }
        Ok(())
    };
    for i in 0..bytes.len() {
        let c = bytes[i];
        // A + or - between terms (not a sign at the start, not an exponent).
        let after_e =
            i > 0 && matches!(bytes[i - 1], b'e' | b'E') && i >= 2 && bytes[i - 2].is_ascii_digit();
        if (c == b'+' || c == b'-') && i > start && !after_e && !s[start..i].trim().is_empty() {
            push(&s[start..i], sign, &mut lin)?;
            sign = if c == b'+' { 1.0 } else { -1.0 };
            start = i + 1;
        }
    }
    push(&s[start..], sign, &mut lin)?;
    Ok(lin)
}

/// `2MB/h`, `150/min`, `3/s` into units per hour.
pub fn parse_per_hour(s: &str) -> Result<f64, String> {
    let (n, per) = s
        .rsplit_once('/')
        .ok_or_else(|| format!("`{s}`: a slope is a change per time, e.g. 2MB/h, 100/h, 5/min"))?;
    let hours = match per.trim() {
        "h" => 1.0,
        "min" => 1.0 / 60.0,
        "s" => 1.0 / 3600.0,
        other => return Err(format!("`{other}`: per h, min or s")),
    };
    Ok(number(n.trim())? / hours)
}

fn parse_kind(
    kind: &str,
    rhs: &str,
    consecutive: u32,
    wait: Duration,
) -> Result<ProbeRuleKind, String> {
    match kind {
        "" => Ok(ProbeRuleKind::Bound {
            rhs: parse_linear(rhs)?,
            consecutive,
        }),
        "after_close" => Ok(ProbeRuleKind::AfterClose {
            rhs: parse_linear(rhs)?,
            wait,
        }),
        "drift" => Ok(ProbeRuleKind::Drift {
            limit: crate::units::parse_percent(rhs)?,
        }),
        "slope" => Ok(ProbeRuleKind::Slope {
            per_hour: parse_per_hour(rhs)?,
        }),
        other => Err(format!(
            "`{other}`: a probe rule is `probe.NAME` (a bound), `probe.NAME drift`, `probe.NAME slope` or `probe.NAME after_close`"
        )),
    }
}

/// Parses one rule; `values` are the probe values the scenario declares.
pub fn parse_rule(
    key: &str,
    rule: &str,
    consecutive: u32,
    wait: Duration,
    values: &[&str],
) -> Result<ProbeRule, String> {
    let rest = key.strip_prefix("probe.").unwrap_or(key);
    let (value, kind) = rest.split_once(' ').unwrap_or((rest, ""));
    let (value, kind) = (value.trim(), kind.trim());
    if !values.contains(&value) {
        return Err(if values.is_empty() {
            format!("`probe.{value}`: the scenario has no [[probe]] with a value named `{value}`")
        } else {
            format!(
                "`probe.{value}`: no [[probe]] value has that name (known: {})",
                values.join(", ")
            )
        });
    }
    let (op, rhs) = split_op(rule)?;
    Ok(ProbeRule {
        expr: format!("{key} {}", rule.trim()),
        value: value.to_string(),
        op,
        kind: parse_kind(kind, rhs, consecutive, wait)?,
    })
}

/// The `probe.` keys of `[thresholds]` (the threshold reader leaves them
/// to this one).
pub(super) fn read_probe_rules(o: &Obj<'_>, probes: Option<&[Probe]>) -> Option<Vec<ProbeRule>> {
    let Some(tbl) = o.obj("thresholds") else {
        return Some(Vec::new());
    };
    let values: Vec<&str> = probes
        .unwrap_or(&[])
        .iter()
        .flat_map(|p| p.values.iter().map(|v| v.name.as_str()))
        .collect();
    let mut out = Vec::new();
    let mut ok = true;
    for (key, node, _) in tbl.entries() {
        if !key.starts_with("probe.") {
            continue;
        }
        let (mut consecutive, mut wait) = (3u32, Duration::from_secs(5));
        let kind = key.split_once(' ').map_or("", |(_, k)| k.trim());
        let rule = if let Some(v) = node.item_str() {
            Some(v.to_string())
        } else if let Some(t) = node.as_obj() {
            let rule = t
                .require("rule")
                .and_then(|r| r.as_str().map(str::to_string));
            if let Some(n) = t.get("consecutive") {
                match n.as_u64() {
                    Some(_) if !kind.is_empty() => {
                        n.error("`consecutive` is for a bound (`probe.NAME`) only");
                        ok = false;
                    }
                    Some(k) if (1..=1000).contains(&k) => consecutive = k as u32,
                    Some(_) => {
                        n.error("must be 1 to 1000");
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            if let Some(n) = t.get("wait") {
                match n.as_duration() {
                    Some(_) if kind != "after_close" => {
                        n.error("`wait` is for `probe.NAME after_close` only");
                        ok = false;
                    }
                    Some(d) if d <= Duration::from_secs(600) => wait = d,
                    Some(_) => {
                        n.error("at most 10m");
                        ok = false;
                    }
                    None => ok = false,
                }
            }
            t.finish();
            rule
        } else {
            node.error("expected a string such as \"<= sockets_open * 1.1 + 5\", or a table { rule = \"...\", consecutive = 3 }");
            None
        };
        let Some(rule) = rule else {
            ok = false;
            continue;
        };
        // Values of a probe that failed to load are unknown, not wrong.
        if probes.is_none() {
            continue;
        }
        match parse_rule(&key, &rule, consecutive, wait, &values) {
            Ok(r) => out.push(r),
            Err(e) => {
                node.error(e);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar() {
        let v = ["active_connections", "rss_bytes"];
        let r = parse_rule(
            "probe.active_connections",
            "<= sockets_open * 1.1 + 5",
            3,
            Duration::from_secs(5),
            &v,
        )
        .unwrap();
        let ProbeRuleKind::Bound { rhs, consecutive } = &r.kind else {
            panic!("a bound")
        };
        assert_eq!(*consecutive, 3);
        assert!((rhs.eval(|_| 100.0) - 115.0).abs() < 1e-9);
        let lin = parse_linear("2 * users_active - 1e3 + 2MB").unwrap();
        assert_eq!(lin.constant, 2_000_000.0 - 1000.0);
        assert_eq!(lin.terms, vec![(2.0, OwnSeries::UsersActive)]);
        let s = parse_rule("probe.rss_bytes slope", "< 2MB/h", 3, Duration::ZERO, &v).unwrap();
        assert_eq!(s.kind, ProbeRuleKind::Slope { per_hour: 2e6 });
        let m = parse_per_hour("5/min").unwrap();
        assert_eq!(m, 300.0);
        let d = parse_rule("probe.rss_bytes drift", "< 10%", 3, Duration::ZERO, &v).unwrap();
        assert_eq!(d.kind, ProbeRuleKind::Drift { limit: 0.1 });
        assert!(parse_rule("probe.nope", "< 1", 3, Duration::ZERO, &v)
            .unwrap_err()
            .contains("known: active_connections, rss_bytes"));
        assert!(parse_rule("probe.rss_bytes wobble", "< 1", 3, Duration::ZERO, &v).is_err());
        assert!(parse_linear("sockets_open * users_active").is_err());
        assert!(parse_linear("5 +").is_err());
    }
}
