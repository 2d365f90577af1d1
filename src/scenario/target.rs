//! `[target]` and the one URL allow check (DESIGN.md "Who owns what"):
//! every URL chatload sends to (the WebSocket target, the login URL, REST
//! and `http` steps) is checked here against `target.allow`. Also reads the
//! `[target]` table (`read_target`; its TLS keys in `tls.rs`). Imports only
//! `url`, the `doc` readers and `tls`.

use std::time::Duration;

use super::doc::Obj;
use super::model::Target;

/// A target must be a `ws://` or `wss://` URL with a host.
pub fn check_ws_url(u: &str) -> Result<(), String> {
    let parsed = url::Url::parse(u).map_err(|e| format!("`{u}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(format!("`{u}` must start with ws:// or wss://"));
    }
    if parsed.host_str().is_none() {
        return Err(format!("`{u}` has no host"));
    }
    Ok(())
}

/// The host of a URL (empty when it has none).
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// Whether `host` (as written in the URL) matches an allow-list pattern.
/// Without an allow list only loopback hosts pass. A pattern is an exact
/// host name, an IP address (v4 or v6, compared as addresses), or
/// `*.suffix`, which matches host names ending in `.suffix` on a label
/// boundary (`a.b.suffix` too) and never an IP address: `*.0.0.1` does not
/// let `127.0.0.1` through.
pub fn host_allowed(host: &str, allow: &[String]) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let ip = host.parse::<std::net::IpAddr>().ok();
    let loopback = host == "localhost" || ip.is_some_and(|ip| ip.is_loopback());
    if allow.is_empty() {
        return loopback;
    }
    allow.iter().any(|p| {
        let p = p
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        match (ip, p.strip_prefix("*.")) {
            // An IP literal matches only an address pattern, exactly.
            (Some(ip), _) => p.parse::<std::net::IpAddr>().is_ok_and(|q| q == ip),
            (None, Some(suffix)) => host.ends_with(&format!(".{suffix}")),
            (None, None) => p == host,
        }
    })
}

/// `[target]`: the URL (checked here), its allow list, the timeouts and `fail_fast`.
pub(super) fn read_target(o: &Obj<'_>, base: &std::path::Path, max_input: u64) -> Option<Target> {
    let mut t = Target {
        url: None,
        allow: Vec::new(),
        connect_timeout: Duration::from_secs(10),
        ready_timeout: Duration::from_secs(10),
        follow_redirects: false,
        fail_fast: true,
        tls: Default::default(),
    };
    let Some(tbl) = o.obj("target") else {
        return Some(t);
    };
    if let Some(n) = tbl.get("url") {
        if let Some(u) = n.as_str() {
            match check_ws_url(u) {
                Ok(()) => t.url = Some(u.to_string()),
                Err(e) => n.error(e),
            }
        }
    }
    if let Some(a) = tbl.str_list("allow") {
        t.allow = a;
    }
    if let Some(d) = tbl.duration("connect_timeout") {
        t.connect_timeout = d;
    }
    if let Some(d) = tbl.duration("ready_timeout") {
        t.ready_timeout = d;
    }
    if let Some(b) = tbl.bool("follow_redirects") {
        t.follow_redirects = b;
    }
    if let Some(b) = tbl.bool("fail_fast") {
        t.fail_fast = b;
    }
    super::tls::read_tls(&tbl, base, max_input, &mut t.tls);
    tbl.finish();
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists() {
        let none: Vec<String> = vec![];
        assert!(host_allowed("127.0.0.1", &none));
        assert!(host_allowed("localhost", &none));
        assert!(host_allowed("[::1]", &none));
        assert!(!host_allowed("staging.example.com", &none));
        let allow = vec!["*.staging.example.com".to_string(), "10.0.0.5".to_string()];
        assert!(host_allowed("api.staging.example.com", &allow));
        assert!(!host_allowed("staging.example.com.evil.net", &allow));
        assert!(!host_allowed("example.com", &allow));
        assert!(host_allowed("10.0.0.5", &allow));
    }

    #[test]
    fn wildcards_match_host_names_never_addresses() {
        let allow = vec!["*.0.0.1".to_string(), "*.example.com".to_string()];
        assert!(!host_allowed("127.0.0.1", &allow));
        assert!(!host_allowed("[::1]", &allow));
        assert!(host_allowed("a.b.example.com", &allow));
        assert!(!host_allowed("badexample.com", &allow));
        // Addresses compare as addresses: another spelling of ::1 is ::1.
        let v6 = vec!["[0:0:0:0:0:0:0:1]".to_string()];
        assert!(host_allowed("[::1]", &v6));
        assert!(!host_allowed("127.0.0.2", &["127.0.0.1".to_string()]));
    }
}
