//! The verdict of a run and the exit codes (the table in DESIGN.md, k6's
//! `errext/exitcodes`): one closed set, matched exhaustively everywhere.
//!
//! A leaf: imports nothing from the crate. Everything may import it.

use serde::{Deserialize, Serialize};

/// Exit codes of every subcommand.
pub mod exit {
    /// Every judged rule held and the run is valid.
    pub const PASS: u8 = 0;
    /// A threshold, default SLO, drift, probe or baseline rule failed.
    pub const THRESHOLD_FAILED: u8 = 1;
    /// Usage or scenario error, or a plan the machine cannot carry; nothing was sent.
    pub const USAGE: u8 = 2;
    /// Aborted (signal, target unreachable, fail-fast, safety limit) or partial data.
    pub const ABORTED: u8 = 3;
    /// The numbers do not describe the planned test.
    pub const INVALID: u8 = 4;
}

/// The verdict of a run, a recovered run or a merge. Serialized in lower
/// case (`"pass"`) in snapshots; shown in upper case (`PASS`) in reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every judged rule held.
    Pass,
    /// A judged rule failed: the target missed its objectives.
    Fail,
    /// The generator did not offer the planned test.
    Invalid,
    /// Stopped early: a signal, an unreachable target, a safety limit.
    Aborted,
    /// Recovered from the interval files of a run that did not finish.
    Incomplete,
    /// A merge that lacks a shard, or holds an aborted one.
    Partial,
}

impl Verdict {
    /// Every verdict, in the order of the table in DESIGN.md.
    pub const ALL: [Verdict; 6] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Invalid,
        Verdict::Aborted,
        Verdict::Incomplete,
        Verdict::Partial,
    ];

    /// The process exit code of this verdict.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => exit::PASS,
            Verdict::Fail => exit::THRESHOLD_FAILED,
            Verdict::Invalid => exit::INVALID,
            Verdict::Aborted | Verdict::Incomplete | Verdict::Partial => exit::ABORTED,
        }
    }

    /// As stored in a snapshot: `pass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Invalid => "invalid",
            Verdict::Aborted => "aborted",
            Verdict::Incomplete => "incomplete",
            Verdict::Partial => "partial",
        }
    }

    /// As shown to people: `PASS`.
    pub fn title(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Invalid => "INVALID",
            Verdict::Aborted => "ABORTED",
            Verdict::Incomplete => "INCOMPLETE",
            Verdict::Partial => "PARTIAL",
        }
    }

    /// True for the verdicts of a run that stopped early or holds partial data.
    pub fn is_cut_short(self) -> bool {
        match self {
            Verdict::Aborted | Verdict::Incomplete | Verdict::Partial => true,
            Verdict::Pass | Verdict::Fail | Verdict::Invalid => false,
        }
    }

    /// A passing verdict becomes `Fail` when a rule failed; any other stays.
    pub fn fail_if(self, failed: bool) -> Verdict {
        match self {
            Verdict::Pass if failed => Verdict::Fail,
            other => other,
        }
    }
}

/// Compares with the stored name (`verdict == "pass"`), as tests and
/// scripts reading snapshots do.
impl PartialEq<&str> for Verdict {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.title())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_design_table() {
        let codes: Vec<u8> = Verdict::ALL.iter().map(|v| v.exit_code()).collect();
        assert_eq!(codes, [0, 1, 4, 3, 3, 3]);
    }

    #[test]
    fn serialized_names_are_lower_case_titles() {
        for v in Verdict::ALL {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.as_str()));
            assert_eq!(v.title().to_lowercase(), v.as_str());
            let back: Verdict = serde_json::from_str(&json).unwrap();
            assert_eq!(back, v);
        }
    }
}
