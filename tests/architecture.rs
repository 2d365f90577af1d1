//! The house rules of `../shared/ARCHITECTURE.md`, checked on the source
//! tree itself, so a later change cannot quietly undo them:
//!
//! - every `crate::` and `super::` path in `src/` (use lines with their brace
//!   groups, and inline paths such as `crate::outcome::exit::PASS`) points
//!   down the module order below, never up or sideways;
//! - no import circle between files (an import through a re-export counts
//!   as an import of the file that defines the item; a `pub use` line
//!   itself is no import);
//! - no file over 600 lines (unit tests included) and no function over 100.
//!
//! The order, written here as ARCHITECTURE.md has it (a module may import
//! anything in a lower tier; leaves import no other module):
//!
//! ```text
//! cli -> run -> {engine, report, server} -> metrics -> scenario -> plan
//!     -> {protocol, auth, names, units, outcome, stdout_guard, heap}
//! ```
//!
//! with two narrower rules: `server` shares only `protocol`, `auth` and
//! `units` with the client side, and nothing imports `cli`. `plan` sits
//! below `scenario` (the scenario reads its tables into plans) and is a
//! leaf; `names` (the metric vocabulary, shared by the scenario validator
//! and the recorders) is a leaf, like `units` and `outcome`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Tier of each top-level module: higher may import lower, never equal or higher.
const TIERS: &[(&str, u32)] = &[
    ("cli", 6),
    ("run", 5),
    ("engine", 4),
    ("report", 4),
    ("server", 4),
    ("metrics", 3),
    ("scenario", 2),
    ("plan", 1),
    ("protocol", 0),
    ("auth", 0),
    ("names", 0),
    ("units", 0),
    ("outcome", 0),
    ("stdout_guard", 0),
    ("heap", 0),
];

/// Edges inside the lowest tier that the order allows (protocol speaks about
/// tokens: its auth-failure and presentation rules use `auth`).
const LEAF_EDGES: &[(&str, &str)] = &[
    ("protocol", "auth"),
    ("protocol", "units"),
    ("auth", "units"),
];

/// What `server` may import besides itself.
const SERVER_MAY_IMPORT: &[&str] = &["protocol", "auth", "units"];

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 100;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/engine/steps.rs` -> [engine, steps];
/// `src/engine/mod.rs` -> [engine]; `src/lib.rs` -> [].
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The source with comments and string/char literals blanked out, so a path
/// written in a doc comment or a message is not taken for an import.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && !prev_is_ident(b, i)
        {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                if b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + close.len();
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == b'\'' {
            // A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a).
            let rest = &text[i + 1..];
            // `close`: the index in `rest` of the closing quote.
            let close = if rest.starts_with('\\') {
                rest.get(2..).and_then(|r| r.find('\'')).map(|k| k + 2)
            } else {
                let mut it = rest.char_indices();
                match (it.next(), it.next()) {
                    (Some(_), Some((k, '\''))) => Some(k),
                    _ => None,
                }
            };
            match close {
                Some(k) => {
                    out.push_str("' '");
                    i += 1 + k + 1;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn prev_is_ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// The identifier at the start of `s` (empty when none).
fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Splits `a::b::{c, d::{e, f}}` into the full paths it names.
fn expand(path: &str) -> Vec<Vec<String>> {
    let path = path.trim();
    if let Some(open) = path.find('{') {
        let prefix: Vec<String> = path[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let close = path.rfind('}').unwrap_or(path.len());
        let inner = &path[open + 1..close];
        let mut out = Vec::new();
        let (mut depth, mut start) = (0, 0);
        let bytes = inner.as_bytes();
        for (k, &ch) in bytes.iter().enumerate() {
            match ch {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' if depth == 0 => {
                    push_part(&prefix, &inner[start..k], &mut out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        push_part(&prefix, &inner[start..], &mut out);
        out
    } else {
        let path = path.split(" as ").next().unwrap_or(path);
        vec![path
            .split("::")
            .map(|s| ident(s.trim()).to_string())
            .filter(|s| !s.is_empty())
            .collect()]
    }
}

fn push_part(prefix: &[String], part: &str, out: &mut Vec<Vec<String>>) {
    let part = part.trim();
    if part.is_empty() {
        return;
    }
    for tail in expand(part) {
        let mut p = prefix.to_vec();
        p.extend(tail.into_iter().filter(|s| s != "self"));
        out.push(p);
    }
}

/// Every module path a file refers to, resolved to an absolute path from the
/// crate root (`super::` and `self::` resolved against the file's module).
fn referenced_paths(file: &Path, code: &str) -> Vec<Vec<String>> {
    let here = module_of(file);
    let inline = inline_modules(code);
    let mut paths: Vec<(usize, Vec<String>)> = Vec::new();
    // `use` items, with their brace groups.
    let mut from = 0;
    while let Some(found) = code[from..].find("use ") {
        let k = from + found;
        from = k + 4;
        if k > 0 && prev_is_ident(code.as_bytes(), k) {
            continue;
        }
        if let Some(end) = code[from..].find(';') {
            for p in expand(code[from..from + end].trim()) {
                paths.push((k, p));
            }
        }
    }
    // Inline paths: crate::..., super::..., self::... (each taken whole, from
    // its first segment: the `super::` inside `super::super::` is no path; one
    // that ends before a brace group or glob is a use line's, read above).
    let bytes = code.as_bytes();
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(root) {
            let k = from + found;
            from = k + root.len();
            let ok = k == 0 || !prev_is_ident(bytes, k) && bytes[k - 1] != b':';
            let tail = &code[k..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if ok && !tail[..end].ends_with("::") {
                let p = tail[..end]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                paths.push((k, p));
            }
        }
    }
    paths
        .into_iter()
        .filter_map(|(k, p)| {
            // Inside `mod tests { ... }`, `super` is the file's own module.
            let mut at: Vec<String> = here.clone();
            at.extend(
                inline
                    .iter()
                    .filter(|(_, r)| r.contains(&k))
                    .map(|(n, _)| n.clone()),
            );
            resolve(&at, at.len() > here.len(), file, &p)
        })
        .collect()
}

/// Inline modules (`mod tests { ... }`) with the byte range of their bodies.
fn inline_modules(code: &str) -> Vec<(String, std::ops::Range<usize>)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("mod ") {
        let k = from + found;
        from = k + 4;
        if k > 0 && prev_is_ident(bytes, k) {
            continue;
        }
        let name = ident(&code[from..]);
        let after = code[from + name.len()..].trim_start();
        if name.is_empty() || !after.starts_with('{') {
            continue;
        }
        let open = from + name.len() + (code[from + name.len()..].len() - after.len());
        let mut depth = 0;
        for (i, &c) in bytes.iter().enumerate().skip(open) {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push((name.to_string(), open..i));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// An absolute module path for a path written in the module `here`, or `None`
/// when it names no module of this crate (std, a dependency, a local item).
fn resolve(here: &[String], in_inline: bool, file: &Path, p: &[String]) -> Option<Vec<String>> {
    let first = p.first()?;
    let is_mod_file = !in_inline
        && file
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
    match first.as_str() {
        "crate" => Some(p[1..].to_vec()),
        "super" | "self" => {
            // In `a/b.rs` (module a::b), `super` is `a`; in `a/mod.rs` (module a), `super` is the root.
            let mut base: Vec<String> = here.to_vec();
            let mut k = 0;
            while p.get(k).is_some_and(|s| s == "super" || s == "self") {
                if p[k] == "super" {
                    base.pop();
                }
                k += 1;
            }
            base.extend(p[k..].iter().cloned());
            Some(base)
        }
        _ if is_mod_file => {
            // `child::x` in a mod.rs names a child module when one exists.
            let mut base: Vec<String> = here.to_vec();
            base.push(first.clone());
            module_file(&base).map(|_| {
                base.extend(p[1..].iter().cloned());
                base
            })
        }
        _ => None,
    }
}

/// The file of a module path, when it is a module of this crate.
fn module_file(m: &[String]) -> Option<PathBuf> {
    if m.is_empty() {
        return Some(src().join("lib.rs"));
    }
    let mut p = src();
    for s in &m[..m.len() - 1] {
        p.push(s);
    }
    let last = m.last().unwrap();
    let a = p.join(format!("{last}.rs"));
    let b = p.join(last).join("mod.rs");
    if a.is_file() {
        Some(a)
    } else if b.is_file() {
        Some(b)
    } else {
        None
    }
}

/// The file that defines what an absolute path names. A name that a module
/// only re-exports (`pub use child::Item;`, `pub use model::*;`) is followed
/// to the file that defines it: importing through a re-export depends on the
/// defining file, not on the one that passes the name on.
fn target_file(t: &Tree, path: &[String]) -> Option<PathBuf> {
    let mut path = path.to_vec();
    for _ in 0..8 {
        let n = (1..=path.len())
            .rev()
            .find(|&n| module_file(&path[..n]).is_some())?;
        let file = module_file(&path[..n])?;
        let Some(name) = path.get(n) else {
            return Some(file);
        };
        let code = t.code.get(&file)?;
        let via = reexports(&file, code)
            .into_iter()
            .find_map(|(exported, target)| {
                if exported == *name {
                    Some(target)
                } else if exported == "*"
                    && module_file(&target).is_some_and(|g| defines(t, &g, name))
                {
                    let mut full = target;
                    full.push(name.clone());
                    Some(full)
                } else {
                    None
                }
            });
        match via {
            Some(target) => {
                let mut next = target;
                next.extend(path[n + 1..].iter().cloned());
                path = next;
            }
            None => return Some(file),
        }
    }
    None
}

/// The names a file re-exports (`pub use`), each with the absolute path it
/// stands for; a glob re-export is named `*` with its module's path.
fn reexports(file: &Path, code: &str) -> Vec<(String, Vec<String>)> {
    let here = module_of(file);
    let mut out = Vec::new();
    for prefix in ["pub use ", "pub(crate) use "] {
        let mut from = 0;
        while let Some(k) = code[from..].find(prefix) {
            let start = from + k + prefix.len();
            from = start;
            let Some(end) = code[start..].find(';') else {
                break;
            };
            let item = code[start..start + end].replace("::*", "::__glob");
            for p in expand(&item) {
                let glob = p.last().is_some_and(|l| l == "__glob");
                let p: Vec<String> = p.into_iter().filter(|s| s != "__glob").collect();
                let Some(abs) = resolve(&here, false, file, &p) else {
                    continue;
                };
                let name = if glob {
                    "*".to_string()
                } else {
                    abs.last().cloned().unwrap_or_default()
                };
                out.push((name, abs));
            }
        }
    }
    out
}

/// Whether a file defines an item called `name`.
fn defines(t: &Tree, file: &Path, name: &str) -> bool {
    let Some(code) = t.code.get(file) else {
        return false;
    };
    [
        "struct",
        "enum",
        "fn",
        "type",
        "const",
        "static",
        "trait",
        "mod",
        "union",
        "macro_rules!",
    ]
    .iter()
    .any(|kw| {
        let pat = format!("{kw} {name}");
        code.match_indices(&pat).any(|(i, _)| {
            let after = code[i + pat.len()..].chars().next();
            let before_ok = i == 0 || !prev_is_ident(code.as_bytes(), i);
            before_ok && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

struct Tree {
    files: Vec<PathBuf>,
    code: BTreeMap<PathBuf, String>,
}

fn tree() -> Tree {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let code = files
        .iter()
        .map(|f| (f.clone(), code_only(&std::fs::read_to_string(f).unwrap())))
        .collect();
    Tree { files, code }
}

fn tier(m: &str) -> Option<u32> {
    TIERS.iter().find(|(n, _)| *n == m).map(|(_, t)| *t)
}

fn rel(p: &Path) -> String {
    p.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .display()
        .to_string()
}

/// Every arrow between top-level modules that the order forbids.
fn forbidden_module_arrows(t: &Tree) -> Vec<String> {
    let mut bad = BTreeSet::new();
    for f in &t.files {
        let here = module_of(f);
        let Some(from) = here.first().cloned() else {
            continue; // lib.rs, main.rs: the root declares every module.
        };
        for p in referenced_paths(f, &t.code[f]) {
            let Some(to) = p.first() else { continue };
            if *to == from || module_file(std::slice::from_ref(to)).is_none() {
                continue;
            }
            let why = match (tier(&from), tier(to)) {
                (None, _) => Some(format!("`{from}` is not in the module order")),
                (_, None) => Some(format!("`{to}` is not in the module order")),
                _ if to == "cli" => Some("nothing imports cli".into()),
                _ if from == "server" && !SERVER_MAY_IMPORT.contains(&to.as_str()) => {
                    Some("server shares only protocol, auth and units".into())
                }
                (Some(0), Some(0)) if LEAF_EDGES.contains(&(from.as_str(), to.as_str())) => None,
                (Some(a), Some(b)) if a > b => None,
                (Some(_), Some(_)) => Some("up or sideways in the order".into()),
            };
            if let Some(why) = why {
                bad.insert(format!("{}: {from} -> {} ({why})", rel(f), p.join("::")));
            }
        }
    }
    bad.into_iter().collect()
}

/// The code without its `pub use` items: a re-export passes a name on and
/// uses nothing itself (importers are followed to the defining file).
fn without_reexports(code: &str) -> String {
    let mut out = code.to_string();
    for prefix in ["pub use ", "pub(crate) use "] {
        while let Some(k) = out.find(prefix) {
            let end = out[k..].find(';').map_or(out.len(), |e| k + e + 1);
            out.replace_range(k..end, &" ".repeat(end - k));
        }
    }
    out
}

/// Import circles between files: each is listed once, as the files in it.
fn file_cycles(t: &Tree) -> Vec<String> {
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    // One path that makes each edge, to say why files are in a circle.
    let mut because: BTreeMap<(PathBuf, PathBuf), String> = BTreeMap::new();
    for f in &t.files {
        let set = edges.entry(f.clone()).or_default();
        for p in referenced_paths(f, &without_reexports(&t.code[f])) {
            if let Some(to) = target_file(t, &p) {
                // A module's own file and lib.rs (which only declares modules) are no edge.
                if to != *f && !to.ends_with("lib.rs") {
                    because
                        .entry((f.clone(), to.clone()))
                        .or_insert_with(|| p.join("::"));
                    set.insert(to);
                }
            }
        }
    }
    // Strongly connected components (Tarjan), reported when larger than one file.
    let nodes: Vec<PathBuf> = edges.keys().cloned().collect();
    let index_of: BTreeMap<&PathBuf, usize> =
        nodes.iter().enumerate().map(|(i, n)| (n, i)).collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            edges[n]
                .iter()
                .filter_map(|m| index_of.get(m).copied())
                .collect()
        })
        .collect();
    let sccs = tarjan(&adj);
    sccs.into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| {
            let mut names: Vec<String> = c.iter().map(|&i| rel(&nodes[i])).collect();
            names.sort();
            let inside: Vec<String> = because
                .iter()
                .filter(|((a, b), _)| {
                    c.iter().any(|&i| nodes[i] == *a) && c.iter().any(|&i| nodes[i] == *b)
                })
                .map(|((a, b), why)| format!("    {} -> {} ({why})", rel(a), rel(b)))
                .collect();
            format!("{}\n{}", names.join(" <-> "), inside.join("\n"))
        })
        .collect()
}

fn tarjan(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct St<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut St<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for k in 0..s.adj[v].len() {
            let w = s.adj[v][k];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut c = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on[w] = false;
                c.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(c);
        }
    }
    let n = adj.len();
    let mut s = St {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn every_crate_path_points_down_the_module_order() {
    let bad = forbidden_module_arrows(&tree());
    assert!(
        bad.is_empty(),
        "{} arrows against ARCHITECTURE.md:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn no_import_circle_between_files() {
    let cycles = file_cycles(&tree());
    assert!(
        cycles.is_empty(),
        "{} import circles:\n{}",
        cycles.len(),
        cycles.join("\n")
    );
}

#[test]
fn no_file_over_600_lines() {
    let t = tree();
    let big: Vec<String> = t
        .files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_FILE_LINES).then(|| format!("{}: {n} lines", rel(f)))
        })
        .collect();
    assert!(
        big.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        big.join("\n")
    );
}

#[test]
fn no_function_over_100_lines() {
    let t = tree();
    let mut long = Vec::new();
    for f in &t.files {
        let code = &t.code[f];
        let lines: Vec<&str> = code.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            if let Some(name) = fn_name(lines[i]) {
                let (start, end) = fn_span(&lines, i);
                let n = end - start + 1;
                if n > MAX_FN_LINES {
                    long.push(format!("{}:{}: fn {name}: {n} lines", rel(f), start + 1));
                }
            }
            i += 1;
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The name of a function whose definition starts on this line.
fn fn_name(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let mut rest = t;
    for kw in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"\" ",
    ] {
        rest = rest.strip_prefix(kw).unwrap_or(rest);
        rest = rest.strip_prefix(kw).unwrap_or(rest);
    }
    let name = ident(rest.strip_prefix("fn ")?);
    (!name.is_empty() && !t.trim_end().ends_with(';')).then_some(name)
}

/// The first and last line of the function starting at `i` (its braces balanced).
fn fn_span(lines: &[&str], i: usize) -> (usize, usize) {
    let mut depth = 0i32;
    let mut opened = false;
    for (k, l) in lines.iter().enumerate().skip(i) {
        for c in l.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened && depth == 0 => return (i, k),
                _ => {}
            }
        }
        if opened && depth == 0 {
            return (i, k);
        }
    }
    (i, lines.len() - 1)
}

#[test]
fn the_path_reader_finds_what_it_must() {
    // Brace groups, renames, super chains and inline paths.
    let f = src().join("metrics").join("threshold.rs");
    let code = code_only(
        "use crate::{scenario::thresholds::{Op, Stat}, units as u};\n\
         use super::Recorder;\n\
         // use crate::cli; (a comment)\n\
         let s = \"crate::report::x\";\n\
         fn f() { crate::outcome::exit::PASS; super::super::names::TTFE; }\n",
    );
    let paths: BTreeSet<String> = referenced_paths(&f, &code)
        .iter()
        .map(|p| p.join("::"))
        .collect();
    for want in [
        "scenario::thresholds::Op",
        "scenario::thresholds::Stat",
        "units",
        "metrics::Recorder",
        "outcome::exit::PASS",
        "names::TTFE",
    ] {
        assert!(paths.contains(want), "missing {want} in {paths:?}");
    }
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("cli") || p.starts_with("report")),
        "{paths:?}"
    );
    // A forbidden arrow is found: metrics -> report.
    let t = Tree {
        files: vec![f.clone()],
        code: BTreeMap::from([(f, code_only("use crate::report::ReportData;"))]),
    };
    assert_eq!(forbidden_module_arrows(&t).len(), 1);
}
