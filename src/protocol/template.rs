//! Message templates: JSON values whose strings may hold `{{variable}}`
//! placeholders, filled per user and per run.

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

/// Every placeholder name used in `v`, in order of appearance.
pub fn placeholders(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_strings(v, &mut |s| {
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            match after.find("}}") {
                Some(end) => {
                    out.push(after[..end].trim().to_string());
                    rest = &after[end + 2..];
                }
                None => {
                    out.push(after.to_string());
                    break;
                }
            }
        }
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

/// Fills every placeholder. Unknown placeholders were refused when the scenario
/// was loaded, so they are left as written here.
pub fn render(v: &Value, vars: &Vars<'_>) -> Value {
    match v {
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

    #[test]
    fn unterminated_placeholders_are_kept() {
        let vars = Vars::default();
        assert_eq!(render(&json!("a {{user"), &vars), json!("a {{user"));
        assert_eq!(placeholders(&json!("a {{user")), vec!["user"]);
    }
}
