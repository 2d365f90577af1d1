//! Template placeholders: what is filled where (`Fills`), the `[data]`
//! columns (`Columns`) and the checks every template-bearing table uses
//! (`check_template`, `refuse_placeholders`). Imports `protocol::template`
//! and the `doc` readers.

use crate::protocol::template;

use super::doc::{self, Node};

/// The columns of `[data]`, for placeholders.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Columns {
    /// No `[data]`, or its file loaded with these columns.
    Known(Vec<String>),
    /// `[data]` is given but its file did not load (already reported): a
    /// name that may be one of its columns is not reported as unknown.
    Unknown,
}

/// Where [data] columns do not apply.
pub(super) static NO_COLUMNS: Columns = Columns::Known(Vec::new());

/// Built-in variables filled outside a run (login, heartbeats, handshake,
/// thread switches, http steps): `{{run}}` and `{{prompt}}` are empty there.
pub(super) const SESSION_VARIABLES: [&str; 3] = ["user", "thread", "iteration"];

/// Where a template is rendered, and what is filled there.
pub(super) struct Fills<'a> {
    /// For messages: "a `send` message", "an `http` step".
    pub(super) place: &'a str,
    /// The built-in variables filled here.
    pub(super) builtins: &'a [&'a str],
    /// Other names filled here: captured variables (and, where `columns`
    /// apply, the [data] columns, passed in `columns`).
    pub(super) names: &'a [String],
    pub(super) columns: &'a Columns,
    /// Whether [data] columns are filled here.
    pub(super) columns_apply: bool,
    /// Whether `{{env.NAME}}` is filled here.
    pub(super) env: bool,
}

impl Fills<'_> {
    fn known(&self) -> String {
        let mut v: Vec<String> = self
            .builtins
            .iter()
            .map(|b| format!("{{{{{b}}}}}"))
            .collect();
        v.extend(self.names.iter().map(|b| format!("{{{{{b}}}}}")));
        if self.columns_apply {
            if let Columns::Known(c) = self.columns {
                v.extend(c.iter().map(|b| format!("{{{{{b}}}}}")));
            }
        }
        v.join(", ")
    }

    /// What is wrong with one placeholder here, if anything.
    fn problem(&self, t: &template::Token) -> Option<String> {
        use template::Token;
        let place = self.place;
        match t {
            Token::Unterminated(rest) => Some(format!(
                "unterminated placeholder `{{{{{rest}`: close it with `}}}}`"
            )),
            Token::Env(name) if !self.env => Some(format!(
                "`{{{{env.{name}}}}}` is not filled in {place}: environment placeholders are read in [auth.login] body only"
            )),
            Token::Env(name) if !template::is_env_name(name) => Some(format!(
                "`{{{{env.{name}}}}}`: an environment variable name is A-Z, 0-9 and _"
            )),
            Token::Env(_) => None,
            Token::Var(v) if v == template::NULL_NAME => Some(
                "`{{null}}` sends JSON null: it must be the whole string, e.g. `field = \"{{null}}\"`".to_string(),
            ),
            Token::Var(v) => {
                let column = matches!(self.columns, Columns::Known(c) if c.contains(v));
                if self.builtins.contains(&v.as_str())
                    || self.names.contains(v)
                    || (self.columns_apply && column)
                {
                    return None;
                }
                if self.columns_apply && *self.columns == Columns::Unknown {
                    // Perhaps a column of the data file that did not load.
                    return None;
                }
                let known = self.known();
                Some(if template::VARIABLES.contains(&v.as_str()) {
                    format!("`{{{{{v}}}}}` is empty in {place}, which fills {known}")
                } else if column {
                    format!("`{{{{{v}}}}}` is a [data] column; {place} does not fill those (it fills {known})")
                } else if self.columns_apply {
                    format!("unknown placeholder `{{{{{v}}}}}` (known: {known}; a [data] file adds its columns)")
                } else {
                    format!("unknown placeholder `{{{{{v}}}}}` ({place} fills {known})")
                })
            }
        }
    }
}

/// Checks every placeholder of every string in `n`, each problem reported at
/// its string's own key path.
pub(super) fn check_template(n: &Node<'_>, fills: &Fills<'_>) -> bool {
    let mut ok = true;
    doc::for_each_string(n, &mut |node, text| {
        if template::is_null(text) {
            return;
        }
        for t in template::tokens(text) {
            if let Some(why) = fills.problem(&t) {
                node.error(why);
                ok = false;
            }
        }
    });
    ok
}

/// Values sent as written: a placeholder there would go out verbatim.
pub(super) fn refuse_placeholders(n: &Node<'_>, what: &str) -> bool {
    let mut ok = true;
    doc::for_each_string(n, &mut |node, text| {
        if text.contains("{{") {
            node.error(format!(
                "{what} is sent as written: placeholders are not filled here"
            ));
            ok = false;
        }
    });
    ok
}
