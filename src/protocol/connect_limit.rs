//! The reference server's connect limit as a value (`chatload serve
//! --connect-limit`, `[server] connect_limit`): a platform whose backend
//! checks every new socket against an auth service refuses valid tokens
//! when too many sockets connect at once. A leaf, so the scenario reader
//! and the server share it.

/// New sockets beyond `per_second` within any one second are refused
/// before ready: an auth-failure frame (`VALIDATION_FAILED`), then 1011.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConnectLimit {
    pub per_second: u32,
}

impl std::str::FromStr for ConnectLimit {
    type Err = String;
    /// `N/s`, e.g. `20/s`.
    fn from_str(s: &str) -> Result<Self, String> {
        let n = s
            .trim()
            .strip_suffix("/s")
            .and_then(|n| n.trim().parse::<u32>().ok())
            .ok_or_else(|| {
                format!("connect limit `{s}`: write new sockets per second, e.g. 20/s")
            })?;
        if n == 0 {
            return Err(format!("connect limit `{s}`: must be at least 1/s"));
        }
        Ok(ConnectLimit { per_second: n })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockets_per_second() {
        assert_eq!(
            "20/s".parse::<ConnectLimit>(),
            Ok(ConnectLimit { per_second: 20 })
        );
        assert!("0/s"
            .parse::<ConnectLimit>()
            .unwrap_err()
            .contains("at least 1"));
        assert!("20".parse::<ConnectLimit>().unwrap_err().contains("20/s"));
    }
}
