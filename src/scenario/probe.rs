//! `[[probe]]`: the target's own numbers, read while the run goes. Each
//! probe GETs a URL every `every` (default: the output interval) and takes
//! named values from the answer: by JSON pointer (`format = "json"`) or by
//! metric name and labels from Prometheus text (`format = "prometheus"`).
//! Each value becomes a series `probe.<value>` that `[thresholds]` can judge
//! (`probe_rules.rs`).
//!
//! A probe's URL is a path on the target's host (`/ws/health`) or a full
//! `http(s)://` URL, whose host must pass the one allow check
//! (`target.rs`, applied by `run/preflight.rs`). Its identity comes from an
//! environment variable (`identity_env`), sent as `Authorization: Bearer
//! <value>` or in the header `header` names; the value is a secret and is
//! redacted from every output.
//!
//! Imports only the `doc` readers and `url`.

use std::time::Duration;

use super::doc::Obj;

/// One `[[probe]]` as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Its name in reports and on /metrics (`probe` label).
    pub name: String,
    /// A path on the target's host (`/ws/health`) or a full http(s) URL.
    pub url: String,
    /// How often it is read; `None`: once per output interval.
    pub every: Option<Duration>,
    /// How long one read may take before it counts as `probes.failed.timeout`.
    pub timeout: Duration,
    pub format: ProbeFormat,
    /// The environment variable holding the probe's identity (a secret).
    pub identity_env: Option<String>,
    /// The header that carries it; `None`: `Authorization: Bearer <value>`.
    pub header: Option<String>,
    /// The values taken from each answer, in file order.
    pub values: Vec<ProbeValue>,
}

/// How a probe's answer is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFormat {
    Json,
    Prometheus,
}

/// One named value of a probe: the series `probe.<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeValue {
    pub name: String,
    pub select: Selector,
}

/// Where a value is in the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// A JSON pointer (RFC 6901): `/manager/connections`.
    Pointer(String),
    /// A Prometheus metric and the labels it must carry: the sum of every
    /// sample of that name whose labels include these.
    Metric {
        name: String,
        labels: Vec<(String, String)>,
    },
}

/// The longest a probe read may take.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Probes a scenario may have, and values per probe.
const MAX_PROBES: usize = 16;
const MAX_VALUES: usize = 64;

impl Probe {
    /// The period this probe is read at, given the run's interval.
    pub fn period(&self, interval: Duration) -> Duration {
        self.every.unwrap_or(interval)
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// A probe URL: a path (`/ws/health`) or an http(s) URL with a host and no
/// credentials.
pub fn check_probe_url(u: &str) -> Result<(), String> {
    if u.starts_with('/') {
        return Ok(());
    }
    let parsed = url::Url::parse(u).map_err(|e| {
        format!("`{u}` is neither a path on the target's host (\"/ws/health\") nor a URL: {e}")
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the probe URL carries credentials (user:password@): put the identity in an environment variable and name it with `identity_env`".into());
    }
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("`{u}` must be an http:// or https:// URL with a host, or a path on the target's host such as \"/ws/health\""));
    }
    Ok(())
}

/// `metric_name{label="value",other="x"}` into its name and labels.
pub fn parse_metric_selector(s: &str) -> Result<Selector, String> {
    let s = s.trim();
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    // Letters, digits and _ (the Prometheus parser reads no `:` of
    // recording-rule names, so such a value could never be found).
    let ok_name = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !ok_name {
        return Err(format!("`{s}` is not a metric name of letters, digits and _ (write e.g. process_resident_memory_bytes or http_connections{{state=\"open\"}})"));
    }
    let labels = match rest {
        None => Vec::new(),
        Some(rest) => {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| format!("`{s}`: labels go between {{ and }} at the end"))?;
            parse_labels(inner).map_err(|e| format!("`{s}`: {e}"))?
        }
    };
    Ok(Selector::Metric {
        name: name.to_string(),
        labels,
    })
}

/// `a="x", b="y,z"`: names and quoted values (a value may hold `,`, `=`,
/// and `\"` or `\\` escapes).
fn parse_labels(inner: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (k, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("`{rest}` is not label=\"value\""))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{k}` is not a label name"));
        }
        let mut chars = after.trim_start().char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label `{k}`: its value goes in double quotes"));
        }
        let body = after.trim_start();
        let (mut value, mut end) = (String::new(), None);
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => value.push('\n'),
                (true, c) => value.push(c),
                (false, '\\') => {
                    escaped = true;
                    continue;
                }
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
            escaped = false;
        }
        let end =
            end.ok_or_else(|| format!("label `{k}`: the value's closing quote is missing"))?;
        out.push((k.to_string(), value));
        rest = body[end + 1..].trim_start();
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(format!("`{rest}`: labels are separated by commas")),
        };
    }
    Ok(out)
}

/// Every `[[probe]]`; value names are unique across probes (each is the
/// series `probe.<name>`).
pub(super) fn read_probes(o: &Obj<'_>) -> Option<Vec<Probe>> {
    let Some(n) = o.get("probe") else {
        return Some(Vec::new());
    };
    let Some(items) = n.as_array() else {
        n.error("expected [[probe]] tables");
        return None;
    };
    if items.len() > MAX_PROBES {
        n.error(format!("at most {MAX_PROBES} probes"));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut seen_values: Vec<String> = Vec::new();
    let mut seen_names: Vec<String> = Vec::new();
    for item in items {
        let Some(t) = item.as_obj() else {
            ok = false;
            continue;
        };
        match read_one(&t, &mut seen_values) {
            Some(p) if seen_names.contains(&p.name) => {
                t.error(format!("a second probe named `{}`", p.name));
                ok = false;
            }
            Some(p) => {
                seen_names.push(p.name.clone());
                out.push(p);
            }
            None => ok = false,
        }
        t.finish();
    }
    ok.then_some(out)
}

fn read_one(t: &Obj<'_>, seen_values: &mut Vec<String>) -> Option<Probe> {
    let mut ok = true;
    let name = t.require("name").and_then(|n| match n.as_str() {
        Some(s) if is_name(s) => Some(s.to_string()),
        Some(_) => {
            n.error("a probe's name is lowercase letters, digits and _ (at most 64)");
            None
        }
        None => None,
    });
    let url = t.require("url").and_then(|n| {
        let u = n.as_str()?;
        check_probe_url(u)
            .map_err(|e| n.error(e))
            .ok()
            .map(|()| u.to_string())
    });
    let every = t.get("every").and_then(|n| match n.as_duration() {
        Some(d) if d >= Duration::from_millis(100) => Some(d),
        Some(_) => {
            n.error("must be at least 100ms");
            ok = false;
            None
        }
        None => {
            ok = false;
            None
        }
    });
    let mut timeout = Duration::from_secs(5);
    if let Some(n) = t.get("timeout") {
        match n.as_duration() {
            Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => timeout = d,
            Some(_) => {
                n.error("must be above 0 and at most 60s");
                ok = false;
            }
            None => ok = false,
        }
    }
    let format = match t.str("format").as_deref() {
        None | Some("json") => ProbeFormat::Json,
        Some("prometheus") => ProbeFormat::Prometheus,
        Some(other) => {
            if let Some(n) = t.get("format") {
                n.error(format!("`{other}`: expected \"json\" or \"prometheus\""));
            }
            ok = false;
            ProbeFormat::Json
        }
    };
    let identity_env = t.str("identity_env");
    let header = t.get("header").and_then(|n| {
        let h = n.as_str()?;
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            n.error(format!("`{h}` is not an HTTP header name"));
            ok = false;
            return None;
        }
        Some(h.to_string())
    });
    if header.is_some() && identity_env.is_none() {
        t.error("`header` carries the value of `identity_env`: set identity_env too");
        ok = false;
    }
    let values = read_values(t, format, seen_values);
    Some(Probe {
        name: name?,
        url: url?,
        every,
        timeout,
        format,
        identity_env,
        header,
        values: values.filter(|_| ok)?,
    })
}

fn read_values(
    t: &Obj<'_>,
    format: ProbeFormat,
    seen: &mut Vec<String>,
) -> Option<Vec<ProbeValue>> {
    let tbl = t.require("values").and_then(|n| {
        let o = n.as_obj();
        if o.is_none() {
            n.error("expected a table: name = \"/json/pointer\" (or a metric selector)");
        }
        o
    })?;
    let entries = tbl.entries();
    if entries.is_empty() || entries.len() > MAX_VALUES {
        tbl.error(format!("a probe takes 1 to {MAX_VALUES} values"));
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (key, node, _) in entries {
        let Some(sel) = node.as_str() else {
            ok = false;
            continue;
        };
        if !is_name(&key) {
            node.error("a value's name is lowercase letters, digits and _ (it becomes the series probe.<name>)");
            ok = false;
            continue;
        }
        if seen.contains(&key) {
            node.error(format!("another probe already has a value named `{key}`: names are unique across probes (each is the series probe.{key})"));
            ok = false;
            continue;
        }
        let select = match format {
            ProbeFormat::Json if sel.is_empty() || sel.starts_with('/') => {
                Ok(Selector::Pointer(sel.to_string()))
            }
            ProbeFormat::Json => Err(format!("`{sel}` is not a JSON pointer: it starts with / (\"/active_connections\", \"/manager/connections\")")),
            ProbeFormat::Prometheus => parse_metric_selector(sel),
        };
        match select {
            Ok(select) => {
                seen.push(key.clone());
                out.push(ProbeValue { name: key, select });
            }
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
    fn metric_selectors() {
        assert_eq!(
            parse_metric_selector(r#"conns{state="open", pool="a"}"#).unwrap(),
            Selector::Metric {
                name: "conns".into(),
                labels: vec![("state".into(), "open".into()), ("pool".into(), "a".into())]
            }
        );
        assert!(parse_metric_selector("9bad").is_err());
        assert!(parse_metric_selector("job:rate5m").is_err());
        assert_eq!(
            parse_metric_selector(r#"x{state="open,closed", q="a\"b"}"#).unwrap(),
            Selector::Metric {
                name: "x".into(),
                labels: vec![
                    ("state".into(), "open,closed".into()),
                    ("q".into(), "a\"b".into())
                ]
            }
        );
        assert!(parse_metric_selector(r#"x{state=open}"#).is_err());
        assert!(check_probe_url("/ws/health").is_ok());
        assert!(check_probe_url("http://u:p@host/x").is_err());
        assert!(check_probe_url("ftp://host/x").is_err());
    }
}
