//! `chatload trend`: the key figures of every run recorded with `run --history`.
//! Glue: reading and rendering the history is `report/history.rs`.

use std::path::PathBuf;

use clap::Args;

use super::{emit, exit};

#[derive(Args, Debug)]
pub struct TrendArgs {
    /// A history file written by `run --history`.
    pub history: PathBuf,
    /// Only runs of this scenario.
    #[arg(long)]
    pub scenario: Option<String>,
    /// md or html.
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn main(a: TrendArgs) -> u8 {
    let rows = match crate::report::history::load(&a.history, a.scenario.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let text = match a.format.as_str() {
        "md" => crate::report::history::render_md(&rows),
        "html" => crate::report::history::render_html(&rows),
        other => {
            say_err!("error: unknown format `{other}` (md or html)");
            return exit::USAGE;
        }
    };
    emit(text.as_bytes(), a.out.as_deref())
}
