//! Keeps stdout for chatload's own summary during `chatload run`.
//!
//! goose prints with `println!` ("All N users launched.", its own tables).
//! That text is not chatload's: a CI step that reads the run's stdout must
//! find only chatload's summary there. And `println!` panics when stdout is
//! a pipe whose reader has exited (`chatload run … | head -1`): the run died
//! with exit 101 and wrote no reports.
//!
//! So [`install`] keeps a copy of the real stdout for chatload's own output
//! ([`write_out`], which the `say!` macros use and which ignores a reader
//! gone), points file descriptor 1 at a pipe of this process's own, and a
//! thread copies what arrives there (goose's text) to stderr, where it
//! stays visible in a log. Once a write to stderr fails, the thread discards
//! the rest, and every writer in the process keeps going. [`finish`] puts
//! the real stdout back and forwards what is left; it runs before the
//! process exits.
//!
//! Descriptor 1 is process-wide, so this is tested end to end
//! (`tests/cli.rs`): a binary whose stdout reader exits at once, and a run
//! whose stdout holds no goose line.

#[cfg(unix)]
struct Guard {
    real: std::os::fd::OwnedFd,
    /// The real stdout, for chatload's own output while fd 1 is the pipe.
    out: std::fs::File,
    done: std::sync::mpsc::Receiver<()>,
}

#[cfg(unix)]
static GUARD: std::sync::Mutex<Option<Guard>> = std::sync::Mutex::new(None);

/// Takes fd 1 from goose (see the module header); a no-op when the
/// descriptors cannot be set up (the run then behaves as before).
pub fn install() {
    #[cfg(unix)]
    {
        let mut guard = GUARD.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = shield().ok();
        }
    }
}

/// Writes chatload's own output to the real stdout (errors ignored by the
/// callers: a reader gone must not stop a run).
pub fn write_out(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        let guard = GUARD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = guard.as_ref() {
            let mut out = &g.out;
            return out.write_all(bytes);
        }
    }
    std::io::stdout().write_all(bytes)
}

#[cfg(unix)]
fn shield() -> std::io::Result<Guard> {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    let _ = std::io::stdout().flush();
    let real = std::io::stdout().as_fd().try_clone_to_owned()?;
    let out = std::fs::File::from(real.try_clone()?);
    let mut sink = std::fs::File::from(std::io::stderr().as_fd().try_clone_to_owned()?);
    let (mut reader, writer) = std::io::pipe()?;
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("chatload-stdout".into())
        .spawn(move || {
            let mut buf = [0u8; 8192];
            let mut open = true;
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if open && !forward(&mut sink, &buf[..n]) {
                            // stderr went away: drop the rest.
                            open = false;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done_tx.send(());
        })?;
    rustix::stdio::dup2_stdout(&writer)?;
    drop(writer);
    Ok(Guard { real, out, done })
}

/// Writes all of `bytes` to `sink`; false once it failed for good. A sink
/// a parent left non-blocking refuses writes for a moment when its reader
/// is slow: that is waited out, not taken for a reader gone.
#[cfg(unix)]
fn forward(sink: &mut std::fs::File, mut bytes: &[u8]) -> bool {
    use std::io::{ErrorKind, Write};
    while !bytes.is_empty() {
        match sink.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return false,
        }
    }
    true
}

/// Puts the real stdout back and forwards what the pipe still holds
/// (waiting at most a second for it). Call before the process exits
/// normally; an immediate exit (a second stop signal) skips it.
pub fn finish() {
    #[cfg(unix)]
    {
        use std::io::Write;
        let Some(g) = GUARD.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let _ = std::io::stdout().flush();
        // Closes the pipe's last write end: the thread reads to its end.
        if rustix::stdio::dup2_stdout(&g.real).is_ok() {
            let _ = g.done.recv_timeout(std::time::Duration::from_secs(1));
        }
    }
}
