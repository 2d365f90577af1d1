//! Receive times from the kernel: a TCP stream under tungstenite (and under
//! TLS, for `wss://`) whose reads return the kernel's receive timestamp
//! (`SO_TIMESTAMPNS`) with the bytes, so a frame's latency ends when the
//! kernel had it, not when chatload's task got round to reading it.
//!
//! A frame's receive time is the stamp of the read that completed it: for
//! TCP the kernel gives the newest segment in that read, and a read is at
//! most tungstenite's read buffer (`connect::ws_config`, 4 KiB). So a frame
//! that arrived in pieces is timed by its last piece (as a packet capture
//! would time it), and a frame that shared a read with a later one, which
//! happens only when chatload was already late reading, is timed by the
//! later segment: never earlier than the wire, at most the gap between two
//! segments that waited in the socket together.
//!
//! A frame's send time is when the write system call that carried its last
//! bytes was made (tungstenite's write buffer is off, so a frame goes out in
//! the write that sends it): a capture stamps the packet inside that call,
//! and on loopback the call returns only after the receiver's side has run,
//! so the time after it would be late by that (about 80 µs in a debug build).
//!
//! Kernel stamps are `CLOCK_REALTIME`; chatload's other times are
//! monotonic. [`WireClock::received`] converts through the age of the stamp
//! (realtime now minus the stamp), taken at the moment the frame is in
//! hand, so an NTP step only matters if it falls between the two reads of
//! the clock; [`ClockWatch`] samples the offset between the two clocks and
//! reports each jump over 1 ms. Where a socket cannot be stamped (not
//! Linux, or `setsockopt` refused) reads fall back to user-space times and
//! the run says so.
//!
//! May import: nothing of chatload's; tokio and libc.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stamp older than this when its frame is read is taken for a clock
/// step (the realtime clock moved), and the frame is timed in user space.
const MAX_AGE: Duration = Duration::from_secs(60);

/// When a socket's bytes last crossed the wire: the kernel receive time of
/// its last read, and the start of its last write.
#[derive(Debug, Default)]
pub struct WireClock {
    /// `CLOCK_REALTIME` nanoseconds of the newest segment of the last read
    /// that brought bytes; 0: none yet.
    ns: AtomicU64,
    /// Nanoseconds after [`base`] (plus one; 0: none yet) when the last
    /// write that took bytes was called.
    tx: AtomicU64,
}

/// The origin of [`WireClock`]'s write times.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl WireClock {
    /// When the kernel received the last read's newest segment, as an
    /// [`Instant`] in the same clock as `now` (the moment the frame is in
    /// hand); `None` when no stamp came or it cannot be trusted.
    pub fn received(&self, now: Instant) -> Option<Instant> {
        let ns = self.ns.load(Ordering::Relaxed);
        if ns == 0 {
            return None;
        }
        // A stamp "in the future" is a clock that stepped back: age 0.
        let age = Duration::from_nanos(realtime_ns()?.saturating_sub(ns));
        if age > MAX_AGE {
            return None;
        }
        now.checked_sub(age)
    }

    fn set(&self, ns: u64) {
        self.ns.store(ns, Ordering::Relaxed);
    }

    /// When the last write that took bytes was called: for a frame sent
    /// whole (tungstenite's write buffer is off), the system call that put
    /// its last bytes on the wire, which a capture stamps inside that call.
    pub fn sent(&self) -> Option<Instant> {
        let v = self.tx.load(Ordering::Relaxed);
        (v > 0).then(|| base() + Duration::from_nanos(v - 1))
    }

    fn wrote(&self, at: Instant) {
        let ns = at.saturating_duration_since(base()).as_nanos() as u64;
        self.tx.store(ns + 1, Ordering::Relaxed);
    }
}

/// `CLOCK_REALTIME` in nanoseconds since the epoch.
pub fn realtime_ns() -> Option<u64> {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(d.as_nanos()).ok()
}

/// A TCP stream whose reads keep the kernel's receive time in a
/// [`WireClock`], and whose writes the time they were called.
pub struct Stamped {
    inner: TcpStream,
    clock: Option<Arc<WireClock>>,
}

impl Stamped {
    /// Wraps `inner`; with `kernel` asks the kernel for receive stamps.
    /// `clock()` is `None` when stamps are off or the socket refused them.
    pub fn new(inner: TcpStream, kernel: bool) -> Stamped {
        let clock = (kernel && enable(&inner)).then(|| Arc::new(WireClock::default()));
        Stamped { inner, clock }
    }

    /// Keeps `at` as the last write's time when the write took bytes.
    fn wrote(&self, at: Option<Instant>, r: &Poll<io::Result<usize>>) {
        if let (Some(clock), Some(at), Poll::Ready(Ok(n))) = (&self.clock, at, r) {
            if *n > 0 {
                clock.wrote(at);
            }
        }
    }

    /// The clock the reads keep, shared with the session that reads frames.
    pub fn clock(&self) -> Option<Arc<WireClock>> {
        self.clock.clone()
    }
}

#[cfg(target_os = "linux")]
fn enable(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid fd owned by `s`, a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn enable(_: &TcpStream) -> bool {
    false
}

/// One `recvmsg` into `buf`: the bytes read and the kernel's stamp, if any.
#[cfg(target_os = "linux")]
fn recv_stamped(
    fd: i32,
    buf: &mut [std::mem::MaybeUninit<u8>],
) -> io::Result<(usize, Option<u64>)> {
    // Room for one SCM_TIMESTAMPNS (a timespec) and then some, aligned.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is its empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: iov points at `buf` (writable, `len` bytes), control at `control`.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, stamp))
}

impl AsyncRead for Stamped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        #[cfg(target_os = "linux")]
        if let Some(clock) = &this.clock {
            use std::os::fd::AsRawFd;
            let fd = this.inner.as_raw_fd();
            loop {
                std::task::ready!(this.inner.poll_read_ready(cx))?;
                // SAFETY: recvmsg only writes the bytes it reports.
                let unfilled = unsafe { buf.unfilled_mut() };
                match this
                    .inner
                    .try_io(tokio::io::Interest::READABLE, || recv_stamped(fd, unfilled))
                {
                    Ok((n, stamp)) => {
                        // SAFETY: the kernel wrote `n` bytes.
                        unsafe { buf.assume_init(n) };
                        buf.advance(n);
                        // A read without a stamp (the kernel turns
                        // stamping on a moment after the first socket asks)
                        // must not leave the last read's time behind.
                        clock.set(stamp.unwrap_or(0));
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let at = this.clock.as_ref().map(|_| Instant::now());
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(at, &r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let at = this.clock.as_ref().map(|_| Instant::now());
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(at, &r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Jumps of the realtime clock against the monotonic one, sampled by the
/// caller (once an interval): a step over [`ClockWatch::JUMP`] between two
/// samples is counted, since kernel stamps taken across it are off by it.
#[derive(Debug)]
pub struct ClockWatch {
    base: Instant,
    offset_ns: Option<i128>,
}

impl Default for ClockWatch {
    fn default() -> Self {
        ClockWatch {
            base: Instant::now(),
            offset_ns: None,
        }
    }
}

impl ClockWatch {
    /// The step that counts as a jump.
    pub const JUMP: Duration = Duration::from_millis(1);

    /// Samples the offset; the jump since the last sample when it is over
    /// [`ClockWatch::JUMP`] (either way).
    pub fn sample(&mut self) -> Option<Duration> {
        let mono = self.base.elapsed().as_nanos() as i128;
        let real = realtime_ns()? as i128;
        let offset = real - mono;
        let jump = self
            .offset_ns
            .map(|prev| Duration::from_nanos((offset - prev).unsigned_abs() as u64))
            .filter(|j| *j > Self::JUMP);
        self.offset_ns = Some(offset);
        jump
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_read_carries_the_kernels_receive_time() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        let mut s = Stamped::new(client, true);
        let clock = s.clock().expect("Linux stamps loopback sockets");
        // The kernel turns stamping on a moment after the first socket of
        // the system asks (a deferred switch): the first reads may come
        // unstamped, and then say so rather than keep an older stamp.
        let mut buf = [0u8; 16];
        let mut exchange = 0;
        let (before, rx, now) = loop {
            exchange += 1;
            assert!(exchange <= 1000, "no read came stamped");
            let before = Instant::now();
            server.write_all(b"hello").await.unwrap();
            let n = s.read(&mut buf).await.unwrap();
            let now = Instant::now();
            assert_eq!(&buf[..n], b"hello");
            if let Some(rx) = clock.received(now) {
                break (before, rx, now);
            }
        };
        // The stamp lies between the write and the read (a little slack
        // for the two clocks being read at different moments).
        let slack = Duration::from_millis(2);
        assert!(
            rx + slack >= before && rx <= now,
            "{before:?} {rx:?} {now:?}"
        );
        // Writes go through, and keep when they were called.
        let before = Instant::now();
        s.write_all(b"back").await.unwrap();
        let after = Instant::now();
        let sent = clock.sent().expect("a write took bytes");
        assert!(
            sent >= before && sent <= after,
            "{before:?} {sent:?} {after:?}"
        );
        let n = server.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");
    }

    #[tokio::test]
    async fn stamps_off_reads_plain() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = l.accept().await.unwrap();
        let mut s = Stamped::new(client, false);
        assert!(s.clock().is_none());
        server.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(s.read(&mut buf).await.unwrap(), 1);
    }

    #[test]
    fn a_stale_or_missing_stamp_is_not_trusted() {
        let c = WireClock::default();
        let now = Instant::now();
        assert_eq!(c.received(now), None);
        c.set(realtime_ns().unwrap() - 120_000_000_000);
        assert_eq!(c.received(now), None, "two minutes old: a clock step");
        c.set(realtime_ns().unwrap() + 5_000_000);
        assert_eq!(c.received(now), Some(now), "from the future: age 0");
    }

    #[test]
    fn a_steady_clock_shows_no_jump() {
        let mut w = ClockWatch::default();
        assert_eq!(w.sample(), None);
        assert_eq!(w.sample(), None);
    }
}
