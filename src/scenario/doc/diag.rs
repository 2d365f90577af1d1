//! Diagnostics: every problem found in a scenario file, with its line,
//! column and key path ([`Diagnostic`], [`Diagnostics`]), the file's text
//! for turning byte offsets into positions ([`Source`]) and the shared sink
//! readers record into while the document is walked ([`Ctx`]). Imports only
//! std.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::ops::Range;
use std::rc::Rc;

/// One problem in a scenario file, located by line, column and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// Dotted key path, e.g. `workload.ramp[1].over`.
    pub path: String,
    pub message: String,
}

/// How many problems a file's diagnostics keep and show: past this a broken
/// or hostile file (millions of bad keys) is counted, not listed, so
/// `validate` prints a screenful and holds little memory.
pub const MAX_SHOWN: usize = 200;

/// Every problem found in one file.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub file: String,
    pub items: Vec<Diagnostic>,
    /// Problems found beyond [`MAX_SHOWN`]: counted, not kept.
    pub more: usize,
}

impl Diagnostics {
    /// One problem at the top of the file (a file that cannot be read or parsed).
    pub fn one(file: String, line: usize, column: usize, message: String) -> Diagnostics {
        Diagnostics {
            file,
            items: vec![Diagnostic {
                line,
                column,
                path: String::new(),
                message,
            }],
            more: 0,
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.items.len() + self.more;
        writeln!(
            f,
            "{}: {} problem{} found",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for d in &self.items {
            if d.path.is_empty() {
                writeln!(f, "  {}:{}:{}: {}", self.file, d.line, d.column, d.message)?;
            } else {
                writeln!(
                    f,
                    "  {}:{}:{}: `{}`: {}",
                    self.file, d.line, d.column, d.path, d.message
                )?;
            }
        }
        if self.more > 0 {
            writeln!(
                f,
                "  ... and {} more problem{} (the first {MAX_SHOWN} found are listed)",
                self.more,
                if self.more == 1 { "" } else { "s" }
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// The text of the file, for turning byte offsets into line and column.
pub struct Source {
    text: String,
    line_starts: Vec<usize>,
}

impl Source {
    pub fn new(text: String) -> Self {
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        Source { text, line_starts }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based (line, column) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let column = self.text[start..offset].chars().count() + 1;
        (line + 1, column)
    }
}

/// Shared sink for diagnostics while a document is walked.
#[derive(Clone)]
pub struct Ctx {
    src: Rc<Source>,
    items: Rc<RefCell<Vec<Diagnostic>>>,
    /// Problems past [`MAX_SHOWN`].
    more: Rc<Cell<usize>>,
}

impl Ctx {
    pub fn new(src: Rc<Source>) -> Self {
        Ctx {
            src,
            items: Rc::new(RefCell::new(Vec::new())),
            more: Rc::new(Cell::new(0)),
        }
    }

    pub fn error(&self, span: Option<Range<usize>>, path: &str, message: impl Into<String>) {
        if self.items.borrow().len() >= MAX_SHOWN {
            self.more.set(self.more.get() + 1);
            return;
        }
        let (line, column) = self.src.line_col(span.map(|s| s.start).unwrap_or(0));
        self.items.borrow_mut().push(Diagnostic {
            line,
            column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn has_errors(&self) -> bool {
        !self.items.borrow().is_empty()
    }

    /// Problems found beyond the ones kept.
    pub fn more(&self) -> usize {
        self.more.get()
    }

    pub fn take(&self) -> Vec<Diagnostic> {
        let mut v = std::mem::take(&mut *self.items.borrow_mut());
        v.sort_by_key(|d| (d.line, d.column));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let s = Source::new("ab\ncd\n\nxyz".into());
        assert_eq!(s.line_col(0), (1, 1));
        assert_eq!(s.line_col(1), (1, 2));
        assert_eq!(s.line_col(3), (2, 1));
        assert_eq!(s.line_col(6), (3, 1));
        assert_eq!(s.line_col(9), (4, 3));
    }
}
