//! The default SLOs: the rules every run is judged by unless its scenario
//! gates the same metric itself or sets `[thresholds] defaults = false`
//! (read in `thresholds.rs`). A capacity search has none. Imports the
//! threshold grammar only.

use super::thresholds::Threshold;

/// The default SLOs, as `[thresholds]` would write them. Each applies
/// unless the scenario gates the same metric ([`Threshold::gated_metric`]);
/// [`default_slos`] says which fit a scenario.
pub const DEFAULT_SLOS: &[(&str, &str)] = &[
    ("run_ok rate", "> 99%"),
    // Also fails a frame flood: a socket closed for one counts the
    // violation `flood` (engine/flood.rs), the target's misbehaviour.
    ("violations rate", "== 0"),
    ("close_1011 rate", "< 0.1%"),
    ("auth_failure rate", "< 0.1%"),
    ("rest error rate", "< 1%"),
];

/// What a scenario records, for the default SLOs: a default whose
/// denominator the journey never records would judge "no data" and fail
/// every run, so it is left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultScope {
    /// A journey opens a socket (`close_1011`, `auth_failure`).
    pub socket: bool,
    /// A journey starts runs (`send`): `run_ok`, `violations rate`;
    /// without runs violations are gated as `violations count == 0`.
    pub runs: bool,
    /// A journey has a REST step (`rest error rate`).
    pub rest: bool,
    /// A capacity search: it has `[capacity.slo]` and no defaults.
    pub capacity: bool,
}

/// The default SLOs that join `written` (see [`DEFAULT_SLOS`]), marked
/// `default`.
pub fn default_slos(written: &[Threshold], scope: DefaultScope) -> Vec<Threshold> {
    if scope.capacity {
        return Vec::new();
    }
    let gated: Vec<String> = written.iter().map(Threshold::gated_metric).collect();
    DEFAULT_SLOS
        .iter()
        .filter_map(|&(key, value)| {
            let (key, value) = match key {
                "run_ok rate" if !scope.runs => return None,
                "violations rate" if !scope.runs => ("violations count", "== 0"),
                "close_1011 rate" | "auth_failure rate" if !scope.socket => return None,
                "rest error rate" if !scope.rest => return None,
                other => (other, value),
            };
            let mut t = Threshold::parse(key, value).expect("the default SLOs parse");
            t.default = true;
            (!gated.contains(&t.gated_metric())).then_some(t)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exprs(rules: &[Threshold]) -> Vec<&str> {
        rules.iter().map(|t| t.expr.as_str()).collect()
    }

    #[test]
    fn default_slos_fit_the_journey_and_yield_to_written_rules() {
        let all = DefaultScope {
            socket: true,
            runs: true,
            rest: true,
            capacity: false,
        };
        let d = default_slos(&[], all);
        assert_eq!(
            exprs(&d),
            [
                "run_ok rate > 99%",
                "violations rate == 0",
                "close_1011 rate < 0.1%",
                "auth_failure rate < 0.1%",
                "rest error rate < 1%"
            ]
        );
        assert!(d.iter().all(|t| t.default));
        // Any rule on the same metric replaces its default.
        let written = [
            Threshold::parse("run_failed rate", "< 5%").unwrap(),
            Threshold::parse("closes.1011 count", "< 10").unwrap(),
            Threshold::parse("violations count", "< 3").unwrap(),
            Threshold::parse("rest error rate", "< 10%").unwrap(),
            Threshold::parse("tokens.rejected count", "< 5").unwrap(),
        ];
        assert!(default_slos(&written, all).is_empty());
        // Without runs, REST steps or a socket, their defaults would judge
        // "no data": left out, violations then gated by count.
        let idle = DefaultScope {
            socket: true,
            ..Default::default()
        };
        assert_eq!(
            exprs(&default_slos(&[], idle)),
            [
                "violations count == 0",
                "close_1011 rate < 0.1%",
                "auth_failure rate < 0.1%"
            ]
        );
        let capacity = DefaultScope {
            capacity: true,
            ..all
        };
        assert!(default_slos(&[], capacity).is_empty());
    }
}
