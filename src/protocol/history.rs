//! How a platform's REST API pages through a thread's messages and lists
//! threads (`[profile.history]`): the paths, the page size and the query
//! names, offset or cursor paging. Profile data, so a server that caps
//! `limit` at 100 (and answers 422 above) is read with pages of 100.
//! Imports nothing from the crate (the `url` crate encodes a cursor).

/// The history calls of one generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// A thread's messages; `{{thread}}` is the thread.
    pub messages_path: String,
    /// The thread list (`list_threads`).
    pub threads_path: String,
    /// Messages asked per page (and threads per list call).
    pub page_size: usize,
    /// The page-size query parameter.
    pub limit_param: String,
    /// How the next page is asked for.
    pub paging: Paging,
    /// Field of the answer holding the messages.
    pub items_field: String,
    /// Field of the answer holding the total (absent: page until a short page).
    pub total_field: String,
}

/// Offset or cursor paging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    /// `?<param>=<messages read so far>`
    Offset { param: String },
    /// `?<param>=<the previous answer's next_field>` (none on the first page;
    /// an answer without it is the last page).
    Cursor { param: String, next_field: String },
}

impl History {
    /// The platform's REST API (PROTOCOL.md section 6), pages of `page_size`.
    pub fn netra(page_size: usize) -> History {
        History {
            messages_path: "/api/threads/{{thread}}/messages".into(),
            threads_path: "/api/threads".into(),
            page_size,
            limit_param: "limit".into(),
            paging: Paging::Offset {
                param: "offset".into(),
            },
            items_field: "messages".into(),
            total_field: "total".into(),
        }
    }

    /// The URL path and query of one page of `thread`'s messages: the first
    /// page, or the one after `read` messages / after `cursor`.
    pub fn page(&self, thread: &str, read: usize, cursor: Option<&str>) -> String {
        let path = self.messages_path.replace("{{thread}}", thread);
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut q = format!("{path}{sep}{}={}", self.limit_param, self.page_size);
        match (&self.paging, cursor) {
            (Paging::Offset { param }, _) => q.push_str(&format!("&{param}={read}")),
            (Paging::Cursor { param, .. }, Some(c)) => {
                // The server's cursor is opaque: any `&`, `=`, `#`, space or
                // non-ASCII byte in it is percent-encoded.
                let c: String = url::form_urlencoded::byte_serialize(c.as_bytes()).collect();
                q.push_str(&format!("&{param}={c}"))
            }
            (Paging::Cursor { .. }, None) => {}
        }
        q
    }

    /// The thread-list call.
    pub fn threads(&self) -> String {
        let sep = if self.threads_path.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{sep}{}={}",
            self.threads_path,
            self.limit_param,
            self.page_size.min(100)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_by_offset_or_cursor_with_the_profiles_names() {
        let h = History::netra(100);
        assert_eq!(
            h.page("t1", 0, None),
            "/api/threads/t1/messages?limit=100&offset=0"
        );
        assert_eq!(
            h.page("t1", 200, None),
            "/api/threads/t1/messages?limit=100&offset=200"
        );
        assert_eq!(h.threads(), "/api/threads?limit=100");
        let c = History {
            messages_path: "/v2/chats/{{thread}}/items?order=asc".into(),
            limit_param: "page_size".into(),
            paging: Paging::Cursor {
                param: "after".into(),
                next_field: "next".into(),
            },
            ..History::netra(50)
        };
        assert_eq!(
            c.page("x", 0, None),
            "/v2/chats/x/items?order=asc&page_size=50"
        );
        assert_eq!(
            c.page("x", 50, Some("k9")),
            "/v2/chats/x/items?order=asc&page_size=50&after=k9"
        );
        // An opaque cursor is one query value, whatever it holds.
        assert_eq!(
            c.page("x", 50, Some("a&b=c d/é#")),
            "/v2/chats/x/items?order=asc&page_size=50&after=a%26b%3Dc+d%2F%C3%A9%23"
        );
    }
}
