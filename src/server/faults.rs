//! Every fault decision the reference server draws from its seeded plan:
//! which generator each draw comes from, and the order of the draws (the
//! fault tests count injections exactly, so a seed must replay the same
//! faults). The fault vocabulary itself ([`FaultPlan`], [`Phase`]) is a
//! protocol leaf (`protocol/faults.rs`).
//!
//! Generators, by what they must not depend on:
//! - the upgrade generator (one per server): refused and slow upgrades, drawn
//!   per attempt;
//! - a connection's generator, seeded from the user and how many sockets that
//!   user opened (never accept order): reject_token, close_1011 at connect,
//!   mute_heartbeat, close_1011 on the first exchange;
//! - a close's generator, seeded from the same user and socket number (and
//!   its own tag), drawn once when a ready socket closes: leak_connections;
//! - a run's generator, seeded from the user and the run id: the run's shape,
//!   its leak victim and the script faults `agent::script` applies;
//! - a per-message generator for lose_message, and the REST generator for
//!   leak_history and rest_error.
//!
//! Also here: the capacity queue and the stall windows, which hold runs back.
//! Imports only its own folder (state, settings, truth, agent) and `auth`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::{agent, truth, ServerState};

pub use super::draw::{close_1011, draw, stable_seed};

/// Per-attempt upgrade faults, from the upgrade generator: the status a
/// refused upgrade answers with, and how long a slow accept waits.
pub(super) fn upgrade_faults(st: &ServerState) -> (Option<u16>, Option<Duration>) {
    let mut rng = st.upgrade_rng.lock().unwrap_or_else(|e| e.into_inner());
    let refuse = st
        .config
        .faults
        .refuse_upgrade
        .iter()
        .find(|(_, r)| rng.random::<f64>() < **r)
        .map(|(s, _)| *s);
    let slow = st
        .config
        .faults
        .slow_accept
        .filter(|(_, r)| rng.random::<f64>() < *r)
        .map(|(d, _)| d);
    (refuse, slow)
}

/// A connection's generator. Draws depend on who connects and how often,
/// never on accept order, so the same seed replays the same behaviour however
/// connections interleave.
/// Also returns the socket's number among this user's (1, 2, ...).
pub(super) fn connection_rng(st: &ServerState, user: &str) -> (ChaCha8Rng, u64) {
    let user_conn = {
        let mut m = st.user_conns.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user.to_string()).or_insert(0);
        *n += 1;
        *n
    };
    let rng = ChaCha8Rng::seed_from_u64(stable_seed(
        st.config.seed,
        &[user.as_bytes(), &user_conn.to_le_bytes()],
    ));
    (rng, user_conn)
}

/// The leak_connections fault for one ready socket's close: whether the
/// server forgets to subtract it from its own counts. Drawn from the user
/// and the socket's number alone (its own generator, so the connection's
/// other draws stay where they were); counts the leak.
pub(super) fn leak_connection(st: &ServerState, user: &str, user_conn: u64) -> bool {
    let rate = st.config.faults.leak_connections;
    let armed = rate > 0.0;
    if !armed {
        return false;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(stable_seed(
        st.config.seed,
        &[
            user.as_bytes(),
            &user_conn.to_le_bytes(),
            b"leak_connections",
        ],
    ));
    let leaked = draw(&mut rng, rate);
    if leaked {
        st.truth.add(truth::FAULT_LEAK_CONNECTIONS, 1);
    }
    leaked
}

/// The reject_token fault, the first draw from a connection's generator
/// (none at rate 0, so other draws stay where they were): the token is
/// refused before ready. Counts it (`faults.reject_token`).
pub(super) fn reject_token(st: &ServerState, rng: &mut ChaCha8Rng) -> bool {
    let hit = draw(rng, st.config.faults.reject_token);
    if hit {
        st.truth.add(truth::FAULT_REJECT_TOKEN, 1);
    }
    hit
}

/// A run's generator: its shape and faults follow from the seed, the user
/// and the run id alone.
pub(super) fn run_rng(st: &ServerState, user: &str, run_id: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(stable_seed(
        st.config.seed,
        &[user.as_bytes(), run_id.as_bytes()],
    ))
}

/// Draws a run's shape, slowed down by the server's uptime when the plan
/// has a gradual slowdown.
pub(super) fn run_plan(st: &ServerState, rng: &mut ChaCha8Rng) -> agent::RunPlan {
    let mut plan = agent::RunPlan::draw(&st.config, rng);
    if st.config.slowdown_per_minute > 0.0 {
        let factor =
            1.0 + st.config.slowdown_per_minute * st.started.elapsed().as_secs_f64() / 60.0;
        plan.delays.iter_mut().for_each(|d| *d = d.mul_f64(factor));
    }
    plan
}

/// The connected user a leaked event pretends to come from (drawn from the
/// run's generator only when the plan leaks at all).
pub(super) fn leak_victim(st: &ServerState, me: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let leaks = st.config.faults.leak > 0.0;
    if !leaks {
        return None;
    }
    let active = st.active.lock().unwrap_or_else(|e| e.into_inner());
    let mut others: Vec<&String> = active.values().filter(|u| u.as_str() != me).collect();
    others.sort();
    others.dedup();
    if others.is_empty() {
        return None;
    }
    Some(others[rng.random_range(0..others.len())].clone())
}

/// Whether the lose_message fault leaves a run's user message out (drawn
/// from the user and run id, so the same seed loses the same messages).
/// Counts the loss.
pub(super) fn lose_message(st: &ServerState, user: &str, run_id: &str) -> bool {
    let rate = st.config.faults.lose_message;
    let armed = rate > 0.0;
    if !armed {
        return false;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(stable_seed(
        st.config.seed,
        &[user.as_bytes(), run_id.as_bytes(), b"persist"],
    ));
    let lost = rng.random::<f64>() < rate;
    if lost {
        st.truth.add(truth::FAULT_LOSE_MESSAGE, 1);
    }
    lost
}

/// The leak_history fault for one history read: `Some(pick)` (which foreign
/// message to add) when drawn. Two draws per read whenever the rate is set.
pub(super) fn leak_history(st: &ServerState) -> Option<u64> {
    let rate = st.config.faults.leak_history;
    let armed = rate > 0.0;
    if !armed {
        return None;
    }
    let (hit, pick) = {
        let mut rng = st.rest_rng.lock().unwrap_or_else(|e| e.into_inner());
        (rng.random::<f64>() < rate, rng.random::<u64>())
    };
    hit.then_some(pick)
}

/// The rest_error fault for one thread REST call: the status to answer
/// with instead, when drawn (one draw per status whenever the fault is set).
pub(super) fn rest_error(st: &ServerState) -> Option<u16> {
    let plan = &st.config.faults.rest_error;
    if plan.is_empty() {
        return None;
    }
    let mut rng = st.rest_rng.lock().unwrap_or_else(|e| e.into_inner());
    plan.iter()
        .find(|(_, r)| rng.random::<f64>() < **r)
        .map(|(s, _)| *s)
}

/// A free agent slot when the server has a capacity: waits for one in the
/// queue, or refuses the run with a 1011 close (sent on `out`) when the
/// queue is full. `Err(())`: refused. `Ok(None)`: no capacity model.
pub(super) async fn take_slot(
    st: &ServerState,
    out: &mpsc::Sender<agent::Outgoing>,
) -> Result<Option<OwnedSemaphorePermit>, ()> {
    let (Some((sem, waiting)), Some(cap)) = (&st.slots, st.config.capacity) else {
        return Ok(None);
    };
    if let Ok(slot) = sem.clone().try_acquire_owned() {
        return Ok(Some(slot));
    }
    if waiting.fetch_add(1, Ordering::SeqCst) >= cap.queue as u64 {
        waiting.fetch_sub(1, Ordering::SeqCst);
        let _ = out
            .send(agent::Outgoing {
                delay: Duration::ZERO,
                action: agent::Action::Close(1011),
                faults: vec![truth::CAPACITY_REFUSED.into()],
                last: false,
            })
            .await;
        return Err(());
    }
    st.truth.add(truth::CAPACITY_QUEUED, 1);
    let slot = sem.clone().acquire_owned().await;
    waiting.fetch_sub(1, Ordering::SeqCst);
    Ok(slot.ok())
}

/// Holds a run's next event back while a stall window is open, counting the
/// run (once, `delayed`) and the window (once per server).
pub(super) async fn hold_for_stall(st: &ServerState, delayed: &mut bool) {
    let Some(stall) = st.config.stall else {
        return;
    };
    if let Some((window, left)) = stall.inside(st.started.elapsed()) {
        if !*delayed {
            *delayed = true;
            st.truth.add(truth::STALL_RUNS, 1);
        }
        if st.stall_window.fetch_max(window, Ordering::SeqCst) < window {
            st.truth.add(truth::STALL_WINDOWS, 1);
        }
        tokio::time::sleep(left).await;
    }
}
