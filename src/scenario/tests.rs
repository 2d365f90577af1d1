//! Loading whole scenario files: a good file, every mistake at once, redaction.

use super::*;
use std::time::Duration;

fn parse(text: &str) -> Result<Scenario, Diagnostics> {
    Scenario::parse(Path::new("t.toml"), text.to_string())
}

const GOOD: &str = r#"
version = 1
name = "t"
[workload]
users = 5
ramp = [{ to = 5, over = "2s" }, { hold = "10s" }]
[[journey]]
step = "connect"
[[journey]]
step = "send"
message = { type = "start_agent", payload = { user_request = "{{prompt}}", thread_id = "{{thread}}", run_id = "{{run}}" } }
[[journey]]
step = "await"
timeout = "5s"
[[journey]]
step = "think"
duration = "100ms"
[thresholds]
"ttfe p95" = "< 2s"
"close_1011 rate" = "< 0.1%"
"#;

#[test]
fn a_good_file_loads_with_its_plan() {
    let s = parse(GOOD).unwrap();
    assert_eq!(s.name, "t");
    assert_eq!(s.journeys[0].steps.len(), 4);
    assert_eq!(s.thresholds.iter().filter(|t| !t.default).count(), 2);
    // The default SLOs the file does not gate itself (it gates close_1011).
    let defaults: Vec<&str> = s
        .thresholds
        .iter()
        .filter(|t| t.default)
        .map(|t| t.expr.as_str())
        .collect();
    assert_eq!(
        defaults,
        [
            "run_ok rate > 99%",
            "violations rate == 0",
            "auth_failure rate < 0.1%"
        ]
    );
    assert_eq!(s.workload.plan.goose_test_plan(), "5,2;5,10;0,0");
    assert!(s.target.url.is_none());
    assert_eq!(s.echo["workload"]["users"], 5);
}

#[test]
fn every_mistake_is_reported_at_once_with_its_position() {
    let bad = GOOD
        .replace("users = 5", "users = \"five\"")
        .replace("timeout = \"5s\"", "timeout = \"soon\"")
        .replace(
            "\"ttfe p95\" = \"< 2s\"",
            "\"ttfe p95\" = \"< 2s\"\nbogus = 3",
        )
        .replace("[workload]", "[workload]\ncolour = \"red\"");
    let err = parse(&bad).unwrap_err();
    let msgs: Vec<String> = err
        .items
        .iter()
        .map(|d| format!("{}:{} {} {}", d.line, d.column, d.path, d.message))
        .collect();
    assert_eq!(err.items.len(), 4, "{msgs:#?}");
    let find = |p: &str| {
        err.items
            .iter()
            .find(|d| d.path == p)
            .unwrap_or_else(|| panic!("no error at {p}: {msgs:#?}"))
    };
    assert_eq!(find("workload.colour").line, 5);
    assert_eq!(find("workload.users").line, 6);
    assert_eq!(find("workload.users").column, 9);
    assert!(find("journey[2].timeout").message.contains("soon"));
    assert!(
        find("thresholds.bogus").message.contains("string"),
        "{msgs:#?}"
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let err = parse("version = 1\nname = \n").unwrap_err();
    assert_eq!(err.items.len(), 1);
    assert_eq!(err.items[0].line, 2);
}

#[test]
fn secrets_in_the_file_are_refused() {
    let err =
        parse(&GOOD.replace("[workload]", "[auth]\nsecret = \"abc\"\n[workload]")).unwrap_err();
    assert!(err.items[0].message.contains("environment variable"));
}

#[test]
fn unknown_placeholders_and_steps_are_refused() {
    let err = parse(
        &GOOD
            .replace("{{prompt}}", "{{promt}}")
            .replace("step = \"think\"", "step = \"nap\""),
    )
    .unwrap_err();
    assert_eq!(err.items.len(), 2, "{err}");
    assert!(err.to_string().contains("{{promt}}"));
    assert!(err.to_string().contains("unknown step `nap`"));
}

/// A password in the login body never reaches the echo (snapshot.json and
/// every report show it); `{{env.NAME}}` placeholders are listed for `run`.
#[test]
fn the_login_body_is_redacted_in_the_echo_and_its_env_names_are_listed() {
    let s = parse(&GOOD.replace(
        "[workload]",
        "[auth]\nmode = \"login\"\n[auth.login]\nbody = { user = \"{{user}}\", password = \"hunter2\", key = \"{{env.LOGIN_KEY}}\", nested = { list = [\"x\", 3], pin = \"{{env.LOGIN_PIN}}\" }, again = \"{{env.LOGIN_KEY}}\" }\n[workload]",
    ))
    .unwrap();
    let body = &s.echo["auth"]["login"]["body"];
    assert_eq!(
        body,
        &serde_json::json!({"user": REDACTED, "password": REDACTED, "key": REDACTED, "nested": {"list": [REDACTED, 3], "pin": REDACTED}, "again": REDACTED})
    );
    assert!(!s.echo.to_string().contains("hunter2"));
    // What is sent keeps the values.
    let TokenSource::Login { body, .. } = &s.auth.source else {
        panic!("a login source")
    };
    assert_eq!(body["password"], "hunter2");
    assert_eq!(s.env_placeholders(), ["LOGIN_KEY", "LOGIN_PIN"]);
    // Only the login body is redacted, and a scenario without one reads no env.
    let plain = parse(GOOD).unwrap();
    assert_eq!(plain.echo["journey"][1]["message"]["type"], "start_agent");
    assert!(plain.env_placeholders().is_empty());
}

#[test]
fn iterations_start_everyone_at_once() {
    let s = parse(&GOOD.replace(
        "ramp = [{ to = 5, over = \"2s\" }, { hold = \"10s\" }]",
        "iterations = 3",
    ))
    .unwrap();
    assert_eq!(s.workload.plan.iterations, Some(3));
    assert_eq!(s.workload.plan.peak_users(), 5);
}

/// The step-tree questions see inside repeat blocks, in order.
#[test]
fn step_walks_see_inside_repeat_blocks() {
    let step = |name: &str, kind: StepKind| Step {
        name: name.to_string(),
        kind,
        tags: Default::default(),
    };
    let secs = Duration::from_secs;
    let inner = vec![
        step("await", StepKind::Await { timeout: secs(2) }),
        step("history", StepKind::History),
    ];
    let steps = vec![
        step("list_threads", StepKind::ListThreads),
        step("await", StepKind::Await { timeout: secs(1) }),
        step(
            "repeat",
            StepKind::Repeat {
                times: Some(2),
                for_: None,
                steps: vec![step(
                    "repeat",
                    StepKind::Repeat {
                        times: Some(3),
                        for_: None,
                        steps: inner,
                    },
                )],
            },
        ),
        step("await", StepKind::Await { timeout: secs(3) }),
    ];
    let mut names = Vec::new();
    Step::walk(&steps, &mut |s| names.push(s.name.as_str()));
    assert_eq!(
        names,
        [
            "list_threads",
            "await",
            "repeat",
            "repeat",
            "await",
            "history",
            "await"
        ]
    );
    assert_eq!(Step::await_timeouts(&steps), [secs(1), secs(2), secs(3)]);
    assert!(Step::reads_history(&steps));
    assert!(!Step::uses_socket(&steps));
    let nested_send = vec![step(
        "repeat",
        StepKind::Repeat {
            times: None,
            for_: Some(secs(5)),
            steps: vec![step(
                "send",
                StepKind::Send {
                    message: Value::Null,
                },
            )],
        },
    )];
    assert!(Step::uses_socket(&nested_send));
    assert!(!Step::reads_history(&nested_send));
    assert_eq!(StepKind::Connect.default_name(), "connect");
    assert_eq!(
        StepKind::SwitchThread { timeout: secs(1) }.default_name(),
        "thread_switch"
    );
    assert_eq!(StepKind::Disconnect.default_name(), "");
}

#[test]
fn profile_auth_failure_keys_replace_the_bases_and_are_checked() {
    let netra = parse(GOOD).unwrap().profile.auth_failure;
    assert_eq!(netra, crate::protocol::AuthFailure::netra());
    let s = parse(&format!(
        "{GOOD}[profile.auth_failure]\nframes = [\"auth_error\"]\ncodes = [\"DENIED\", \"JWT_*\"]\nclose_before_ready = [4001]\n"
    ))
    .unwrap();
    let a = &s.profile.auth_failure;
    assert_eq!(a.frames, vec!["auth_error".to_string()]);
    assert!(a.is_auth_frame("auth_error", Some("JWT_EXPIRED")));
    assert!(!a.is_auth_frame("error_message", Some("DENIED")));
    assert_eq!(a.close_before_ready, vec![4001]);
    let off = parse(&format!("{GOOD}[profile]\nauth_failure = \"none\"\n")).unwrap();
    assert_eq!(
        off.profile.auth_failure,
        crate::protocol::AuthFailure::none()
    );
    for bad in [
        "[profile]\nauth_failure = \"off\"\n",
        "[profile.auth_failure]\ncodes = [\"A*B\"]\n",
        "[profile.auth_failure]\nclose_before_ready = [99]\n",
        "[profile.auth_failure]\nclose_before_ready = 1008\n",
        "[profile.auth_failure]\ncolour = \"red\"\n",
    ] {
        assert!(parse(&format!("{GOOD}{bad}")).is_err(), "{bad}");
    }
}
