//! Message templates: JSON values whose strings may hold `{{variable}}`
//! placeholders, filled per user and per run. Imports nothing from the crate.

use serde_json::Value;

/// Placeholders a template may use.
pub const VARIABLES: [&str; 5] = ["user", "thread", "run", "prompt", "iteration"];

/// Values for one rendering.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub user: &'a str,
    pub thread: &'a str,
    pub run: &'a str,
    pub prompt: &'a str,
    pub iteration: u64,
    /// Columns of the user's data row (`[data]`), by name.
    pub extra: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// One `{{...}}` of a template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// `{{name}}`, the name trimmed.
    Var(String),
    /// `{{env.NAME}}`: the environment variable NAME (as written; see [`is_env_name`]).
    Env(String),
    /// A `{{` without its `}}`: the text after it.
    Unterminated(String),
}

/// The placeholders of one string, in order.
pub fn tokens(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                out.push(match name.strip_prefix(ENV_PREFIX) {
                    Some(var) => Token::Env(var.to_string()),
                    None => Token::Var(name.to_string()),
                });
                rest = &after[end + 2..];
            }
            None => {
                out.push(Token::Unterminated(after.to_string()));
                break;
            }
        }
    }
    out
}

/// `{{env.NAME}}` renders the environment variable NAME.
pub const ENV_PREFIX: &str = "env.";

/// Whether NAME of `{{env.NAME}}` is a valid name: `[A-Z0-9_]+`.
pub fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Every variable placeholder (`{{name}}`, not `{{env.NAME}}`) used in `v`,
/// in order of appearance; an unterminated `{{` is none.
pub fn placeholders(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_strings(v, &mut |s| {
        out.extend(tokens(s).into_iter().filter_map(|t| match t {
            Token::Var(name) => Some(name),
            Token::Env(_) | Token::Unterminated(_) => None,
        }))
    });
    out
}

/// Calls `f` with the name of every complete `{{name}}` placeholder in the
/// strings of `v` (trimmed, `env.` ones included), allocating nothing: for
/// checks on the hot path, where [`placeholders`] would build a list per call.
fn each_placeholder(v: &Value, f: &mut impl FnMut(&str)) {
    walk_strings(v, &mut |s| {
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                return;
            };
            f(after[..end].trim());
            rest = &after[end + 2..];
        }
    });
}

/// Which per-run placeholders a message template uses: the ids the client
/// chose are checked on every event; ids it did not choose are adopted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunVars {
    pub run: bool,
    pub thread: bool,
}

impl RunVars {
    /// Scanned on every send: allocates nothing.
    pub fn of(message: &Value) -> Self {
        let mut uses = RunVars::default();
        each_placeholder(message, &mut |name| match name {
            "run" => uses.run = true,
            "thread" => uses.thread = true,
            _ => {}
        });
        uses
    }
}

/// Every NAME of an `{{env.NAME}}` placeholder in `v`, in order of appearance.
pub fn env_names(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_strings(v, &mut |s| {
        out.extend(tokens(s).into_iter().filter_map(|t| match t {
            Token::Env(name) => Some(name),
            Token::Var(_) | Token::Unterminated(_) => None,
        }))
    });
    out
}

fn walk_strings(v: &Value, f: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| walk_strings(x, f)),
        Value::Object(o) => o.values().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

/// A string that is exactly `{{null}}` renders as JSON `null` (TOML has
/// no null). Inside other text it is refused when the scenario is loaded.
pub fn is_null(s: &str) -> bool {
    let t = s.trim();
    t.len() >= 4
        && t.starts_with("{{")
        && t.ends_with("}}")
        && t[2..t.len() - 2].trim() == NULL_NAME
}

/// The placeholder name of JSON `null`.
pub const NULL_NAME: &str = "null";

/// Fills every placeholder; `{{null}}` (the whole string) is JSON `null`; `{{env.NAME}}` becomes the environment variable
/// NAME (empty when unset: `run` refuses to start then). Unknown placeholders
/// were refused when the scenario was loaded, so they are left as written here.
pub fn render(v: &Value, vars: &Vars<'_>) -> Value {
    match v {
        Value::String(s) if is_null(s) => Value::Null,
        Value::String(s) if s.contains("{{") => Value::String(render_str(s, vars)),
        Value::Array(a) => Value::Array(a.iter().map(|x| render(x, vars)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), render(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn render_str(s: &str, vars: &Vars<'_>) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        match name {
            "user" => out.push_str(vars.user),
            "thread" => out.push_str(vars.thread),
            "run" => out.push_str(vars.run),
            "prompt" => out.push_str(vars.prompt),
            "iteration" => out.push_str(&vars.iteration.to_string()),
            env if env.starts_with(ENV_PREFIX) => {
                out.push_str(&std::env::var(&env[ENV_PREFIX.len()..]).unwrap_or_default())
            }
            other => match vars.extra.and_then(|m| m.get(other)) {
                Some(v) => out.push_str(v),
                None => out.push_str(&rest[start..start + 2 + end + 2]),
            },
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_nested_placeholders() {
        let t = json!({"type":"start_agent","payload":{"user_request":"{{prompt}} #{{iteration}}","thread_id":"{{thread}}","ids":["{{ user }}", 3]}});
        let vars = Vars {
            user: "u1",
            thread: "t1",
            run: "r1",
            prompt: "hi",
            iteration: 2,
            extra: None,
        };
        assert_eq!(
            render(&t, &vars),
            json!({"type":"start_agent","payload":{"user_request":"hi #2","thread_id":"t1","ids":["u1", 3]}})
        );
        let mut found = placeholders(&t);
        found.sort();
        assert_eq!(found, vec!["iteration", "prompt", "thread", "user"]);
    }

    /// An unterminated `{{user` is not a use of `user` (the loader refuses it
    /// as unterminated; it used to pass as `{{user}}`).
    #[test]
    fn a_whole_null_placeholder_is_json_null() {
        let t = json!({"a": "{{null}}", "b": ["{{ null }}", "x {{null}}"], "c": 1});
        assert_eq!(
            render(&t, &Vars::default()),
            json!({"a": null, "b": [null, "x {{null}}"], "c": 1})
        );
        assert!(is_null(" {{null}} ") && !is_null("{{nullx}}") && !is_null("{{null}} x"));
    }

    #[test]
    fn unterminated_placeholders_are_kept_and_are_not_placeholders() {
        let vars = Vars::default();
        assert_eq!(render(&json!("a {{user"), &vars), json!("a {{user"));
        assert!(placeholders(&json!("a {{user")).is_empty());
        assert_eq!(tokens("a {{user"), vec![Token::Unterminated("user".into())]);
    }

    #[test]
    fn each_placeholder_sees_what_placeholders_lists() {
        let v = serde_json::json!({"a": "{{ run }} and {{thread}}", "b": ["{{user}}", "{{env.X}}", "{{open"], "c": 1});
        let mut seen = Vec::new();
        each_placeholder(&v, &mut |n| seen.push(n.to_string()));
        assert_eq!(seen, ["run", "thread", "user", "env.X"]);
        let vars: Vec<String> = seen
            .into_iter()
            .filter(|n| !n.starts_with(ENV_PREFIX))
            .collect();
        assert_eq!(vars, placeholders(&v));
    }

    #[test]
    fn tokens_table() {
        let cases: [(&str, &[Token]); 6] = [
            ("plain", &[]),
            (
                "{{ user }}-{{run}}",
                &[Token::Var("user".into()), Token::Var("run".into())],
            ),
            ("{{env.API_KEY}}", &[Token::Env("API_KEY".into())]),
            ("{{ env.lower }}", &[Token::Env("lower".into())]),
            (
                "x {{thread}} {{oops",
                &[
                    Token::Var("thread".into()),
                    Token::Unterminated("oops".into()),
                ],
            ),
            ("}} {{}}", &[Token::Var(String::new())]),
        ];
        for (text, want) in cases {
            assert_eq!(tokens(text), want, "{text}");
        }
        assert!(is_env_name("API_KEY_2") && !is_env_name("lower") && !is_env_name(""));
    }

    #[test]
    fn env_placeholders_render_the_environment() {
        // PATH is set wherever tests run (no set_var: tests share the process
        // environment); a variable nobody sets renders empty.
        let path = std::env::var("PATH").expect("PATH is set");
        let t = json!({"password": "{{env.PATH}}", "other": "<{{env.CHATLOAD_TEMPLATE_TEST_UNSET}}>", "user": "{{user}}"});
        let vars = Vars {
            user: "u1",
            ..Vars::default()
        };
        assert_eq!(
            render(&t, &vars),
            json!({"password": path, "other": "<>", "user": "u1"})
        );
        let mut envs = env_names(&t);
        envs.sort();
        assert_eq!(envs, ["CHATLOAD_TEMPLATE_TEST_UNSET", "PATH"]);
        assert_eq!(placeholders(&t), ["user"]);
    }
}
