//! `[auth]` and `[auth.login]`: where tokens come from (minted, a tokens
//! file, a login endpoint), how they are presented and refreshed. Imports
//! `auth::Presentation` and the `doc` readers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::Presentation;

use super::doc::{self, Node, Obj};
use super::fills::{check_template, refuse_placeholders, Fills, NO_COLUMNS, SESSION_VARIABLES};
use super::model::{Auth, TokenSource};

/// Default name of the environment variable holding the HS256 signing key.
pub const DEFAULT_SECRET_ENV: &str = "CHATLOAD_JWT_SECRET";

/// `[auth]`: minted tokens by default; `mode` picks a tokens file or a login
/// endpoint instead.
pub(super) fn read_auth(
    o: &Obj<'_>,
    base: &Path,
    peak_users: Option<u64>,
    max_bytes: u64,
    profile: Option<&crate::protocol::Profile>,
) -> Option<Auth> {
    let mut a = defaults();
    // The profile's presentation and login path, unless written here.
    let login_path = profile.map_or("/auth/dev/login", |p| p.login_path.as_str());
    if let Some(p) = profile {
        let present: Vec<Presentation> = p.present.iter().filter_map(|x| x.parse().ok()).collect();
        if !present.is_empty() {
            a.present = present;
        }
    }
    let Some(tbl) = o.obj("auth") else {
        return Some(a);
    };
    let mut ok = true;
    ok &= read_source(&tbl, (base, max_bytes, login_path), peak_users, &mut a);
    ok &= read_key(&tbl, &mut a);
    let lifetime = tbl.get("lifetime");
    let mut times_ok = true;
    if let Some(n) = &lifetime {
        match n.as_duration() {
            Some(d) => a.lifetime = d,
            None => times_ok = false,
        }
    }
    ok &= read_claims(&tbl, &mut a);
    ok &= read_present(&tbl, &mut a);
    if let Some(p) = tbl.str("user_prefix") {
        a.user_prefix = p;
    }
    let margin = tbl.get("refresh_margin");
    if let Some(n) = &margin {
        if n.item.as_str() == Some("off") {
            a.refresh = false;
            a.refresh_margin = Duration::ZERO;
        } else {
            match n.as_duration() {
                Some(d) => a.refresh_margin = d,
                None => times_ok = false,
            }
        }
    }
    if times_ok && a.refresh_margin >= a.lifetime {
        let why = format!(
            "refresh_margin ({}) must be shorter than the token lifetime ({})",
            humantime::format_duration(a.refresh_margin),
            humantime::format_duration(a.lifetime)
        );
        match margin.as_ref().or(lifetime.as_ref()) {
            Some(n) => n.error(why),
            None => tbl.error(why),
        }
        ok = false;
    }
    tbl.finish();
    ok.then_some(a)
}

/// Minted HS256 tokens with the netra claims, refreshed a minute before they expire.
fn defaults() -> Auth {
    let claims = crate::auth::netra_claims();
    Auth {
        secret_env: DEFAULT_SECRET_ENV.into(),
        lifetime: Duration::from_secs(30 * 60),
        claims,
        present: vec![Presentation::SubprotocolJwt],
        user_prefix: "chatload-user-".into(),
        refresh_margin: Duration::from_secs(60),
        refresh: true,
        source: TokenSource::Mint,
        file_tokens: None,
    }
}

/// `mode`, as written; `None`: an unknown mode (reported).
fn read_mode<'a>(tbl: &Obj<'a>) -> Option<&'a str> {
    match tbl.get("mode") {
        None => Some("mint"),
        Some(n) => match n.as_str() {
            Some(m @ ("mint" | "file" | "login")) => Some(m),
            Some(m) => {
                n.error(format!(
                    "unknown auth mode `{m}` (expected mint, file or login)"
                ));
                None
            }
            None => None,
        },
    }
}

/// Where tokens come from: `mode` and the keys of that mode (a tokens file,
/// `[auth.login]`); a key of another mode is refused.
fn read_source(
    tbl: &Obj<'_>,
    (base, max_bytes, login_path): (&Path, u64, &str),
    peak_users: Option<u64>,
    a: &mut Auth,
) -> bool {
    let mut ok = true;
    // `None`: an unknown mode (reported); the keys of a mode are then not judged.
    let mode = read_mode(tbl);
    ok &= mode.is_some();
    let tokens_file = tbl.get("tokens_file");
    let reuse_node = tbl.get("reuse_tokens");
    let stream_node = tbl.get("tokens_file_stream");
    let stream = match &stream_node {
        None => Some(false),
        Some(n) => n.as_bool(),
    };
    ok &= stream.is_some();
    let reuse = match &reuse_node {
        None => Some(false),
        Some(n) => n.as_bool(),
    };
    ok &= reuse.is_some();
    match mode {
        Some("file") => match tokens_file.as_ref() {
            Some(n) => {
                let input = (base, max_bytes, stream.unwrap_or(false));
                ok &= read_tokens_file(n, input, reuse, peak_users, a);
            }
            None => {
                tbl.ctx().error(
                    tbl.node.span.clone(),
                    &tbl.child_path("tokens_file"),
                    "required with mode = \"file\": a file with one token per line",
                );
                ok = false;
            }
        },
        Some(m) => {
            if let Some(n) = &tokens_file {
                n.error("`tokens_file` is only read with mode = \"file\"");
                ok = false;
            }
            if let Some(n) = &reuse_node {
                n.error("`reuse_tokens` is only read with mode = \"file\"");
                ok = false;
            }
            if m == "login" {
                match read_login(tbl, login_path) {
                    Some(source) => a.source = source,
                    None => ok = false,
                }
            }
        }
        None => {}
    }
    // One error for a login table another mode never reads (its keys are not
    // reported one by one).
    if let Some(l) = tbl.get("login") {
        if mode.is_some_and(|m| m != "login") {
            l.error("[auth.login] is only read with mode = \"login\"");
            ok = false;
        }
    }
    ok
}

/// `tokens_file` of mode = "file": enough tokens for the users unless they
/// may share them. The tokens are read here, once (a FIFO can be read only
/// once), and kept for the run.
fn read_tokens_file(
    n: &Node<'_>,
    (base, max_bytes, stream): (&Path, u64, bool),
    reuse: Option<bool>,
    peak_users: Option<u64>,
    a: &mut Auth,
) -> bool {
    let mut ok = true;
    match n.as_str() {
        Some(f) => {
            let tokens = read_tokens(n, &base.join(f), max_bytes, stream);
            let count = tokens.as_ref().map(|t| t.len());
            a.file_tokens = tokens.map(std::sync::Arc::new);
            match (count, reuse, peak_users) {
                (None, ..) => ok = false,
                (Some(have), Some(false), Some(users)) if (have as u64) < users => {
                    n.error(format!(
                        "the tokens file {f} has {have} tokens for {users} users; add tokens, or set auth.reuse_tokens = true to let users share them"
                    ));
                    ok = false;
                }
                _ => {}
            }
            // The path as written, for messages; the tokens are in `file_tokens`.
            a.source = TokenSource::File {
                path: PathBuf::from(f),
                reuse: reuse.unwrap_or(false),
            };
        }
        None => ok = false,
    }
    ok
}

/// `algorithm`, `secret_env`, and a `secret` (refused: keys stay out of files).
fn read_key(tbl: &Obj<'_>, a: &mut Auth) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("algorithm") {
        if let Some(m) = n.as_str() {
            if m != "HS256" {
                n.error(format!(
                    "algorithm `{m}` is not supported (supported: HS256)"
                ));
                ok = false;
            }
        }
    }
    if let Some(n) = tbl.get("secret_env") {
        if let Some(s) = n.as_str() {
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                n.error("must be the name of an environment variable (letters, digits, _)");
                ok = false;
            } else {
                a.secret_env = s.to_string();
            }
        }
    }
    if let Some(n) = tbl.get("secret") {
        n.error("secrets never go in a scenario file: put the key in an environment variable and name it with `secret_env`");
        ok = false;
    }
    ok
}

/// `[auth.claims]`: extra claims over the defaults, filling only `{{user}}`;
/// a claim set to `false` is removed (`aud = false`: no audience at all).
fn read_claims(tbl: &Obj<'_>, a: &mut Auth) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("claims") {
        if let Some(c) = n.as_obj() {
            for (k, v, _) in c.entries() {
                if ["sub", "iat", "exp", "jti"].contains(&k.as_str()) {
                    v.error(format!(
                        "`{k}` is set per token by chatload and cannot be templated"
                    ));
                    ok = false;
                    continue;
                }
                // The minter replaces the exact text `{{user}}`, nothing else.
                doc::for_each_string(&v, &mut |node, text| {
                    if text.replace("{{user}}", "").contains("{{") {
                        node.error("claims fill only `{{user}}`, written exactly so");
                        ok = false;
                    }
                });
                // `false` removes a claim (the default `aud` a server may refuse).
                if v.item.to_json_quiet() == Some(serde_json::Value::Bool(false)) {
                    a.claims.remove(&k);
                } else if let Some(j) = v.to_json() {
                    a.claims.insert(k, j);
                }
            }
            c.finish();
        }
    }
    ok
}

/// `present`: how the token is presented (at least one way).
fn read_present(tbl: &Obj<'_>, a: &mut Auth) -> bool {
    let mut ok = true;
    if let Some(n) = tbl.get("present") {
        if let Some(items) = n.as_array() {
            let mut v = Vec::new();
            let mut good = true;
            for item in &items {
                if let Some(s) = item.as_str() {
                    match s.parse::<Presentation>() {
                        Ok(p) => v.push(p),
                        Err(e) => {
                            item.error(e);
                            good = false;
                        }
                    }
                } else {
                    good = false;
                }
            }
            if items.is_empty() {
                n.error("needs at least one presentation");
                good = false;
            }
            ok &= good;
            a.present = v;
        }
    }
    ok
}

/// The tokens of a tokens file (one per line; blank lines and `#` comments
/// skipped), read through the input rules (`input.rs`). Never shows a token.
pub(super) fn read_tokens(
    n: &Node<'_>,
    path: &Path,
    max_bytes: u64,
    stream: bool,
) -> Option<Vec<crate::auth::Secret>> {
    let text = match super::input::read_input(path, "tokens file", max_bytes, stream) {
        Ok(t) => t,
        Err(e) => {
            n.error(e.replace(
                "the `_stream = true` key",
                "`auth.tokens_file_stream = true`",
            ));
            return None;
        }
    };
    let tokens: Vec<crate::auth::Secret> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(crate::auth::Secret::new)
        .collect();
    let count = tokens.len();
    if count == 0 {
        n.error(format!(
            "the tokens file {} has no tokens (one per line; blank lines and # comments are skipped)",
            path.display()
        ));
        return None;
    }
    Some(tokens)
}

/// `[auth.login]` of mode = "login" (every key has a default; the url's is
/// the profile's login path).
pub(super) fn read_login(tbl: &Obj<'_>, login_path: &str) -> Option<TokenSource> {
    let default_body = || serde_json::json!({"user_id": "{{user}}", "email": "{{user}}@loadtest.chatload.invalid"});
    let mut source = TokenSource::Login {
        url: login_path.into(),
        body: default_body(),
        token_field: "access_token".into(),
    };
    let Some(n) = tbl.get("login") else {
        return Some(source);
    };
    let l = n.as_obj()?;
    let mut ok = true;
    let TokenSource::Login {
        url,
        body,
        token_field,
    } = &mut source
    else {
        unreachable!("built as a login source above")
    };
    if let Some(n) = l.get("url") {
        match n.as_str() {
            Some(u)
                if u.starts_with('/') || u.starts_with("http://") || u.starts_with("https://") =>
            {
                ok &= refuse_placeholders(&n, "the login url");
                *url = u.to_string()
            }
            Some(_) => {
                n.error("a path on the target's host (/auth/dev/login) or an http(s) URL");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = l.get("body") {
        if n.item.as_table_like_pub().is_none() {
            n.error("must be a table (the JSON object to POST)");
            ok = false;
        } else {
            let fills = Fills {
                place: "[auth.login] body",
                builtins: &SESSION_VARIABLES,
                names: &[],
                columns: &NO_COLUMNS,
                columns_apply: false,
                env: true,
            };
            ok &= check_template(&n, &fills);
            match n.to_json() {
                Some(v) => *body = v,
                None => ok = false,
            }
        }
    }
    if let Some(t) = l.get("token") {
        match t.as_str() {
            Some(f) if !f.is_empty() => *token_field = f.to_string(),
            Some(_) => {
                t.error("a dotted path of the token in the login answer, e.g. \"access_token\"");
                ok = false;
            }
            None => ok = false,
        }
    }
    l.finish();
    ok.then_some(source)
}
