//! The reference server's listener: accepts as axum's does (TCP_NODELAY on
//! every accepted socket, a pause after an error that is not the peer's),
//! and counts every accept error that is the server's own in the truth
//! counters, by errno (`accept_errors.emfile`): the embedded server shares
//! the generator's fds, and a run whose server could not accept is INVALID
//! (see `metrics/validity.rs`).
//!
//! Imports nothing from the crate but its own `mod.rs` and `truth.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::truth::ACCEPT_ERRORS;
use super::ServerState;

/// How long the listener pauses after an accept error of its own (axum's: 1 s).
const PAUSE: Duration = Duration::from_secs(1);

/// A TCP listener that counts its accept errors.
pub(super) struct CountingListener {
    pub inner: TcpListener,
    pub state: Arc<ServerState>,
}

impl axum::serve::Listener for CountingListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok((tcp, addr)) => {
                    // Nagle off, as on the client: otherwise events a few
                    // milliseconds apart wait for the previous one's ACK.
                    let _ = tcp.set_nodelay(true);
                    return (tcp, addr);
                }
                // The peer gave up before it was accepted: not the server's.
                Err(e) if is_peer_error(&e) => {}
                Err(e) => {
                    let name = format!("{ACCEPT_ERRORS}{}", errno_name(&e));
                    self.state.truth.add(&name, 1);
                    tokio::time::sleep(PAUSE).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn is_peer_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    )
}

/// `emfile`, `enfile`, `enobufs`, `enomem`, or `other`.
pub fn errno_name(e: &std::io::Error) -> &'static str {
    #[cfg(unix)]
    {
        use rustix::io::Errno;
        let known = [
            (Errno::MFILE, "emfile"),
            (Errno::NFILE, "enfile"),
            (Errno::NOBUFS, "enobufs"),
            (Errno::NOMEM, "enomem"),
        ];
        let errno = Errno::from_io_error(e);
        known
            .into_iter()
            .find(|(n, _)| Some(*n) == errno)
            .map_or("other", |(_, name)| name)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        "other"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_errors_are_named_by_errno() {
        let os = std::io::Error::from_raw_os_error;
        assert_eq!(super::errno_name(&os(24)), "emfile");
        assert_eq!(super::errno_name(&os(23)), "enfile");
        assert_eq!(super::errno_name(&os(5)), "other");
        assert!(super::is_peer_error(&os(103)), "ECONNABORTED");
    }
}
