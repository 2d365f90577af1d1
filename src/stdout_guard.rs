//! Keeps a run alive when its stdout reader goes away.
//!
//! goose prints with `println!` ("N users launched.", its own tables), and
//! `println!` panics when stdout is a pipe whose reader has exited
//! (`chatload run … | head -1`, a CI step that stopped reading): the run died
//! with exit 101 and wrote no reports. chatload's own output goes through
//! `say!`, which ignores such errors, but goose's cannot be changed from here.
//!
//! So, when stdout is a pipe or a socket (a terminal or a file cannot lose
//! its reader), [`install`] points file descriptor 1 at a pipe of this
//! process's own, and a thread copies what arrives there to the real stdout.
//! Once a write to the real stdout fails, the thread discards the rest, and
//! every writer in the process keeps going. [`finish`] puts the real stdout
//! back and forwards what is left; it runs before the process exits.
//!
//! Descriptor 1 is process-wide, so this is tested end to end
//! (`tests/cli.rs`), on a binary whose stdout reader exits at once.

#[cfg(unix)]
struct Guard {
    real: std::os::fd::OwnedFd,
    done: std::sync::mpsc::Receiver<()>,
}

#[cfg(unix)]
static GUARD: std::sync::Mutex<Option<Guard>> = std::sync::Mutex::new(None);

/// Shields stdout if it is a pipe or a socket; a no-op otherwise, or when the
/// descriptors cannot be set up (the run then behaves as before).
pub fn install() {
    #[cfg(unix)]
    {
        let mut guard = GUARD.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = shield().ok().flatten();
        }
    }
}

#[cfg(unix)]
fn shield() -> std::io::Result<Option<Guard>> {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;

    let real = std::io::stdout().as_fd().try_clone_to_owned()?;
    let kind = std::fs::File::from(real.try_clone()?)
        .metadata()?
        .file_type();
    if !(kind.is_fifo() || kind.is_socket()) {
        return Ok(None);
    }
    let mut sink = std::fs::File::from(real.try_clone()?);
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
                            // The reader went away: drop the rest.
                            open = false;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done_tx.send(());
        })?;
    let _ = std::io::stdout().flush();
    rustix::stdio::dup2_stdout(&writer)?;
    drop(writer);
    Ok(Some(Guard { real, done }))
}

/// Writes all of `bytes` to the real stdout; false once it failed for good.
/// A stdout a parent left non-blocking refuses writes for a moment when its
/// reader is slow: that is waited out, not taken for a reader gone.
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

/// Puts the real stdout back and forwards what the shield still holds
/// (waiting at most a second for it). Call before the process exits
/// normally; an immediate exit (a second stop signal) skips it, since it
/// flushes stdout and could wait on a reader that stopped reading.
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
