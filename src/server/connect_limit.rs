//! The connect limit ([`ConnectLimit`]): the sockets admitted in the last
//! second, and the refusal of one more. A refused socket is answered as the
//! real platform answers when its auth service is overwhelmed: the
//! auth-failure frame (`VALIDATION_FAILED`) and close 1011, before ready
//! (`ws.rs` sends both, as for the `reject_token` fault), and counted in the
//! truth as `connect_limit.refused_1011`.
//!
//! Imports its own folder (state, truth, settings).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ServerState;

/// Sockets refused by the connect limit (auth-failure frame, then 1011 before ready).
pub const REFUSED: &str = "connect_limit.refused_1011";

/// When the sockets of the last second were admitted (at most the limit).
#[derive(Debug, Default)]
pub struct Admitted(Mutex<VecDeque<Instant>>);

/// Whether a new, authenticated socket is refused: more than the limit's
/// sockets were admitted within the last second. A refused socket does not
/// count against later ones.
pub fn refused(st: &ServerState) -> bool {
    let Some(limit) = st.config.connect_limit else {
        return false;
    };
    let now = Instant::now();
    let mut recent = st.admitted.0.lock().unwrap_or_else(|e| e.into_inner());
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        recent.pop_front();
    }
    if recent.len() >= limit.per_second as usize {
        st.truth.add(REFUSED, 1);
        return true;
    }
    recent.push_back(now);
    false
}
