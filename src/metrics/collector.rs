//! The collector: one task that owns the run's [`Recorder`] and applies every
//! observation the engine sends, in arrival order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::encoding::IntervalData;
use super::interval_store::IntervalStore;
use super::recorder::{Name, Observation, Recorder};

enum Msg {
    /// An observation; with a step it belongs to that step's phase whatever
    /// the current phase is (a run's figures: see [`RunStep`]).
    Obs(Observation, Option<RunStep>),
    /// Reply with a copy of everything recorded so far.
    Peek(oneshot::Sender<Recorder>),
    /// Reply with the last closed interval.
    Last(oneshot::Sender<Option<IntervalData>>),
    /// Reply with the intervals closed after the first n (at most [`RECENT_KEPT`]).
    Since(u64, oneshot::Sender<Closed>),
    /// Reply with everything: the whole run and the closed intervals.
    All(oneshot::Sender<Collected>),
    /// From now on, observations also go to this phase's recorder (None: to no phase).
    Phase(Option<u32>),
    /// Reply with a copy of one phase's recorder.
    PeekPhase(u32, oneshot::Sender<Recorder>),
    End,
}

/// Observations queued for the collector above which a socket's reader
/// waits ([`ObsSender::backpressure`]) before reading its next frame.
pub const BACKLOG_MAX: usize = 65_536;
/// The backlog at which waiting readers are woken.
const BACKLOG_RESUME: usize = BACKLOG_MAX / 2;

/// How many observations are queued, and a wake-up for readers waiting on it.
#[derive(Default)]
struct Backlog {
    queued: AtomicUsize,
    drained: tokio::sync::Notify,
    /// The capacity step whose measured window is open (0: none); read
    /// when a run starts ([`ObsSender::run_step`]).
    measuring: std::sync::atomic::AtomicU32,
}

/// The capacity step a run belongs to: the one whose measured window was
/// open when the run started (`None`: it started outside every measured
/// window, in a warm-up or outside a capacity search). Every figure of the
/// run (started, ok or failed by class, ttfe, ttc, events, a close during
/// it) is kept in that step, however late it comes, so a step's rates have
/// the same runs above and below the line and never exceed 100%.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunStep(pub Option<u32>);

/// Cheap, cloneable handle the engine emits observations through. Emitting never
/// blocks and never fails the caller: after the collector ended, observations
/// are dropped.
///
/// What bounds the queue: every observation is kept (the channel itself is
/// unbounded, so no caller ever waits or loses one), and the only producers
/// whose volume a server controls, the sockets' readers, call
/// [`ObsSender::backpressure`] before each frame: past [`BACKLOG_MAX`]
/// queued observations they stop reading (TCP pushes back on the server)
/// until the collector has caught up to half of it. Every other producer
/// emits a bounded number per run, step or interval. A flood is also cut at
/// the reader (`engine/flood.rs`).
#[derive(Clone)]
pub struct ObsSender(mpsc::UnboundedSender<Msg>, Arc<Backlog>);

impl ObsSender {
    pub fn emit(&self, obs: Observation) {
        self.send_obs(obs, None);
    }

    fn send_obs(&self, obs: Observation, step: Option<RunStep>) {
        self.1.queued.fetch_add(1, Ordering::Relaxed);
        if self.0.send(Msg::Obs(obs, step)).is_err() {
            self.1.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The step a run starting now belongs to (see [`RunStep`]).
    pub fn run_step(&self) -> RunStep {
        RunStep(
            std::num::NonZeroU32::new(self.1.measuring.load(Ordering::Relaxed)).map(|n| n.get()),
        )
    }

    /// Opens (or, with `None`, closes) a capacity step's measured window:
    /// runs that start from now on belong to `step` ([`ObsSender::run_step`]).
    pub fn measure(&self, step: Option<u32>) {
        self.1.measuring.store(step.unwrap_or(0), Ordering::Relaxed);
    }

    /// A sample of a run: kept in the run's step (see [`RunStep`]).
    pub fn sample_for(&self, step: RunStep, metric: impl Into<Name>, us: u64) {
        self.send_obs(Observation::sample(metric, us), Some(step));
    }

    /// A count of a run: kept in the run's step (see [`RunStep`]).
    pub fn count_for(&self, step: RunStep, counter: impl Into<Name>) {
        self.send_obs(Observation::count(counter), Some(step));
    }

    /// Whether the collector is behind by more than [`BACKLOG_MAX`].
    pub fn backlogged(&self) -> bool {
        self.1.queued.load(Ordering::Relaxed) > BACKLOG_MAX && !self.0.is_closed()
    }

    /// Waits while the collector is behind (see [`ObsSender`]): returns once
    /// the backlog is down to half of [`BACKLOG_MAX`] (or the collector ended).
    pub async fn backpressure(&self) {
        while self.1.queued.load(Ordering::Relaxed) > BACKLOG_RESUME && !self.0.is_closed() {
            let woken = self.1.drained.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.1.queued.load(Ordering::Relaxed) <= BACKLOG_RESUME {
                return;
            }
            // The wake-up is exact; the timeout only guards a race with a
            // producer that emitted as the count passed the mark.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(5), woken).await;
        }
    }
    pub fn sample(&self, metric: impl Into<Name>, us: u64) {
        self.emit(Observation::sample(metric, us));
    }
    pub fn count(&self, counter: impl Into<Name>) {
        self.emit(Observation::count(counter));
    }
    pub fn count_n(&self, counter: impl Into<Name>, n: u64) {
        self.emit(Observation::count_n(counter, n));
    }
    /// Why a connect or handshake failed (`stage`: `connect`, `ticket`, `ready`).
    pub fn failure(&self, stage: &str, reason: String) {
        self.emit(Observation::Failure(super::recorder::FailureReason {
            stage: stage.to_string(),
            reason,
            count: 1,
        }));
    }

    /// A copy of everything recorded so far (for live progress and running thresholds).
    pub async fn peek(&self) -> Recorder {
        let (reply, rx) = oneshot::channel();
        if self.0.send(Msg::Peek(reply)).is_err() {
            return Recorder::default();
        }
        rx.await.unwrap_or_default()
    }

    /// The last closed interval, if any.
    pub async fn last_interval(&self) -> Option<IntervalData> {
        let (reply, rx) = oneshot::channel();
        self.0.send(Msg::Last(reply)).ok()?;
        rx.await.ok().flatten()
    }

    /// The intervals closed after the first `seen` of the run, oldest
    /// first: at most the last [`RECENT_KEPT`] of them (for a reader that
    /// keeps its own series, as the live page does).
    pub async fn intervals_since(&self, seen: u64) -> Closed {
        let (reply, rx) = oneshot::channel();
        if self.0.send(Msg::Since(seen, reply)).is_err() {
            return Closed::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Starts (or, with `None`, ends) a phase: observations emitted after this
    /// call, until the next one, are also kept in that phase's recorder (a
    /// capacity step, warm-up included), except a run's own figures, which
    /// go to the step the run started in ([`RunStep`]).
    pub fn phase(&self, phase: Option<u32>) {
        let _ = self.0.send(Msg::Phase(phase));
    }

    /// Everything one phase recorded so far.
    pub async fn peek_phase(&self, phase: u32) -> Recorder {
        let (reply, rx) = oneshot::channel();
        if self.0.send(Msg::PeekPhase(phase, reply)).is_err() {
            return Recorder::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Everything so far: the whole run and its closed intervals (for checkpoints).
    pub async fn peek_all(&self) -> Collected {
        let (reply, rx) = oneshot::channel();
        if self.0.send(Msg::All(reply)).is_err() {
            return Collected::default();
        }
        rx.await.unwrap_or_default()
    }
}

/// The last closed intervals kept in memory for [`ObsSender::intervals_since`].
pub const RECENT_KEPT: usize = 16;

/// Histograms a healthy run may first record hours in (the first dropped
/// socket), allocated when the run starts: each is 184 KiB in the total and
/// in the interval under way, and allocating them mid-soak made the
/// generator's live heap step by 0.72-0.78 MiB at 21 to 50 minutes
/// (BENCHMARKS.md, "Soaks"). Empty histograms are not reported.
const RARE_HISTOGRAMS: &[&str] = &[
    crate::names::RECONNECT_TIME,
    crate::names::RECONNECT_BACKOFF,
];

/// The answer of [`ObsSender::intervals_since`].
#[derive(Debug, Clone, Default)]
pub struct Closed {
    /// How many intervals the run has closed.
    pub count: u64,
    /// The last of them, oldest first (those after the `seen` asked for).
    pub recent: Vec<IntervalData>,
}

pub use super::interval_store::{bounded, roll_up, MAX_KEPT_INTERVALS};

/// Receives each interval as it closes.
pub type IntervalSink = Box<dyn FnMut(&Interval) + Send>;

pub struct Collector {
    tx: mpsc::UnboundedSender<Msg>,
    backlog: Arc<Backlog>,
    handle: JoinHandle<Collected>,
}

/// One closed interval: what happened between `start_s` and `start_s + length_s`.
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Seconds since the run started.
    pub start_s: f64,
    pub length_s: f64,
    pub rec: Recorder,
}

/// Everything the collector gathered: the whole run and its intervals.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub total: Recorder,
    /// Closed intervals, compressed (histograms encoded), past
    /// [`MAX_KEPT_INTERVALS`] merged pairwise. Filled when asked for (a
    /// checkpoint, the run's end): while the run goes they are in an
    /// [`IntervalStore`], spilled to files when the collector has a folder.
    pub intervals: Vec<IntervalData>,
    /// The last closed interval.
    pub last: Option<IntervalData>,
    /// Per phase (capacity step), what it recorded.
    pub phases: std::collections::BTreeMap<u32, Recorder>,
}

impl Collector {
    /// Starts the collector task on the current runtime; every `interval` the
    /// observations since the last one are closed into an [`Interval`].
    pub fn start() -> Self {
        Collector::with_interval(std::time::Duration::from_secs(5))
    }

    pub fn with_interval(every: std::time::Duration) -> Self {
        Collector::with_sink(every, None)
    }

    /// Like [`Collector::with_interval`], also handing every closed interval to
    /// `sink` as it closes (the interval log writer).
    pub fn with_sink(every: std::time::Duration, sink: Option<IntervalSink>) -> Self {
        Collector::with_store(every, sink, IntervalStore::memory())
    }

    /// Like [`Collector::with_sink`], keeping the closed intervals in `store`
    /// (spilled to a run's folder: [`IntervalStore::spill_in`]).
    pub fn with_store(
        every: std::time::Duration,
        sink: Option<IntervalSink>,
        store: IntervalStore,
    ) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let backlog = Arc::new(Backlog::default());
        let queue = backlog.clone();
        let handle = tokio::spawn(async move {
            let t0 = tokio::time::Instant::now();
            let mut out = Collected::default();
            let mut current = Recorder::default();
            for rec in [&mut out.total, &mut current] {
                rec.preallocate(RARE_HISTOGRAMS);
            }
            let mut phase: Option<u32> = None;
            let mut closing = Closing::new(t0, sink, store);
            let mut tick = tokio::time::interval_at(t0 + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(Msg::Obs(o, step)) => {
                            if queue.queued.fetch_sub(1, Ordering::Relaxed) == BACKLOG_RESUME + 1 {
                                queue.drained.notify_waiters();
                            }
                            // A run's figure goes to the step it started in; anything else to the step under way.
                            if let Some(p) = step.map_or(phase, |s| s.0) {
                                out.phases.entry(p).or_default().apply(&o);
                            }
                            out.total.apply(&o);
                            if !matches!(o, Observation::Offending(_) | Observation::Failure(_)) {
                                current.apply(&o);
                            }
                        }
                        Some(Msg::Phase(p)) => {
                            phase = p;
                            if let Some(p) = p {
                                out.phases.entry(p).or_default();
                            }
                        }
                        Some(Msg::PeekPhase(p, reply)) => {
                            let _ = reply.send(out.phases.get(&p).cloned().unwrap_or_default());
                        }
                        Some(Msg::Peek(reply)) => {
                            let _ = reply.send(out.total.clone());
                        }
                        Some(Msg::Last(reply)) => {
                            let _ = reply.send(closing.recent.back().cloned());
                        }
                        Some(Msg::Since(seen, reply)) => {
                            let _ = reply.send(closing.since(seen));
                        }
                        Some(Msg::All(reply)) => {
                            let _ = reply.send(Collected {
                                total: out.total.clone(),
                                intervals: closing.store.all(),
                                last: closing.recent.back().cloned(),
                                phases: out.phases.clone(),
                            });
                        }
                        Some(Msg::End) | None => break,
                    },
                    _ = tick.tick() => closing.close(&mut current),
                }
            }
            // The last, partial interval.
            let recorded = current
                .histograms
                .iter()
                .any(|(k, h)| !h.is_empty() || !RARE_HISTOGRAMS.contains(&k.as_str()));
            if !current.counters.is_empty() || recorded {
                closing.close(&mut current);
            }
            out.intervals = closing.store.all();
            out.last = closing.recent.back().cloned();
            out
        });
        Collector {
            tx,
            backlog,
            handle,
        }
    }

    pub fn sender(&self) -> ObsSender {
        ObsSender(self.tx.clone(), self.backlog.clone())
    }

    /// A copy of everything recorded so far.
    pub async fn peek(&self) -> Recorder {
        self.sender().peek().await
    }

    /// The last closed interval, if any.
    pub async fn last_interval(&self) -> Option<IntervalData> {
        self.sender().last_interval().await
    }

    /// Ends collection: every observation emitted before this call is included.
    pub async fn finish(self) -> Collected {
        let _ = self.tx.send(Msg::End);
        self.handle.await.unwrap_or_default()
    }
}

/// The collector's side of closing intervals: where each goes as it closes.
struct Closing {
    t0: tokio::time::Instant,
    /// When the interval under way opened, seconds since `t0`.
    opened: f64,
    sink: Option<IntervalSink>,
    /// Every closed interval, compressed (~12 KiB each): spilled to files
    /// in a run, so the heap holds only the last few however long it is.
    store: IntervalStore,
    /// The last [`RECENT_KEPT`] closed, oldest first.
    recent: std::collections::VecDeque<IntervalData>,
    /// How many closed on the tick.
    closed: u64,
}

impl Closing {
    fn new(t0: tokio::time::Instant, sink: Option<IntervalSink>, store: IntervalStore) -> Self {
        Closing {
            t0,
            opened: 0.0,
            sink,
            store,
            recent: Default::default(),
            closed: 0,
        }
    }

    /// Closes the interval under way (`current`) and opens the next.
    fn close(&mut self, current: &mut Recorder) {
        let now = self.t0.elapsed().as_secs_f64();
        let mut interval = Interval {
            start_s: self.opened,
            length_s: now - self.opened,
            rec: std::mem::take(current),
        };
        if let Some(sink) = self.sink.as_mut() {
            sink(&interval);
        }
        let data = IntervalData::from_interval(&interval);
        self.store.push(data.clone());
        if self.recent.len() == RECENT_KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(data);
        self.closed += 1;
        // Reuse the histograms' memory for the next interval: allocating
        // and freeing them every interval fragments the heap over a soak.
        interval.rec.clear();
        *current = interval.rec;
        self.opened = now;
    }

    /// The intervals closed after the first `seen` (as many as are kept).
    fn since(&self, seen: u64) -> Closed {
        let new = self
            .closed
            .saturating_sub(seen)
            .min(self.recent.len() as u64) as usize;
        Closed {
            count: self.closed,
            recent: self
                .recent
                .range(self.recent.len() - new..)
                .cloned()
                .collect(),
        }
    }
}

impl IntervalData {
    /// A closed interval as stored.
    pub fn from_interval(i: &Interval) -> Self {
        IntervalData {
            start_s: i.start_s,
            length_s: i.length_s,
            counters: i.rec.counters.clone(),
            histograms: super::encoding::histograms_of(&i.rec),
        }
    }
}

#[cfg(test)]
mod tests;
