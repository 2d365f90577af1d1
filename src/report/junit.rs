//! `junit.xml`: one test case per threshold (and per baseline tolerance), so a
//! CI page shows which SLO failed, with the measured value and the limit; an
//! INVALID run adds an error test case naming its causes.
//! Imports the view model (`report/mod.rs`), `outcome` and the insecure
//! text of `metrics::snapshot`.

use std::io::{self, Write};

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::ReportData;
use crate::metrics::compare::RowStatus;
use crate::outcome::Verdict;

pub fn render(d: &ReportData, w: &mut impl Write) -> io::Result<()> {
    let mut report = Report::new(format!("chatload {}", d.title));
    let mut suite = TestSuite::new("thresholds");
    tls(d, &mut suite);
    // Tags as suite properties, `tag.<name>`, so CI pages can tell runs apart.
    for (k, v) in &d.tags {
        suite.add_property((format!("tag.{k}"), v.clone()));
    }
    for v in &d.thresholds {
        let status = if v.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(format!(
                "measured {}, limit {}",
                v.observed_text, v.threshold
            ));
            s.set_type("threshold");
            s.set_description(format!(
                "{}: measured {} (limit {})",
                v.threshold, v.observed_text, v.limit_text
            ));
            s
        };
        let mut case = TestCase::new(super::rule_label(v), status);
        case.set_classname(format!("chatload.{}", d.title));
        suite.add_test_case(case);
    }
    if !d.judged() {
        // Nothing judged the run: a skipped case says so on the CI page.
        let mut s = TestCaseStatus::skipped();
        s.set_message(super::NOT_JUDGED);
        let mut case = TestCase::new("not judged", s);
        case.set_classname(format!("chatload.{}", d.title));
        suite.add_test_case(case);
    }
    if !d.notes.is_empty() && matches!(d.verdict, Verdict::Aborted | Verdict::Partial) {
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
        s.set_message(d.notes.join("; "));
        s.set_type(d.verdict.as_str());
        let name = if d.verdict == Verdict::Partial {
            "all shards present"
        } else {
            "run completed"
        };
        let mut case = TestCase::new(name, s);
        case.set_classname(format!("chatload.{}", d.title));
        suite.add_test_case(case);
    }
    if let Some(case) = validity_case(d) {
        suite.add_test_case(case);
    }
    if let Some(c) = &d.capacity {
        // The step that broke is what a capacity search is for: the test case
        // is the knee against the target, not the steps.
        let status = if c.passed {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(c.summary.clone());
            s.set_type("capacity");
            s
        };
        let mut case = TestCase::new("capacity knee carries the target load", status);
        case.set_classname(format!("chatload.{}.capacity", d.title));
        case.set_system_out(c.summary.clone());
        suite.add_test_case(case);
    }
    report.add_test_suite(suite);
    if let Some(c) = &d.baseline {
        let mut suite = TestSuite::new(format!("baseline {}", c.base_run));
        for r in c.rows.iter().filter(|r| r.tolerance.is_some()) {
            let tol = r.tolerance.clone().unwrap_or_default();
            let status = match r.status() {
                RowStatus::Regressed => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(format!(
                        "{} -> {} ({}, 95% interval {}), tolerance {tol}",
                        r.base_text, r.new_text, r.delta_text, r.interval_text
                    ));
                    s.set_type("regression");
                    s
                }
                RowStatus::InsufficientData => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("insufficient data: {}", r.detail));
                    s
                }
                RowStatus::Ok | RowStatus::Inconclusive => TestCaseStatus::success(),
            };
            let mut case = TestCase::new(format!("{} within {tol} of baseline", r.name), status);
            case.set_classname(format!("chatload.{}.baseline", d.title));
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    let xml = report.to_string().map_err(io::Error::other)?;
    w.write_all(xml.as_bytes())
}

/// An insecure run: a `target.insecure` property and a skipped test case
/// that says its certificates were not verified, so a CI page never shows
/// such a run as a verified one.
fn tls(d: &ReportData, suite: &mut TestSuite) {
    if !d.insecure {
        return;
    }
    suite.add_property(("target.insecure", "true"));
    let mut s = TestCaseStatus::skipped();
    s.set_message(crate::metrics::snapshot::INSECURE_TEXT);
    let mut case = TestCase::new("TLS certificates verified", s);
    case.set_classname(format!("chatload.{}", d.title));
    suite.add_test_case(case);
}

/// INVALID is not the target failing its SLOs: an error test case, not a failure.
fn validity_case(d: &ReportData) -> Option<TestCase> {
    if d.validity.is_empty() {
        return None;
    }
    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
    s.set_message(d.validity.join("; "));
    s.set_type("invalid");
    s.set_description(super::validity_view::INVALID_MEANING);
    let mut case = TestCase::new("run is valid (the generator offered the planned load)", s);
    case.set_classname(format!("chatload.{}", d.title));
    Some(case)
}
