//! Reading the files a scenario names (tokens, data rows) without a hole: a
//! regular file (after symlinks) up to a size limit by default; a FIFO or
//! `/dev/stdin` (a normal way to pass secrets) only when the scenario says
//! so, still capped, and given up on after a read timeout; a directory or a
//! device refused with what it is. Everything is read while the scenario
//! loads, before any socket opens.
//!
//! Imports: std only.

use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

/// How long a stream (a FIFO, `/dev/stdin`) may take to deliver its content.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// The text of the input file `path` (`what` names it in messages).
pub fn read_input(
    path: &Path,
    what: &str,
    max_bytes: u64,
    stream_ok: bool,
) -> Result<String, String> {
    let shown = path.display();
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read the {what} {shown}: {e}"))?;
    let t = meta.file_type();
    if t.is_file() {
        if meta.len() > max_bytes {
            return Err(format!(
                "the {what} {shown} has {} bytes, over the limit of {max_bytes} ([limits] max_input_bytes)",
                meta.len()
            ));
        }
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the {what} {shown}: {e}"))?;
        return read_capped(file, what, &shown.to_string(), max_bytes);
    }
    let kind = super::file_kind(&meta);
    let streamable = {
        use std::os::unix::fs::FileTypeExt as _;
        t.is_fifo() || t.is_char_device() && is_stdin(path)
    };
    if !streamable {
        return Err(format!("the {what} {shown} is {kind}, not a regular file"));
    }
    if !stream_ok {
        return Err(format!(
            "the {what} {shown} is {kind}: reading a stream must be asked for (set the `_stream = true` key beside it)"
        ));
    }
    read_stream(path, what, max_bytes)
}

/// Whether `path` names this process's standard input.
fn is_stdin(path: &Path) -> bool {
    let stdin = std::fs::canonicalize("/dev/stdin").ok();
    path == Path::new("/dev/stdin") || stdin.is_some() && std::fs::canonicalize(path).ok() == stdin
}

/// Reads at most `max_bytes`; more is an error, never a larger buffer.
fn read_capped(
    r: impl std::io::Read,
    what: &str,
    shown: &str,
    max_bytes: u64,
) -> Result<String, String> {
    let mut buf = Vec::new();
    r.take(max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the {what} {shown}: {e}"))?;
    if buf.len() as u64 > max_bytes {
        return Err(format!(
            "the {what} {shown} holds more than the limit of {max_bytes} bytes ([limits] max_input_bytes)"
        ));
    }
    String::from_utf8(buf).map_err(|_| format!("the {what} {shown} is not UTF-8 text"))
}

/// A stream read on a thread of its own, given up on after [`STREAM_TIMEOUT`]
/// (a FIFO nobody writes would otherwise block the load forever).
fn read_stream(path: &Path, what: &str, max_bytes: u64) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (p, w, shown) = (
        path.to_path_buf(),
        what.to_string(),
        path.display().to_string(),
    );
    std::thread::spawn(move || {
        let r = std::fs::File::open(&p)
            .map_err(|e| format!("cannot read the {w} {shown}: {e}"))
            .and_then(|f| read_capped(f, &w, &shown, max_bytes));
        let _ = tx.send(r);
    });
    rx.recv_timeout(STREAM_TIMEOUT).unwrap_or_else(|_| {
        Err(format!(
            "the {what} {} delivered nothing complete within {}s",
            path.display(),
            STREAM_TIMEOUT.as_secs()
        ))
    })
}
