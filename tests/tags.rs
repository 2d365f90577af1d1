//! Tags: `[tags]`, `--tag` and step tags reach the snapshot and every
//! report; a value that matches a secret is redacted; a bad or reserved
//! name is a scenario error at its line and column (exit 2), and a bad
//! `--tag` is exit 2 before any socket opens.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_reach_the_snapshot_and_every_report_and_secrets_are_redacted() {
    let _g = goose_lock().await;
    let extra =
        format!("[tags]\ntestid = \"nightly-42\"\nrelease = \"v1.2\"\nleak = \"{SECRET}\"\n");
    let (_tmp, out) = out_dir("tags");
    let r = run(
        parse(&iterations_scenario(2, 1, &extra)),
        None,
        SECRET,
        out.clone(),
    )
    .await;
    let tags = &r.snapshot.tags;
    assert_eq!(tags.get("testid").map(String::as_str), Some("nightly-42"));
    assert_eq!(tags.get("release").map(String::as_str), Some("v1.2"));
    assert_eq!(tags.get("leak").map(String::as_str), Some("<redacted>"));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("`testid=nightly-42`"), "{md}");
    let xml = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(
        xml.contains(r#"<property name="tag.testid" value="nightly-42"/>"#),
        "{xml}"
    );
    assert!(
        xml.contains(r#"<property name="tag.leak" value="&lt;redacted&gt;"/>"#),
        "{xml}"
    );
    let mut console = Vec::new();
    chatload::report::console::render(&r.report, &mut console).unwrap();
    let console = String::from_utf8(console).unwrap();
    assert!(
        console.contains("tags leak=<redacted> release=v1.2 testid=nightly-42"),
        "{console}"
    );
    for entry in std::fs::read_dir(&out).unwrap() {
        let p = entry.unwrap().path();
        if let Ok(text) = std::fs::read_to_string(&p) {
            assert!(
                !text.contains(SECRET),
                "the secret leaked into {}",
                p.display()
            );
        }
    }
    let snap = std::fs::read_to_string(out.join("snapshot.json")).unwrap();
    assert!(snap.contains("\"testid\": \"nightly-42\""), "{snap}");
}

#[test]
fn bad_and_reserved_tag_names_are_refused_at_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.toml");
    let text = iterations_scenario(1, 1, "[tags]\njob = \"x\"\n\"2bad\" = \"y\"\nok = \"\"\n")
        .replace(
            "step = \"await\"\n",
            "step = \"await\"\ntags = { __secret = \"z\" }\n",
        );
    std::fs::write(&f, &text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("validate")
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    for (needle, path, why) in [
        ("job =", "tags.job", "reserved by Prometheus"),
        ("\"2bad\"", "tags.2bad", "not a Prometheus label name"),
        ("ok =", "tags.ok", "empty value"),
        (
            "tags = { __secret",
            "journey[2].tags.__secret",
            "reserved by Prometheus",
        ),
    ] {
        let at = format!("t.toml:{}:", line_of(needle));
        assert!(
            err.lines()
                .any(|l| l.contains(&at) && l.contains(path) && l.contains(why)),
            "no `{why}` at {at} ({path}) in\n{err}"
        );
    }
}

#[test]
fn a_reserved_tag_flag_is_exit_2_before_any_socket() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "job=x",
        "instance=y",
        "__name__=z",
        "not-a-label=1",
        "novalue",
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["run", "scenarios/smoke.toml", "--tag", bad, "--out"])
            .arg(dir.path().join("out"))
            .env_remove("CHATLOAD_JWT_SECRET")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--tag"), "{bad}: {err}");
        assert!(!dir.path().join("out").exists(), "{bad}: a run started");
    }
}

/// The live-output keys of `[output]` are checked at their line and column.
#[test]
fn bad_live_output_keys_are_refused_at_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("o.toml");
    let text = iterations_scenario(
        1,
        1,
        "[output]\ninterval = \"5s\"\nprogress_every = \"1s\"\nremote_write = \"ws://127.0.0.1:9090/api/v1/write\"\nraw_results = \"yes\"\n",
    );
    std::fs::write(&f, &text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("validate")
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    for (needle, path, why) in [
        (
            "progress_every",
            "output.progress_every",
            "at least output.interval",
        ),
        ("remote_write", "output.remote_write", "http:// or https://"),
        (
            "raw_results",
            "output.raw_results",
            "expected true or false",
        ),
    ] {
        let at = format!("o.toml:{}:", line_of(needle));
        assert!(
            err.lines()
                .any(|l| l.contains(&at) && l.contains(path) && l.contains(why)),
            "no `{why}` at {at} ({path}) in\n{err}"
        );
    }
}

/// `validate` shows the run's tags and where remote write goes.
#[test]
fn validate_shows_the_tags_and_the_remote_write_target() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.toml");
    let extra = "[tags]\ntestid = \"x1\"\nrelease = \"v1\"\n[output]\ninterval = \"2s\"\nremote_write = \"http://127.0.0.1:9090/api/v1/write\"\n";
    std::fs::write(&f, iterations_scenario(1, 1, extra)).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("validate")
        .arg(&f)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("tags: release=v1 testid=x1\n"), "{out}");
    assert!(
        out.contains("remote write: every 2s to http://127.0.0.1:9090/api/v1/write"),
        "{out}"
    );
}

/// A step tag may not reuse a run tag's name: the step's series would carry
/// the label twice and Prometheus would refuse every scrape.
#[test]
fn a_step_tag_that_reuses_a_run_tag_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.toml");
    let text = iterations_scenario(1, 1, "[tags]\nphase = \"run\"\n").replace(
        "step = \"await\"\n",
        "step = \"await\"\ntags = { phase = \"question\" }\n",
    );
    std::fs::write(&f, &text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("validate")
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line = text
        .lines()
        .position(|l| l.starts_with("tags = { phase"))
        .unwrap()
        + 1;
    assert!(
        err.lines().any(|l| l.contains(&format!("t.toml:{line}:"))
            && l.contains("journey[2].tags.phase")
            && l.contains("also a run tag")),
        "{err}"
    );
    // The same clash from --tag: exit 2 before any socket opens.
    let f2 = dir.path().join("t2.toml");
    std::fs::write(&f2, text.replace("[tags]\nphase = \"run\"\n", "")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .args([
            "run",
            f2.to_str().unwrap(),
            "--tag",
            "phase=nightly",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--tag") && err.contains("also a run tag"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists(), "a run started");
}

#[test]
fn validate_redacts_a_tag_that_carries_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.toml");
    let text = iterations_scenario(1, 1, &format!("[tags]\nk = \"{SECRET}\"\n"));
    std::fs::write(&f, &text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("validate")
        .arg(&f)
        .env("CHATLOAD_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("tags: k=<redacted>"), "{out}");
    assert!(!out.contains(SECRET) && !err.contains(SECRET), "{out}{err}");
}
