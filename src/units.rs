//! Units, read and written the one way every part of chatload uses them:
//! durations (`"30s"`, `"1h30m"`), percentages (`"0.5%"`), microseconds
//! formatted for people (`850µs`, `12.3ms`, `1.84s`, `2m03s`).
//!
//! A leaf: imports nothing from the crate. Everything may import it.

use std::time::Duration;

/// Parses `"30s"`, `"2m"`, `"1h30m"`, `"250ms"`, `"0s"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("`{s}` is not a duration ({e}); write e.g. \"500ms\", \"30s\", \"2m\", \"1h30m\"")
    })
}

/// Parses `"0.5%"` into 0.005.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let Some(num) = t.strip_suffix('%') else {
        return Err(format!("`{s}` is not a percentage; write e.g. \"0.5%\""));
    };
    num.trim()
        .parse::<f64>()
        .map(|v| v / 100.0)
        .map_err(|_| format!("`{s}` is not a percentage; write e.g. \"0.5%\""))
}

/// Parses a size: a whole number of bytes (`1048576`) or a number with a
/// binary or decimal unit (`512MiB`, `2GiB`, `1.5GB`, `64KiB`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let scale: f64 = match unit {
        "" | "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "`{s}` is not a size; write e.g. \"512MiB\", \"2GiB\" or a number of bytes"
            ))
        }
    };
    let v: f64 = num.parse().map_err(|_| {
        format!("`{s}` is not a size; write e.g. \"512MiB\", \"2GiB\" or a number of bytes")
    })?;
    Ok((v * scale).round() as u64)
}

/// Formats a value of a unit for people: `1.84s`, `312ms`, `0.12%`, `17`.
pub fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "us" => format_us(v),
        "fraction" => format!("{}%", trim_float(v * 100.0, 3)),
        _ => trim_float(v, 2),
    }
}

/// Formats microseconds: `850µs`, `12.3ms`, `1.84s`, `2m03s`.
pub fn format_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{}µs", us.round())
    } else if us < 1_000_000.0 {
        format!("{}ms", trim_float(us / 1000.0, 1))
    } else if us < 60_000_000.0 {
        format!("{}s", trim_float(us / 1_000_000.0, 2))
    } else {
        let s = (us / 1_000_000.0).round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// `v` with at most `decimals` decimals and no trailing zeros.
pub fn trim_float(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentages() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
        assert!((parse_percent("0.5%").unwrap() - 0.005).abs() < 1e-12);
        assert!(parse_percent("0.5").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5GB").unwrap(), 1_500_000_000);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }
}
