//! Sequence expressions over event names, compiled once into an automaton
//! (Thompson NFA) and fed one event at a time.
//!
//! Grammar:
//!
//! ```text
//! expr    := seq ('|' seq)*
//! seq     := postfix+
//! postfix := atom ('*' | '+' | '?')*
//! atom    := NAME | '(' expr ')'
//! ```
//!
//! e.g. `agent_started agent_thinking* (tool_executing tool_completed)* agent_completed`.
//! Only names that appear in the expression are fed to the automaton; other
//! events are judged by the caller (allowed extras or unexpected).
//! Imports nothing from the crate.

use std::collections::BTreeSet;
use std::fmt;

/// A compiled sequence expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    source: String,
    names: Vec<String>,
    /// Per state: transitions (symbol index, or None for epsilon) to a state.
    states: Vec<Vec<(Option<usize>, usize)>>,
    start: usize,
    accept: usize,
}

/// A refused expression, with the character position of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceError {
    pub position: usize,
    pub message: String,
}

impl fmt::Display for SequenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.position + 1)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Open,
    Close,
    Bar,
    Star,
    Plus,
    Quest,
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, SequenceError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => Tok::Open,
            ')' => Tok::Close,
            '|' => Tok::Bar,
            '*' => Tok::Star,
            '+' => Tok::Plus,
            '?' => Tok::Quest,
            c if c.is_alphanumeric() || "_.:-".contains(c) => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_.:-".contains(chars[i])) {
                    i += 1;
                }
                out.push((start, Tok::Name(chars[start..i].iter().collect())));
                continue;
            }
            other => {
                return Err(SequenceError {
                    position: i,
                    message: format!("unexpected character `{other}`"),
                });
            }
        };
        out.push((i, tok));
        i += 1;
    }
    Ok(out)
}

#[derive(Clone, Copy)]
struct Frag {
    start: usize,
    end: usize,
}

struct Builder {
    names: Vec<String>,
    states: Vec<Vec<(Option<usize>, usize)>>,
    toks: Vec<(usize, Tok)>,
    pos: usize,
    len: usize,
}

impl Builder {
    fn state(&mut self) -> usize {
        self.states.push(Vec::new());
        self.states.len() - 1
    }
    fn eps(&mut self, a: usize, b: usize) {
        self.states[a].push((None, b));
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.len, |(p, _)| *p)
    }
    fn err(&self, message: impl Into<String>) -> SequenceError {
        SequenceError {
            position: self.at(),
            message: message.into(),
        }
    }

    fn expr(&mut self) -> Result<Frag, SequenceError> {
        let mut alts = vec![self.seq()?];
        while self.peek() == Some(&Tok::Bar) {
            self.pos += 1;
            alts.push(self.seq()?);
        }
        if alts.len() == 1 {
            return Ok(alts[0]);
        }
        let (s, e) = (self.state(), self.state());
        for f in alts {
            self.eps(s, f.start);
            self.eps(f.end, e);
        }
        Ok(Frag { start: s, end: e })
    }

    fn seq(&mut self) -> Result<Frag, SequenceError> {
        let mut frag: Option<Frag> = None;
        while matches!(self.peek(), Some(Tok::Name(_)) | Some(Tok::Open)) {
            let next = self.postfix()?;
            frag = Some(match frag {
                None => next,
                Some(f) => {
                    self.eps(f.end, next.start);
                    Frag {
                        start: f.start,
                        end: next.end,
                    }
                }
            });
        }
        frag.ok_or_else(|| self.err("expected an event name or `(`"))
    }

    fn postfix(&mut self) -> Result<Frag, SequenceError> {
        let mut f = self.atom()?;
        loop {
            match self.peek() {
                Some(Tok::Star) => {
                    let (s, e) = (self.state(), self.state());
                    self.eps(s, f.start);
                    self.eps(s, e);
                    self.eps(f.end, f.start);
                    self.eps(f.end, e);
                    f = Frag { start: s, end: e };
                }
                Some(Tok::Plus) => {
                    let e = self.state();
                    self.eps(f.end, f.start);
                    self.eps(f.end, e);
                    f = Frag {
                        start: f.start,
                        end: e,
                    };
                }
                Some(Tok::Quest) => {
                    let (s, e) = (self.state(), self.state());
                    self.eps(s, f.start);
                    self.eps(s, e);
                    self.eps(f.end, e);
                    f = Frag { start: s, end: e };
                }
                Some(Tok::Name(_) | Tok::Open | Tok::Close | Tok::Bar) | None => return Ok(f),
            }
            self.pos += 1;
        }
    }

    fn atom(&mut self) -> Result<Frag, SequenceError> {
        match self.peek().cloned() {
            Some(Tok::Name(n)) => {
                self.pos += 1;
                let sym = match self.names.iter().position(|x| *x == n) {
                    Some(i) => i,
                    None => {
                        self.names.push(n);
                        self.names.len() - 1
                    }
                };
                let (s, e) = (self.state(), self.state());
                self.states[s].push((Some(sym), e));
                Ok(Frag { start: s, end: e })
            }
            Some(Tok::Open) => {
                self.pos += 1;
                let f = self.expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(self.err("expected `)`"));
                }
                self.pos += 1;
                Ok(f)
            }
            Some(Tok::Close | Tok::Bar | Tok::Star | Tok::Plus | Tok::Quest) | None => {
                Err(self.err("expected an event name or `(`"))
            }
        }
    }
}

impl Sequence {
    /// Compiles an expression.
    pub fn compile(source: &str) -> Result<Sequence, SequenceError> {
        let toks = lex(source)?;
        let mut b = Builder {
            names: Vec::new(),
            states: Vec::new(),
            toks,
            pos: 0,
            len: source.chars().count(),
        };
        let f = b.expr()?;
        if b.pos != b.toks.len() {
            return Err(
                b.err("unexpected token (an operator without an operand, or an unmatched `)`)")
            );
        }
        Ok(Sequence {
            source: source.to_string(),
            names: b.names,
            states: b.states,
            start: f.start,
            accept: f.end,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the name appears in the expression.
    pub fn mentions(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn closure(&self, set: &mut BTreeSet<usize>) {
        let mut stack: Vec<usize> = set.iter().copied().collect();
        while let Some(s) = stack.pop() {
            for &(sym, t) in &self.states[s] {
                if sym.is_none() && set.insert(t) {
                    stack.push(t);
                }
            }
        }
    }

    /// A matcher at the start of the expression.
    pub fn matcher(&self) -> Matcher<'_> {
        let mut current = BTreeSet::from([self.start]);
        self.closure(&mut current);
        Matcher {
            seq: self,
            current,
            position: 0,
        }
    }
}

/// The result of feeding one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The event fits.
    Accepted,
    /// The name is not in the expression (the caller decides).
    NotMentioned,
    /// The event does not fit here; `expected` lists what would have.
    Violation {
        position: usize,
        expected: Vec<String>,
    },
}

/// Follows one stream of events through a [`Sequence`].
#[derive(Debug, Clone)]
pub struct Matcher<'a> {
    seq: &'a Sequence,
    current: BTreeSet<usize>,
    position: usize,
}

impl Matcher<'_> {
    /// Names that would be accepted next.
    pub fn expected(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .current
            .iter()
            .flat_map(|&s| {
                self.seq.states[s]
                    .iter()
                    .filter_map(|(sym, _)| sym.map(|i| self.seq.names[i].clone()))
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.is_complete() {
            v.push("(end)".into());
        }
        v
    }

    /// Feeds one event. On a violation the state is kept, so later events are
    /// judged as if the offending one had not arrived.
    pub fn feed(&mut self, name: &str) -> Step {
        let Some(sym) = self.seq.names.iter().position(|n| n == name) else {
            return Step::NotMentioned;
        };
        let position = self.position;
        self.position += 1;
        let mut next = BTreeSet::new();
        for &s in &self.current {
            for &(t_sym, t) in &self.seq.states[s] {
                if t_sym == Some(sym) {
                    next.insert(t);
                }
            }
        }
        if next.is_empty() {
            return Step::Violation {
                position,
                expected: self.expected(),
            };
        }
        self.seq.closure(&mut next);
        self.current = next;
        Step::Accepted
    }

    /// Whether the events so far form a whole match.
    pub fn is_complete(&self) -> bool {
        self.current.contains(&self.seq.accept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETRA: &str =
        "agent_started agent_thinking* (tool_executing tool_completed)* agent_completed";

    fn run(expr: &str, events: &str) -> Result<bool, (usize, Vec<String>)> {
        let seq = Sequence::compile(expr).unwrap();
        let mut m = seq.matcher();
        for e in events.split_whitespace() {
            if let Step::Violation { position, expected } = m.feed(e) {
                return Err((position, expected));
            }
        }
        Ok(m.is_complete())
    }

    #[test]
    fn table_of_streams() {
        let cases: &[(&str, &str, Result<bool, usize>)] = &[
            (NETRA, "agent_started agent_completed", Ok(true)),
            (NETRA, "agent_started agent_thinking agent_thinking tool_executing tool_completed agent_completed", Ok(true)),
            (NETRA, "agent_started tool_executing tool_completed tool_executing tool_completed agent_completed", Ok(true)),
            (NETRA, "agent_started agent_thinking", Ok(false)),
            (NETRA, "agent_thinking agent_started", Err(0)),
            (NETRA, "agent_started tool_completed", Err(1)),
            (NETRA, "agent_started tool_executing agent_completed", Err(2)),
            (NETRA, "agent_started tool_executing tool_completed agent_thinking", Err(3)),
            (NETRA, "agent_started agent_completed agent_completed", Err(2)),
            (NETRA, "agent_started other agent_completed", Ok(true)),
            ("a (b | c)+ d?", "a b c b", Ok(true)),
            ("a (b | c)+ d?", "a b d", Ok(true)),
            ("a (b | c)+ d?", "a d", Err(1)),
            ("a? b", "b", Ok(true)),
            ("(a b)* | c", "c", Ok(true)),
            ("(a b)* | c", "a b c", Err(2)),
        ];
        for (expr, events, want) in cases {
            let got = run(expr, events).map_err(|(p, _)| p);
            assert_eq!(&got, want, "{expr} <- {events}");
        }
    }

    #[test]
    fn violations_say_what_was_expected() {
        let (_, expected) = run(NETRA, "agent_started tool_executing agent_completed").unwrap_err();
        assert_eq!(expected, vec!["tool_completed"]);
        let (_, expected) = run(NETRA, "agent_thinking").unwrap_err();
        assert_eq!(expected, vec!["agent_started"]);
    }

    #[test]
    fn bad_expressions_are_refused_with_a_position() {
        for (expr, pos) in [
            ("", 0),
            ("a (b", 4),
            ("a )", 2),
            ("* a", 0),
            ("a | | b", 4),
            ("a $", 2),
            ("()", 1),
        ] {
            let e = Sequence::compile(expr).unwrap_err();
            assert_eq!(e.position, pos, "{expr}: {e}");
        }
    }
}
