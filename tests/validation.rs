//! `chatload validate` on broken scenarios: each problem is named at its own
//! file, line, column and key path, every problem comes at once, and one
//! mistake gives one error (no follow-ons). And every scenario the project
//! ships or shows (scenarios/, bench/, the Kubernetes configmap, README.md)
//! still loads.

use std::path::Path;
use std::process::{Command, Output};

fn validate(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chatload"))
        .arg("validate")
        .arg(file)
        .env_remove("CHATLOAD_JWT_SECRET")
        .output()
        .expect("the binary runs")
}

/// Files the cases refer to, beside the scenario.
fn write_fixtures(dir: &Path) {
    for (name, text) in [
        ("prompts.csv", "prompt,topic\nhello,cats\n"),
        ("dup.csv", "prompt,topic,topic\na,b,c\n"),
        (
            "dup.jsonl",
            "{\"prompt\": \"a\", \"topic\": \"b\", \"topic\": \"c\"}\n",
        ),
        (
            "one-token.txt",
            "# a comment is not a token\ntok-secret-1\n\n",
        ),
        ("no-tokens.txt", "# only a comment\n\n"),
        (
            "three-tokens.txt",
            "tok-secret-1\ntok-secret-2\ntok-secret-3\n",
        ),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

const HEAD: &str = "version = 1\nname = \"v\"\n";
const CLOSED: &str = "[workload]\nusers = 2\nduration = \"5s\"\n";
const SEND: &str = "[[journey]]\nstep = \"send\"\nmessage = { type = \"start_agent\", payload = { user_request = \"{{prompt}}\", run_id = \"{{run}}\" } }\n";
const AWAIT: &str = "[[journey]]\nstep = \"await\"\n";
const CAPACITY: &str =
    "[workload]\n[capacity]\nstart = 1\nstep = 1\nmax = 3\nstep_duration = \"5s\"\n";

/// One expected problem: its key path, a part of its message, and where it
/// points: `anchor` is a unique piece of the file with `^` at the position.
struct Want {
    path: &'static str,
    says: &'static str,
    anchor: &'static str,
}

fn want(path: &'static str, says: &'static str, anchor: &'static str) -> Want {
    Want { path, says, anchor }
}

/// 1-based line and column of the `^` in `anchor`, found once in `text`.
fn position(text: &str, anchor: &str) -> (usize, usize) {
    let caret = anchor.find('^').expect("an anchor has a ^");
    let plain = anchor.replace('^', "");
    let at = text
        .find(&plain)
        .unwrap_or_else(|| panic!("anchor `{plain}` is not in\n{text}"));
    assert_eq!(
        text.matches(&plain).count(),
        1,
        "anchor `{plain}` is not unique in\n{text}"
    );
    let offset = at + caret;
    let line = text[..offset].matches('\n').count() + 1;
    let column = text[..offset].rsplit('\n').next().unwrap().chars().count() + 1;
    (line, column)
}

/// Validates each case and demands exactly its problems, each at its place.
fn check(cases: &[(&str, String, Vec<Want>)]) {
    let dir = tempfile::tempdir().unwrap();
    write_fixtures(dir.path());
    let mut failures = Vec::new();
    for (name, text, wants) in cases {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let o = validate(&file);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let shown = file.display().to_string();
        let mut why = Vec::new();
        if o.status.code() != Some(2) {
            why.push(format!("exit {:?}, not 2", o.status.code()));
        }
        let n = wants.len();
        let count = format!("{n} problem{} found", if n == 1 { "" } else { "s" });
        if !err.contains(&count) {
            why.push(format!("not `{count}`"));
        }
        for w in wants {
            let (line, column) = position(text, w.anchor);
            let head = format!("{shown}:{line}:{column}: `{}`: ", w.path);
            let found = err
                .lines()
                .any(|l| l.trim_start().starts_with(&head) && l.contains(w.says));
            if !found {
                why.push(format!("no `{head}...{}...`", w.says));
            }
        }
        if err.contains("tok-secret") || out.contains("tok-secret") {
            why.push("a token was printed".into());
        }
        if !why.is_empty() {
            failures.push(format!("{name}: {}\n{err}{out}", why.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn closed(rest: &str) -> String {
    format!("{HEAD}{CLOSED}{rest}{SEND}{AWAIT}")
}

#[test]
fn a_plan_of_zero_seconds_or_zero_users_is_refused() {
    check(&[
        (
            "duration-0",
            format!("{HEAD}[workload]\nusers = 2\nduration = \"0s\"\n{SEND}{AWAIT}"),
            vec![want("workload.duration", "must be longer than zero", "duration = ^\"0s\"")],
        ),
        (
            "ramp-over-0",
            format!("{HEAD}[workload]\nusers = 2\nramp = [{{ to = 2, over = \"0s\" }}]\n{SEND}{AWAIT}"),
            vec![want("workload.ramp", "the plan lasts 0 s", "ramp = ^[")],
        ),
        (
            "hold-0",
            format!("{HEAD}[workload]\nusers = 2\nramp = [{{ hold = \"0s\" }}]\n{SEND}{AWAIT}"),
            vec![want("workload.ramp[0].hold", "must be longer than zero", "hold = ^\"0s\"")],
        ),
        (
            "no-users",
            format!("{HEAD}[workload]\nusers = 2\nramp = [{{ to = 0, over = \"5s\" }}]\n{SEND}{AWAIT}"),
            vec![want("workload.ramp", "never starts a user", "ramp = ^[")],
        ),
        (
            "open-duration-0",
            format!("{HEAD}[workload]\nmodel = \"open\"\nmax_users = 2\nrate = 5\nduration = \"0s\"\n{SEND}{AWAIT}"),
            vec![want("workload.duration", "must be longer than zero", "duration = ^\"0s\"")],
        ),
        (
            "step-duration-0",
            format!("{HEAD}[workload]\n[capacity]\nstart = 1\nstep = 1\nmax = 3\nstep_duration = \"0s\"\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n{SEND}{AWAIT}"),
            vec![want("capacity.step_duration", "must be longer than zero", "step_duration = ^\"0s\"")],
        ),
    ]);
}

#[test]
fn threshold_names_that_are_never_recorded_are_refused() {
    check(&[
        (
            "counter-typo",
            closed("[thresholds]\n\"runs.faild.timeout count\" = \"== 0\"\n"),
            vec![want(
                "thresholds.\"runs.faild.timeout count\"",
                "unknown counter `runs.faild.timeout`: chatload never counts it, so the rule would judge 0 (did you mean `runs.failed.timeout`?)",
                "^\"runs.faild.timeout count\"",
            )],
        ),
        (
            "metric-typo",
            closed("[thresholds]\n\"ttcc p95\" = \"< 2s\"\n\"run_failed_timeuot rate\" = \"< 1%\"\n\"event_agent_finished p95\" = \"< 1s\"\n\"thread_switch p95\" = \"< 1s\"\n"),
            vec![
                want("thresholds.\"ttcc p95\"", "did you mean `ttc`", "^\"ttcc p95\""),
                want("thresholds.\"run_failed_timeuot rate\"", "unknown failure class `timeuot`", "^\"run_failed_timeuot rate\""),
                want("thresholds.\"event_agent_finished p95\"", "not an agent event of the profile", "^\"event_agent_finished p95\""),
                want("thresholds.\"thread_switch p95\"", "no journey has a `switch_thread` step", "^\"thread_switch p95\""),
            ],
        ),
        (
            "slo-names",
            format!("{HEAD}{CAPACITY}[capacity.slo]\n\"ttcc p95\" = \"< 2s\"\n\"bogus_metric p95\" = \"< 1s\"\n\"users.parkd count\" = \"== 0\"\n{SEND}{AWAIT}"),
            vec![
                want("capacity.slo.\"ttcc p95\"", "unknown latency metric `ttcc`", "^\"ttcc p95\""),
                want("capacity.slo.\"bogus_metric p95\"", "unknown latency metric `bogus_metric`", "^\"bogus_metric p95\""),
                want("capacity.slo.\"users.parkd count\"", "unknown counter `users.parkd`", "^\"users.parkd count\""),
            ],
        ),
    ]);
}

/// Names that chatload does record for the scenario are accepted.
#[test]
fn threshold_names_the_scenario_records_load() {
    let text = format!(
        r#"{HEAD}{CLOSED}
[[journey]]
step = "create_thread"
[[journey]]
step = "http"
name = "get_thread"
path = "/api/threads/{{{{thread}}}}"
[[journey]]
step = "think"
name = "nap"
duration = "1s"
[[journey]]
step = "switch_thread"
{SEND}{AWAIT}
[thresholds]
"ttfe p95" = "< 2s"
"ttc p99" = "< 5s"
"ws_connect p95" = "< 1s"
"event_agent_started p95" = "< 1s"
"event_tool_completed max" = "< 9s"
"create_thread p95" = "< 1s"
"get_thread p95" = "< 1s"
"step.nap max" = "< 2s"
"step.send max" = "< 2s"
"thread_switch p95" = "< 1s"
"close_1011 rate" = "< 0.1%"
"run_failed_no_response rate" = "< 1%"
"runs.failed.timeout count" = "== 0"
"closes_by_phase.first_exchange.1011 count" = "== 0"
"connections.rejected.503 count" = "== 0"
"violations.missing_field.tool_completed.tool_name count" = "== 0"
"rest.get_thread.404 count" = "== 0"
"events.agent_completed count" = "> 0"
"persistence_miss count" = "== 0"
"starts.dropped count" = "== 0"
"ttfe p95 drift" = "< 20%"
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("names.toml");
    std::fs::write(&file, &text).unwrap();
    let o = validate(&file);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_await_needs_a_send_before_it_on_some_path() {
    let repeat_await =
        "[[journey]]\nstep = \"repeat\"\ntimes = 2\n[[journey.steps]]\nstep = \"await\"\n";
    check(&[
        (
            "await-in-repeat",
            format!("{HEAD}{CLOSED}{repeat_await}"),
            vec![want("journey[0].steps[0]", "has no `send` before it", "^[[journey.steps]]")],
        ),
        (
            "mix-one-without-send",
            format!(
                "{HEAD}{CLOSED}[[journeys]]\nname = \"ok\"\n[[journeys.steps]]\nstep = \"send\"\nmessage = {{ type = \"x\" }}\n[[journeys.steps]]\nstep = \"await\"\n[[journeys]]\nname = \"spins\"\n[[journeys.steps]]\nstep = \"repeat\"\nfor = \"1m\"\n[[journeys.steps.steps]]\nstep = \"think\"\nduration = \"1s\"\n[[journeys.steps.steps]]\nstep = \"await\"\ntimeout = \"9s\"\n"
            ),
            vec![want("journeys[1].steps[0].steps[1]", "has no `send` before it", "duration = \"1s\"\n^[[journeys.steps.steps]]")],
        ),
        (
            "open-await-first",
            format!("{HEAD}[workload]\nmodel = \"open\"\nmax_users = 2\nrate = 1\n{AWAIT}{SEND}"),
            vec![want("journey[0]", "has no `send` before it", "^[[journey]]\nstep = \"await\"")],
        ),
    ]);
    // A send later in a repeated block, or later in a closed-model journey
    // (users repeat it), comes before the next round's await.
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "repeat-await-then-send",
            format!("{HEAD}{CLOSED}[[journey]]\nstep = \"repeat\"\ntimes = 3\n[[journey.steps]]\nstep = \"await\"\n[[journey.steps]]\nstep = \"send\"\nmessage = {{ type = \"x\" }}\n"),
        ),
        ("closed-await-first", format!("{HEAD}{CLOSED}{AWAIT}{SEND}")),
    ] {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, &text).unwrap();
        let o = validate(&file);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn a_tokens_file_is_read_and_counted_when_the_scenario_loads() {
    let file_auth = |file: &str, reuse: &str| {
        format!("{HEAD}[auth]\nmode = \"file\"\ntokens_file = \"{file}\"\n{reuse}[workload]\nusers = 3\nduration = \"5s\"\n{SEND}{AWAIT}")
    };
    check(&[
        (
            "missing",
            file_auth("nope.txt", ""),
            vec![want("auth.tokens_file", "cannot read the tokens file", "tokens_file = ^\"nope.txt\"")],
        ),
        (
            "empty",
            file_auth("no-tokens.txt", ""),
            vec![want("auth.tokens_file", "has no tokens", "tokens_file = ^\"no-tokens.txt\"")],
        ),
        (
            "too-few",
            file_auth("one-token.txt", ""),
            vec![want(
                "auth.tokens_file",
                "the tokens file one-token.txt has 1 tokens for 3 users; add tokens, or set auth.reuse_tokens = true",
                "tokens_file = ^\"one-token.txt\"",
            )],
        ),
        (
            "open-pool",
            format!("{HEAD}[auth]\nmode = \"file\"\ntokens_file = \"three-tokens.txt\"\n[workload]\nmodel = \"open\"\nmax_users = 4\nrate = 1\n{SEND}{AWAIT}"),
            vec![want("auth.tokens_file", "has 3 tokens for 4 users", "tokens_file = ^\"three-tokens.txt\"")],
        ),
    ]);
    let dir = tempfile::tempdir().unwrap();
    write_fixtures(dir.path());
    for (name, text) in [
        ("enough", file_auth("three-tokens.txt", "")),
        ("reuse", file_auth("one-token.txt", "reuse_tokens = true\n")),
    ] {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, &text).unwrap();
        let o = validate(&file);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn numbers_and_statuses_out_of_range_are_refused_at_their_key() {
    let http = |expect: &str| {
        format!("{HEAD}{CLOSED}{SEND}{AWAIT}[[journey]]\nstep = \"http\"\npath = \"/x\"\nexpect = {expect}\n")
    };
    check(&[
        (
            "non-finite",
            format!("{HEAD}{CLOSED}[reconnect]\nmultiplier = inf\njitter = nan\n[server]\nslowdown_per_minute = -inf\n[[journey]]\nstep = \"send\"\nmessage = {{ type = \"x\", weight = nan }}\n{AWAIT}"),
            vec![
                want("reconnect.multiplier", "`inf` is not a finite number", "multiplier = ^inf"),
                want("reconnect.jitter", "is not a finite number", "jitter = ^nan"),
                want("server.slowdown_per_minute", "`-inf` is not a finite number", "slowdown_per_minute = ^-inf"),
                want("journey[0].message.weight", "is not a finite number", "weight = ^nan"),
            ],
        ),
        (
            "open-rate-nan",
            format!("{HEAD}[workload]\nmodel = \"open\"\nmax_users = 2\nrate = nan\n{SEND}{AWAIT}"),
            vec![want("workload.rate", "is not a finite number", "rate = ^nan")],
        ),
        (
            "expect-wraps",
            http("65736"),
            vec![want("journey[2].expect", "`65736` is not an HTTP status (100 to 599)", "expect = ^65736")],
        ),
        (
            "expect-list",
            http("[200, 70000]"),
            vec![want("journey[2].expect[1]", "`70000` is not an HTTP status", "^70000")],
        ),
        (
            "expect-negative",
            http("-1"),
            vec![want("journey[2].expect", "`-1` is not an HTTP status", "expect = ^-1")],
        ),
    ]);
}

#[test]
fn journey_mixes_use_one_kind_of_share() {
    let journey = |name: &str, part: &str| {
        format!("[[journeys]]\nname = \"{name}\"\n{part}\n[[journeys.steps]]\nstep = \"send\"\nmessage = {{ type = \"x\" }}\n[[journeys.steps]]\nstep = \"await\"\n")
    };
    check(&[
        (
            "share-and-weight",
            format!(
                "{HEAD}{CLOSED}{}{}",
                journey("a", "share = \"70%\""),
                journey("b", "weight = 3")
            ),
            vec![want(
                "journeys",
                "give `share` to every journey or to none",
                "^[[journeys]]\nname = \"a\"",
            )],
        ),
        (
            "shares-50",
            format!(
                "{HEAD}{CLOSED}{}{}",
                journey("a", "share = \"30%\""),
                journey("b", "share = \"20%\"")
            ),
            vec![want(
                "journeys",
                "the journeys' shares add up to 50%, not 100%",
                "^[[journeys]]\nname = \"a\"",
            )],
        ),
        (
            "open-counts",
            format!(
                "{HEAD}[workload]\nmodel = \"open\"\nmax_users = 10\nrate = 2\n{}{}",
                journey("a", "users = 3"),
                journey("b", "users = 4")
            ),
            vec![want(
                "journeys",
                "add up to 7: set workload.max_users = 7 (the open model's session pool)",
                "^[[journeys]]\nname = \"a\"",
            )],
        ),
        (
            "closed-counts",
            format!(
                "{HEAD}{CLOSED}{}{}",
                journey("a", "users = 3"),
                journey("b", "users = 4")
            ),
            vec![want(
                "journeys",
                "add up to 7: set workload.users = 7 so",
                "^[[journeys]]\nname = \"a\"",
            )],
        ),
    ]);
}

#[test]
fn values_that_make_a_run_meaningless_are_refused() {
    check(&[
        (
            "open-rate-0",
            format!("{HEAD}[workload]\nmodel = \"open\"\nmax_users = 2\nrate = 0\nduration = \"10s\"\n{SEND}{AWAIT}"),
            vec![want("workload.rate", "every stage has rate 0: the plan has no arrivals", "rate = ^0")],
        ),
        (
            "open-ramp-0",
            format!("{HEAD}[workload]\nmodel = \"open\"\nmax_users = 2\nramp = [{{ to = 0, over = \"10s\" }}]\n{SEND}{AWAIT}"),
            vec![want("workload.ramp", "every stage has rate 0", "ramp = ^[")],
        ),
        (
            "zero-durations",
            closed("[[journey]]\nstep = \"repeat\"\nfor = \"0s\"\n[[journey.steps]]\nstep = \"think\"\nduration = \"1s\"\n[[journey]]\nstep = \"switch_thread\"\ntimeout = \"0s\"\n"),
            vec![
                want("journey[0].for", "must be longer than zero", "for = ^\"0s\""),
                want("journey[1].timeout", "must be above zero", "timeout = ^\"0s\""),
            ],
        ),
        (
            "empty-slo",
            format!("{HEAD}{CAPACITY}[capacity.slo]\n{SEND}{AWAIT}"),
            vec![want("capacity.slo", "needs at least one rule", "^[capacity.slo]")],
        ),
        (
            "capacity-start-0",
            format!("{HEAD}[workload]\n[capacity]\nstart = 0\nstep = 1\nmax = 3\nstep_duration = \"5s\"\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n{SEND}{AWAIT}"),
            vec![want("capacity.start", "must be at least 1: a step of 0 users", "start = ^0")],
        ),
        (
            "open-capacity-start-0",
            format!("{HEAD}[workload]\nmodel = \"open\"\nmax_users = 4\n[capacity]\nstart = 0\nstep = 1\nmax = 3\nstep_duration = \"5s\"\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n{SEND}{AWAIT}"),
            vec![want("capacity.start", "must be above 0: a step at rate 0", "start = ^0")],
        ),
        (
            "csv-duplicate-column",
            closed("[data]\nfile = \"dup.csv\"\n"),
            vec![want("data.file", "column `topic` appears twice", "file = ^\"dup.csv\"")],
        ),
        (
            "jsonl-duplicate-key",
            closed("[data]\nfile = \"dup.jsonl\"\n"),
            vec![want("data.file", "`topic` appears twice", "file = ^\"dup.jsonl\"")],
        ),
        (
            "no-prompts",
            format!("{HEAD}prompts = []\n{CLOSED}{SEND}{AWAIT}"),
            vec![want("prompts", "needs at least one prompt", "prompts = ^[]")],
        ),
    ]);
}

#[test]
fn every_template_is_checked_where_it_is_rendered() {
    check(&[
        (
            "session-templates",
            format!(
                "{HEAD}[auth]\nmode = \"login\"\nclaims = {{ note = \"{{{{nope1}}}}\", who = \"{{{{ user }}}}\" }}\n[auth.login]\nbody = {{ user_id = \"{{{{nope2}}}}\", run = \"{{{{run}}}}\", key = \"{{{{env.lower}}}}\" }}\n[profile]\nheartbeat = {{ message = {{ type = \"ping\", who = \"{{{{nope3}}}}\" }} }}\nswitch_thread = {{ message = {{ type = \"switch_thread\", payload = {{ thread_id = \"{{{{nope4}}}}\" }} }} }}\nhandshake = {{ on = \"hello\", reply = {{ type = \"ack\", x = \"{{{{env.HOME}}}}\" }} }}\nanswers = {{ ping = {{ type = \"pong\", who = \"{{{{user}}}}\" }} }}\n{CLOSED}[[journey]]\nstep = \"create_thread\"\ntitle = \"t {{{{user}}}}\"\n{SEND}{AWAIT}"
            ),
            vec![
                want("auth.claims.note", "claims fill only `{{user}}`", "note = ^\"{{nope1}}\""),
                want("auth.claims.who", "claims fill only `{{user}}`", "who = ^\"{{ user }}\""),
                want("auth.login.body.user_id", "unknown placeholder `{{nope2}}` ([auth.login] body fills", "user_id = ^\"{{nope2}}\""),
                want("auth.login.body.run", "`{{run}}` is empty in [auth.login] body", "run = ^\"{{run}}\""),
                want("auth.login.body.key", "an environment variable name is A-Z, 0-9 and _", "key = ^\"{{env.lower}}\""),
                want("profile.heartbeat.message.who", "unknown placeholder `{{nope3}}`", "who = ^\"{{nope3}}\""),
                want("profile.switch_thread.message.payload.thread_id", "unknown placeholder `{{nope4}}`", "thread_id = ^\"{{nope4}}\""),
                want("profile.handshake.reply.x", "environment placeholders are read in [auth.login] body only", "x = ^\"{{env.HOME}}\""),
                want("profile.answers.ping.who", "an answer is sent as written", "who = ^\"{{user}}\""),
                want("journey[0].title", "a thread title is sent as written", "title = ^\"t {{user}}\""),
            ],
        ),
        (
            "run-templates",
            format!(
                "{HEAD}{CLOSED}[data]\nfile = \"prompts.csv\"\n[[journey]]\nstep = \"send\"\nmessage = {{ type = \"x\", a = \"{{{{topic}}}}\", b = \"{{{{user\" }}\n{AWAIT}[[journey]]\nstep = \"http\"\npath = \"/t/{{{{topic}}}}\"\nbody = {{ r = \"{{{{run}}}}\", n = [\"{{{{nada}}}}\"] }}\n"
            ),
            vec![
                want("journey[0].message.b", "unterminated placeholder `{{user`", "b = ^\"{{user\""),
                want("journey[2].body.r", "`{{run}}` is empty in an `http` step", "r = ^\"{{run}}\""),
                want("journey[2].body.n[0]", "unknown placeholder `{{nada}}`", "^\"{{nada}}\""),
            ],
        ),
        (
            "login-url-template",
            format!("{HEAD}[auth]\nmode = \"login\"\n[auth.login]\nurl = \"/login/{{{{user}}}}\"\n{CLOSED}{SEND}{AWAIT}"),
            vec![want("auth.login.url", "the login url is sent as written", "url = ^\"/login/{{user}}\"")],
        ),
        (
            "login-body-not-a-table",
            format!("{HEAD}[auth]\nmode = \"login\"\n[auth.login]\nurl = \"ftp://x/login\"\nbody = \"not-a-table\"\n{CLOSED}{SEND}{AWAIT}"),
            vec![
                want("auth.login.url", "a path on the target's host", "url = ^\"ftp://x/login\""),
                want("auth.login.body", "must be a table", "body = ^\"not-a-table\""),
            ],
        ),
    ]);
}

#[test]
fn one_mistake_gives_one_error_and_nested_steps_are_still_checked() {
    check(&[
        (
            "repeat-times-and-for",
            closed("[[journey]]\nstep = \"repeat\"\ntimes = 2\nfor = \"1m\"\n[[journey.steps]]\nstep = \"think\"\nduration = \"soon\"\nretries = 1\n"),
            vec![
                want("journey[0].for", "exactly one of `times = N` or `for = \"30s\"`, not both", "for = ^\"1m\""),
                want("journey[0].steps[0].duration", "`soon` is not a duration", "duration = ^\"soon\""),
                want("journey[0].steps[0].retries", "unknown key", "^retries = 1"),
            ],
        ),
        (
            "too-deep",
            closed("[[journey]]\nstep = \"repeat\"\ntimes = 2\n[[journey.steps]]\nstep = \"repeat\"\ntimes = 2\n[[journey.steps.steps]]\nstep = \"repeat\"\ntimes = 2\n[[journey.steps.steps.steps]]\nstep = \"repeat\"\ntimes = 2\n[[journey.steps.steps.steps.steps]]\nstep = \"repeat\"\ntimes = 2\n[[journey.steps.steps.steps.steps.steps]]\nstep = \"connect\"\nbogus = 1\n"),
            vec![
                want("journey[0].steps[0].steps[0].steps[0]", "nest at most 3 deep", "^[[journey.steps.steps.steps]]"),
                want("journey[0].steps[0].steps[0].steps[0].steps[0].steps[0].bogus", "unknown key", "^bogus = 1"),
            ],
        ),
        (
            "login-table-with-mint",
            closed("[auth]\nmode = \"mint\"\n[auth.login]\nurl = \"/x\"\nbody = { a = 1 }\ntoken = \"t\"\n"),
            vec![want("auth.login", "[auth.login] is only read with mode = \"login\"", "^[auth.login]")],
        ),
        (
            "failed-data-file",
            format!("{HEAD}{CLOSED}[data]\nfile = \"nope.csv\"\n[[journey]]\nstep = \"send\"\nmessage = {{ type = \"x\", t = \"{{{{topic}}}}\" }}\n{AWAIT}"),
            vec![want("data.file", "nope.csv: No such file", "file = ^\"nope.csv\"")],
        ),
        (
            "negative-initial",
            closed("[reconnect]\ninitial = \"-1s\"\nmax = \"0s\"\n"),
            vec![want("reconnect.initial", "`-1s` is not a duration", "initial = ^\"-1s\"")],
        ),
        (
            "heartbeat-off",
            closed("[profile]\nheartbeat = \"off\"\n"),
            vec![want("profile.heartbeat", "expected a table { every, message, reply, timeout } or \"none\"", "heartbeat = ^\"off\"")],
        ),
    ]);
}

#[test]
fn errors_name_the_key_not_its_table() {
    check(&[
        (
            "await-timeout",
            format!("{HEAD}{CLOSED}{SEND}[[journey]]\nstep = \"await\"\ntimeout = \"0s\"\n"),
            vec![want("journey[1].timeout", "must be above zero: every await needs a deadline", "timeout = ^\"0s\"")],
        ),
        (
            "heartbeat-every",
            closed("[profile.heartbeat]\nevery = \"0s\"\n"),
            vec![want("profile.heartbeat.every", "must be at least 100ms", "every = ^\"0s\"")],
        ),
        (
            "heartbeat-timeout",
            closed("[profile]\nheartbeat = { every = \"10s\", timeout = \"1s\" }\n"),
            vec![want("profile.heartbeat.timeout", "must be at least `every`", "timeout = ^\"1s\"")],
        ),
        (
            "http-placeholders",
            format!("{HEAD}{CLOSED}{SEND}{AWAIT}[[journey]]\nstep = \"http\"\npath = \"/api/{{{{nope}}}}\"\nbody = {{ a = \"{{{{nada}}}}\" }}\n"),
            vec![
                want("journey[2].path", "unknown placeholder `{{nope}}`", "path = ^\"/api/{{nope}}\""),
                want("journey[2].body.a", "unknown placeholder `{{nada}}`", "a = ^\"{{nada}}\""),
            ],
        ),
        (
            "login-url",
            closed("[auth]\nmode = \"login\"\n[auth.login]\nurl = \"\"\n"),
            vec![want("auth.login.url", "a path on the target's host", "url = ^\"\"")],
        ),
        (
            "initial-above-max",
            closed("[reconnect]\ninitial = \"1m\"\nmax = \"30s\"\n"),
            vec![want("reconnect.initial", "`initial` (1m) must not exceed `max` (30s)", "initial = ^\"1m\"")],
        ),
    ]);
}

/// The plan printout: a capacity search is judged by its knee, and evenly
/// spaced arrivals are counted the same way per stage and in all.
#[test]
fn validate_prints_how_the_run_is_judged_and_consistent_arrival_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cap = dir.path().join("cap.toml");
    std::fs::write(
        &cap,
        format!(
            "{HEAD}{CAPACITY}target = 2\n[capacity.slo]\n\"ttc p95\" = \"< 2s\"\n{SEND}{AWAIT}"
        ),
    )
    .unwrap();
    let o = validate(&cap);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.contains("thresholds: none"), "{out}");
    assert!(
        out.contains("verdict: by the knee of the search, judged step by step on [capacity.slo]:\n  ttc p95 < 2s\n  the run passes when some step held and the knee reaches the target 2 users"),
        "{out}"
    );
    // 1.5/s for 1 s, three times: 1.5 expected per stage, 4.5 in all; the
    // pacer starts arrivals 0..=4, so the stages show 2, 1, 2 and the total 5.
    let open = dir.path().join("open.toml");
    std::fs::write(
        &open,
        format!("{HEAD}[workload]\nmodel = \"open\"\nmax_users = 2\nrate = 1.5\nramp = [{{ hold = \"1s\" }}, {{ hold = \"1s\" }}, {{ hold = \"1s\" }}]\n{SEND}{AWAIT}"),
    )
    .unwrap();
    let o = validate(&open);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let counts: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("hold 1.50/s"))
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    assert_eq!(counts, ["2", "1", "2"], "{out}");
    assert!(out.contains(", 5 arrivals in 3s"), "{out}");
}

fn assert_loads(what: &str, text: &str, dir: &Path) {
    let file = dir.join("shown.toml");
    std::fs::write(&file, text).unwrap();
    let o = validate(&file);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{what}:\n{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_scenario_shipped_or_shown_still_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    write_fixtures(dir.path());
    let mut seen = 0;
    for folder in ["scenarios", "bench"] {
        for entry in std::fs::read_dir(root.join(folder)).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                let o = validate(&p);
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{}: {}",
                    p.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
                seen += 1;
            }
        }
    }
    // The Kubernetes configmap's scenario: the block under `scenario.toml: |`.
    let yaml = std::fs::read_to_string(root.join("deploy/kubernetes/00-configmap.yaml")).unwrap();
    let block: Vec<&str> = yaml
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("scenario.toml: |"))
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    assert!(block.len() > 10, "the configmap holds a scenario");
    assert_loads(
        "deploy/kubernetes/00-configmap.yaml",
        &block.join("\n"),
        dir.path(),
    );
    // README.md's snippets, completed where they show only a part.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut snippets = 0;
    let mut rest = readme.as_str();
    while let Some(i) = rest.find("```toml\n") {
        let body = &rest[i + 8..];
        let end = body.find("```").unwrap();
        let mut text = body[..end].to_string();
        rest = &body[end + 3..];
        if !text.contains("version =") {
            text = format!("{HEAD}{text}");
        }
        if !text.contains("[workload]") {
            text.push_str(CLOSED);
        }
        if !text.contains("[[journey") {
            text.push_str(SEND);
            text.push_str(AWAIT);
        }
        assert_loads("a README.md snippet", &text, dir.path());
        snippets += 1;
    }
    assert!(
        seen >= 5 && snippets >= 6,
        "{seen} files, {snippets} snippets"
    );
}
