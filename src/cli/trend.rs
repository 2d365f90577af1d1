//! `chatload trend`: the key figures of every run recorded with `run --history`.
//! Glue: reading the history is `report/history.rs`, its pages
//! `report/history_view.rs`.

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
    /// Only runs carrying this tag (`key=value`; repeat for several, all must match).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = crate::report::history::parse_tag)]
    pub tags: Vec<(String, String)>,
    /// md or html.
    #[arg(long, default_value = "md")]
    pub format: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn main(a: TrendArgs) -> u8 {
    let rows = match crate::report::history::load(&a.history, a.scenario.as_deref(), &a.tags) {
        Ok(r) => r,
        Err(e) => {
            say_err!("error: {e}");
            return exit::USAGE;
        }
    };
    let text = match a.format.as_str() {
        "md" => crate::report::history_view::render_md(&rows),
        "html" => crate::report::history_view::render_html(&rows),
        other => {
            say_err!("error: unknown format `{other}` (md or html)");
            return exit::USAGE;
        }
    };
    emit(text.as_bytes(), a.out.as_deref())
}
