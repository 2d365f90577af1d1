//! `[limits]`: caps that stop a typo (`users = 1000000000`, a hold of
//! 10^14 hours) before it becomes a run that prints nothing and eats the
//! machine. Each has a documented default and can be raised here; `run`
//! checks its command-line overrides against the same caps.
//!
//! Imports: `units` and the other `scenario` files.

use std::time::Duration;

use super::doc::Obj;

/// The caps of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most goose users at once (closed users, or the open model's pool).
    pub max_users: u64,
    /// Highest arrival rate of the open model, per second.
    pub max_rate: f64,
    /// Longest load plan.
    pub max_duration: Duration,
    /// Largest tokens or data file read.
    pub max_input_bytes: u64,
    /// The generator's memory safety limit (RSS, bytes); `None`: half the
    /// machine's memory, decided when the run starts.
    pub max_rss: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_users: 50_000,
            max_rate: 10_000.0,
            max_duration: Duration::from_secs(24 * 3600),
            max_input_bytes: 64 * 1024 * 1024,
            max_rss: None,
        }
    }
}

impl Limits {
    /// Whether `users` fits, and if not, why (with the fix).
    pub fn check_users(&self, users: u64) -> Result<(), String> {
        if users > self.max_users {
            return Err(format!(
                "{users} users is over the limit of {} per process: raise [limits] max_users if that is meant, or split the load into shards (--shard)",
                self.max_users
            ));
        }
        Ok(())
    }

    /// Whether a plan of `length` fits, and if not, why.
    pub fn check_duration(&self, length: Duration) -> Result<(), String> {
        if length > self.max_duration {
            return Err(format!(
                "a plan of {} is over the limit of {}: raise [limits] max_duration if that is meant",
                humantime::format_duration(length),
                humantime::format_duration(self.max_duration)
            ));
        }
        Ok(())
    }
}

/// `[limits]`: every key optional.
pub(super) fn read_limits(o: &Obj<'_>) -> Option<Limits> {
    let mut l = Limits::default();
    let Some(tbl) = o.obj("limits") else {
        return Some(l);
    };
    let mut ok = true;
    if let Some(n) = tbl.get("max_users") {
        match n.as_u64() {
            Some(v) if v > 0 => l.max_users = v,
            Some(_) => {
                n.error("must be at least 1");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("max_rate") {
        match super::doc::f64_where(&n, |v| v > 0.0, "must be above zero") {
            Some(v) => l.max_rate = v,
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("max_duration") {
        match n.as_duration() {
            Some(d) if !d.is_zero() => l.max_duration = d,
            Some(_) => {
                n.error("must be longer than zero");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("max_input_bytes") {
        match n.as_u64() {
            Some(v) if v > 0 => l.max_input_bytes = v,
            Some(_) => {
                n.error("must be at least 1");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = tbl.get("max_rss") {
        // A size with its unit ("2GiB"), or a whole number of bytes.
        let parsed = match n.item_str() {
            Some(s) => crate::units::parse_bytes(s),
            None => n
                .as_u64()
                .ok_or_else(|| "must be a size, e.g. \"2GiB\"".to_string()),
        };
        match parsed {
            Ok(v) if v > 0 => l.max_rss = Some(v),
            Ok(_) => {
                n.error("must be above zero");
                ok = false;
            }
            Err(e) => {
                n.error(e);
                ok = false;
            }
        }
    }
    tbl.finish();
    ok.then_some(l)
}

/// A scenario's name is printed, used in file names and sent in reports: no
/// NUL or other control character.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    match name.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(c)
        )),
        None if name.trim().is_empty() => Err("must not be empty".into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_control_characters_are_refused() {
        assert!(check_name("release-gate").is_ok());
        assert!(check_name("a\0b").unwrap_err().contains("U+0000"));
        assert!(check_name("a\u{1b}[31m").is_err());
        assert!(check_name("  ").is_err());
    }

    #[test]
    fn caps_name_the_figure_and_the_fix() {
        let l = Limits::default();
        assert!(l.check_users(50_000).is_ok());
        let e = l.check_users(1_000_000_000).unwrap_err();
        assert!(
            e.contains("1000000000 users") && e.contains("[limits] max_users"),
            "{e}"
        );
        assert!(l.check_duration(Duration::from_secs(24 * 3600)).is_ok());
        assert!(l.check_duration(Duration::from_secs(25 * 3600)).is_err());
    }
}
