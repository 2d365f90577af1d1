//! The collector: one task that owns the run's [`Recorder`] and applies every
//! observation the engine sends, in arrival order.

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Observation, Recorder};

enum Msg {
    Obs(Observation),
    /// Reply with a copy of everything recorded so far.
    Peek(oneshot::Sender<Recorder>),
    End,
}

/// Cheap, cloneable handle the engine emits observations through. Emitting never
/// blocks and never fails the caller: after the collector ended, observations
/// are dropped.
#[derive(Clone)]
pub struct ObsSender(mpsc::UnboundedSender<Msg>);

impl ObsSender {
    pub fn emit(&self, obs: Observation) {
        let _ = self.0.send(Msg::Obs(obs));
    }
    pub fn sample(&self, metric: &str, us: u64) {
        self.emit(Observation::sample(metric, us));
    }
    pub fn count(&self, counter: impl Into<String>) {
        self.emit(Observation::count(counter));
    }
    pub fn count_n(&self, counter: impl Into<String>, n: u64) {
        self.emit(Observation::count_n(counter, n));
    }
}

pub struct Collector {
    tx: mpsc::UnboundedSender<Msg>,
    handle: JoinHandle<Recorder>,
}

impl Collector {
    /// Starts the collector task on the current runtime.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let handle = tokio::spawn(async move {
            let mut rec = Recorder::default();
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Obs(o) => rec.apply(&o),
                    Msg::Peek(reply) => {
                        let _ = reply.send(rec.clone());
                    }
                    Msg::End => break,
                }
            }
            rec
        });
        Collector { tx, handle }
    }

    pub fn sender(&self) -> ObsSender {
        ObsSender(self.tx.clone())
    }

    /// A copy of everything recorded so far (for live progress).
    pub async fn peek(&self) -> Recorder {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Peek(reply)).is_err() {
            return Recorder::default();
        }
        rx.await.unwrap_or_default()
    }

    /// Ends collection: every observation emitted before this call is included.
    pub async fn finish(self) -> Recorder {
        let _ = self.tx.send(Msg::End);
        self.handle.await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn everything_emitted_before_finish_is_kept() {
        let c = Collector::start();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let s = c.sender();
            tasks.push(tokio::spawn(async move {
                for i in 0..500u64 {
                    s.sample("ttfe", t * 1000 + i + 1);
                    s.count("runs.ok");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mid = c.peek().await;
        assert_eq!(mid.counter("runs.ok"), 4000);
        let rec = c.finish().await;
        assert_eq!(rec.counter("runs.ok"), 4000);
        assert_eq!(rec.histograms["ttfe"].len(), 4000);
    }
}
