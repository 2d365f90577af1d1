//! A user's `think`: idling with the socket kept as a real client keeps it
//! (runs in flight read and judged, heartbeats, token refresh, reconnects).
//! The socket itself (connect, read, close) is [`super::socket`].
//!
//! May import: the engine's own files, `metrics`, `scenario`, `protocol`,
//! `names`.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::session::{self, Read, Want};
use super::shared::Shared;
use super::user::UserSession;
use crate::protocol::template;

impl Shared {
    /// A `think`: idles until `until` (or the stop) while keeping the user's
    /// socket as a real client would. It reads what arrives (a run in flight
    /// is timed and judged as its events come; pings are answered); with a
    /// profile heartbeat it pings every `hb.every` (`heartbeats.sent`, and
    /// `ws_ping` to the reply) and closes a socket whose ping went unanswered
    /// for `hb.timeout` (`heartbeats.missed`); a socket whose token is due
    /// is closed and reopened with a fresh one (`tokens.refreshed`); a socket
    /// the server dropped is reconnected under the back-off policy.
    pub(super) async fn idle(&self, s: &mut UserSession, until: Instant) -> bool {
        let hb = self.profile.heartbeat.as_ref();
        let mut reconnected = false;
        loop {
            let now = Instant::now();
            if now >= until || self.cfg.stop.is_set() {
                return reconnected;
            }
            if s.ws.is_none() {
                if self.waits_out(s, until) {
                    self.cfg.stop.sleep_until(until).await;
                    return reconnected;
                }
                reconnected = true;
                // Boxed (here and below): a connect's future is large, and
                // an idle user's future would otherwise hold its size for
                // the whole idle time (memory per idle socket).
                let _ = Box::pin(self.connect(s)).await;
                continue;
            }
            if self.refresh_due(s) && Box::pin(self.refresh_if_due(s)).await {
                reconnected = true;
                if Box::pin(self.connect(s)).await.is_err() {
                    s.lost = true;
                }
                continue;
            }
            if let Some(hb) = hb {
                let last = *s.last_ping.get_or_insert(now);
                if s.ping_pending.is_none() && now >= last + hb.every {
                    let vars = s.vars();
                    let text = template::render(&hb.message, &vars).to_string();
                    let Some(ws) = s.ws.as_mut() else { continue };
                    if ws.send(Message::Text(text.into())).await.is_err() {
                        self.closed(s, session::ABNORMAL_CLOSE);
                        continue;
                    }
                    self.obs.count("heartbeats.sent");
                    s.last_ping = Some(now);
                    s.ping_pending = Some(now);
                }
                if let Some(sent) = s.ping_pending {
                    if now >= sent + hb.timeout {
                        self.obs.count("heartbeats.missed");
                        s.ping_pending = None;
                        self.obs.count("connections.closed_missed_heartbeat");
                        Box::pin(self.close_socket(s, "missed heartbeats")).await;
                        // The server stopped answering: come back as after a drop.
                        s.lost = true;
                        s.dropped_at.get_or_insert_with(Instant::now);
                        self.judge_loss(s);
                        continue;
                    }
                }
            }
            let wake = self.idle_wake(s, hb, until, now);
            let want = match (hb, s.ping_pending) {
                (Some(hb), Some(_)) => Want::Frame(&hb.reply),
                _ => Want::Nothing,
            };
            match self.read(s, want, wake, true).await {
                Read::Got(_) => {
                    if let Some(sent) = s.ping_pending.take() {
                        self.obs
                            .sample("ws_ping", sent.elapsed().as_micros() as u64);
                        self.obs.count("heartbeats.answered");
                        Self::proved(s);
                    }
                }
                Read::Stopped => return reconnected,
                // A close was settled by `read`; the loop reconnects.
                Read::Closed(_)
                | Read::Broken(_)
                | Read::TimedOut
                | Read::ServerError(_)
                | Read::RunEnded(_)
                | Read::Violated(_) => {}
            }
        }
    }

    /// A think without a socket: whether it waits to its end rather than
    /// reconnecting. Only a socket lost under the user comes back by itself; one
    /// the journey closed (or never opened) waits for its step.
    /// A back-off or cooldown that outlasts the think is left to
    /// the next step, so the think keeps its length.
    fn waits_out(&self, s: &mut UserSession, until: Instant) -> bool {
        let later = s.lost
            && !s.parked
            && match s.cooldown_until {
                Some(c) => c > until,
                None => self.retry_at(s).is_some_and(|at| at > until),
            };
        !s.lost || s.parked || later
    }

    /// When an idle read wakes: the think's end, the next heartbeat (or its
    /// reply's deadline), the token's refresh; at least 1 ms from `now`.
    fn idle_wake(
        &self,
        s: &UserSession,
        hb: Option<&crate::protocol::Heartbeat>,
        until: Instant,
        now: Instant,
    ) -> Instant {
        let mut wake = until;
        if let Some(hb) = hb {
            wake = wake.min(match s.ping_pending {
                Some(p) => p + hb.timeout,
                None => s.last_ping.map_or(until, |l| l + hb.every),
            });
        }
        if s.pending.is_none() {
            if let Some(at) = self.refresh_at(s) {
                wake = wake.min(at);
            }
        }
        wake.max(now + Duration::from_millis(1))
    }
}
