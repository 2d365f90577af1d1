//! The open model: arrivals at a rate, whatever the answers take.
//!
//! Built on goose users rather than beside them: goose starts the whole pool
//! (`max_users` users) at once and keeps it, so sessions, their sockets, the
//! per-step goose transactions and goose's own report work as in the closed
//! model. What goose cannot do is decide *when* a journey starts; a pacer task
//! beside the pool does that. It asks the pure [`Pacer`] when each arrival is
//! due, takes a free-session slot (a semaphore of `max_users` permits) and
//! hands the arrival, with its intended start, to whichever pool user is idle
//! (a multi-consumer channel). An arrival that finds no free slot is dropped
//! (`starts.dropped`) or waits for one (`starts.late`, as is every arrival
//! that fell due while the pool was full), never silently delayed; so
//! `starts.intended` = `runs`' arrivals started + `starts.dropped`. Pool users
//! whose journey uses the socket open it before pacing starts.
//! Run latencies are measured from the intended start, so a stall in the
//! target is measured for every arrival it delayed (no coordinated omission);
//! `send_lag` is intended start -> the session picking the arrival up, the
//! generator's own lateness.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics::ObsSender;
use crate::names;
use crate::plan::{Pace, Pacer, WhenFull};

/// One arrival handed to a session: when it was meant to start, and the pool
/// slot it holds until its journey ends.
pub struct Arrival {
    pub intended: Instant,
    _slot: OwnedSemaphorePermit,
}

/// The pool's shared parts.
pub struct Pool {
    pub size: usize,
    pub slots: Arc<Semaphore>,
    pub tx: flume::Sender<Arrival>,
    pub rx: flume::Receiver<Arrival>,
    /// Pool users that have started (the pacer waits for all of them).
    pub joined: AtomicUsize,
    joined_notify: tokio::sync::Notify,
    /// Set when the run is asked to stop: no more arrivals.
    pub stop: AtomicBool,
    /// The run's stop request.
    run_stop: Arc<super::stop::StopSignal>,
}

impl Pool {
    pub fn new(size: usize, run_stop: Arc<super::stop::StopSignal>) -> Pool {
        let (tx, rx) = flume::unbounded();
        Pool {
            size,
            slots: Arc::new(Semaphore::new(size)),
            tx,
            rx,
            joined: AtomicUsize::new(0),
            joined_notify: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
            run_stop,
        }
    }

    /// Whether the run was asked to stop (or the engine ended).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.run_stop.is_set()
    }

    /// The next arrival for an idle session, or `None` once `stop` is
    /// requested (so goose can stop the user between transactions).
    pub async fn next(&self, stop: &super::stop::StopSignal) -> Option<Arrival> {
        tokio::select! {
            biased;
            _ = stop.wait() => None,
            r = self.rx.recv_async() => r.ok(),
        }
    }
}

/// Longest the pacer sleeps before looking at the stop flag again.
const TICK: Duration = Duration::from_millis(50);

/// Issues the plan's arrivals against `epoch`; returns how many were due.
pub async fn pace(
    mut pacer: Pacer,
    when_full: WhenFull,
    pool: Arc<Pool>,
    obs: ObsSender,
    epoch: Instant,
) -> u64 {
    let mut count = 0u64;
    // Arrivals due before this instant fell due while the pool was full.
    let mut backlog_until: Option<Instant> = None;
    while !pool.stopped() {
        match pacer.next(epoch.elapsed(), count) {
            Pace::Stop => break,
            Pace::Wait(d) => {
                tokio::time::sleep(d.min(TICK)).await;
            }
            Pace::Start { intended } => {
                count += 1;
                // Counted in the capacity step whose window the arrival fell due in.
                let step = obs.run_step();
                obs.count_for(step, names::STARTS_INTENDED);
                let intended = epoch + intended;
                let slot = match pool.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        if backlog_until.is_some_and(|b| intended < b) {
                            obs.count_for(step, names::STARTS_LATE);
                        }
                        slot
                    }
                    Err(_) => match when_full {
                        WhenFull::Drop => {
                            obs.count_for(step, names::STARTS_DROPPED);
                            continue;
                        }
                        WhenFull::Queue => {
                            // Later arrivals are due meanwhile; they are issued
                            // at once (past due) when a slot frees up, and are
                            // late too.
                            let Some(slot) = wait_for_slot(&pool).await else {
                                // Stopped while waiting: this one never started.
                                obs.count_for(step, names::STARTS_DROPPED);
                                break;
                            };
                            obs.count_for(step, names::STARTS_LATE);
                            backlog_until = Some(Instant::now());
                            slot
                        }
                    },
                };
                let _ = pool.tx.send(Arrival {
                    intended,
                    _slot: slot,
                });
            }
        }
    }
    count
}

async fn wait_for_slot(pool: &Pool) -> Option<OwnedSemaphorePermit> {
    loop {
        if pool.stopped() {
            return None;
        }
        if let Ok(Ok(slot)) = tokio::time::timeout(TICK, pool.slots.clone().acquire_owned()).await {
            return Some(slot);
        }
    }
}

/// Waits until every pool user has joined (or `limit` passed).
pub async fn wait_for_pool(pool: &Pool, limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        let joined = pool.joined_notify.notified();
        if pool.joined.load(Ordering::SeqCst) >= pool.size || Instant::now() >= until {
            return;
        }
        let _ = tokio::time::timeout_at(until, joined).await;
    }
}

/// Records that a pool user started.
pub fn join(pool: &Pool) {
    pool.joined.fetch_add(1, Ordering::SeqCst);
    pool.joined_notify.notify_waiters();
}

/// Waits until every slot is free again (every journey in flight has ended:
/// after the stop they only await their runs in flight), at most `limit`.
pub async fn drain(pool: &Pool, limit: Duration) {
    if let Ok(Ok(all)) =
        tokio::time::timeout(limit, pool.slots.acquire_many(pool.size as u32)).await
    {
        drop(all);
    }
}
