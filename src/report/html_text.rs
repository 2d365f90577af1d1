//! Text for the HTML pages: Markdown-style `code` spans turned into
//! `<code>`, everything else escaped (shared by `html.rs` and
//! `html_capacity.rs`). A leaf of `report`.

use html_escape::encode_text as esc;

/// Escapes text written for Markdown, turning its `code` spans into
/// `<code>` (verdict summaries are shared by every format).
pub(super) fn code_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str("<code>");
            out.push_str(&esc(part));
            out.push_str("</code>");
        } else {
            out.push_str(&esc(part));
        }
    }
    // An odd number of backticks: the last one had no partner; keep it.
    if text.matches('`').count() % 2 == 1 {
        if let Some(at) = out.rfind("<code>") {
            out.replace_range(at..at + "<code>".len(), "`");
            if out.ends_with("</code>") {
                out.truncate(out.len() - "</code>".len());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_become_code_elements_and_the_rest_is_escaped() {
        assert_eq!(
            code_spans("broke `ttc p95 < 2s` (measured <3s>)"),
            "broke <code>ttc p95 &lt; 2s</code> (measured &lt;3s&gt;)"
        );
        assert_eq!(code_spans("no spans"), "no spans");
        assert_eq!(code_spans("one ` alone"), "one ` alone");
    }
}
