//! The one bounded send of the data path (STACK.md trap 1). actix's mailbox bound does not
//! make a sender wait, so each data-path actor hands out credits: a semaphore with as many
//! permits as its mailbox holds. A sender first takes a credit — waiting while the receiver
//! is behind — puts it inside the message and `try_send`s; the receiver drops the credit
//! when it has done the work. Memory on the data path is therefore bounded by
//! credits × message size, whatever the size of the table.

use std::sync::Arc;

use actix::prelude::*;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Proof that the receiver has room for one message. Dropping it gives the room back.
#[derive(Debug)]
pub struct Credit {
    _permit: OwnedSemaphorePermit,
    /// The stage's queue-depth gauge: up while the message waits or is worked on.
    depth: Gauge,
}

impl Drop for Credit {
    fn drop(&mut self) {
        self.depth.dec();
    }
}

/// The receiver is gone (stopped, failed or finished): nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// A sender that never has more than `capacity` messages in the receiver's mailbox.
pub struct BoundedSender<M: Message + Send>
where
    M::Result: Send,
{
    recipient: Recipient<M>,
    credits: Arc<Semaphore>,
    depth: Gauge,
}

impl<M: Message + Send> Clone for BoundedSender<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        BoundedSender {
            recipient: self.recipient.clone(),
            credits: self.credits.clone(),
            depth: self.depth.clone(),
        }
    }
}

impl<M: Message + Send + 'static> BoundedSender<M>
where
    M::Result: Send,
{
    /// `credits` must be the receiver's own semaphore (see [`Credits`]).
    pub fn new(recipient: Recipient<M>, credits: &Credits) -> Self {
        BoundedSender {
            recipient,
            credits: credits.semaphore.clone(),
            depth: credits.depth.clone(),
        }
    }

    fn credit(&self, permit: OwnedSemaphorePermit) -> Credit {
        self.depth.inc();
        Credit {
            _permit: permit,
            depth: self.depth.clone(),
        }
    }

    /// Send from a plain OS thread (the extractor), waiting for a credit.
    pub fn send_blocking(&self, make: impl FnOnce(Credit) -> M) -> Result<(), Closed> {
        let permit = futures::executor::block_on(self.credits.clone().acquire_owned())
            .map_err(|_| Closed)?;
        self.deliver(make(self.credit(permit)))
    }

    /// Send from async code, waiting for a credit.
    pub async fn send(&self, make: impl FnOnce(Credit) -> M) -> Result<(), Closed> {
        let permit = self
            .credits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Closed)?;
        self.deliver(make(self.credit(permit)))
    }

    fn deliver(&self, message: M) -> Result<(), Closed> {
        match self.recipient.try_send(message) {
            Ok(()) => Ok(()),
            Err(SendError::Closed(_)) => Err(Closed),
            Err(SendError::Full(_)) => {
                // The mailbox is sized above the credit count, so this is a wiring bug.
                debug_assert!(false, "mailbox full although a credit was held");
                Err(Closed)
            }
        }
    }
}

/// A receiver's credits: created with the actor, closed when it stops so that waiting
/// senders wake up and see [`Closed`].
#[derive(Debug, Clone)]
pub struct Credits {
    semaphore: Arc<Semaphore>,
    capacity: usize,
    depth: Gauge,
}

impl Credits {
    /// `stage` names the receiver in the `dbhaul_stage_queue_depth` metric.
    pub fn new(stage: &'static str, capacity: usize) -> Credits {
        Credits {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
            depth: crate::telemetry::metrics::queue_depth(stage),
        }
    }

    /// The mailbox capacity the receiver must set: a few above the credits, for the
    /// control messages (abort) that travel without credit.
    pub fn mailbox_capacity(&self) -> usize {
        self.capacity + 4
    }

    /// Messages sent and not yet done with: the receiver's queue depth.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.semaphore.available_permits()
    }

    pub fn close(&self) {
        self.semaphore.close();
    }
}

pub use crate::model::CancelSwitch;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Slow {
        seen: Arc<AtomicUsize>,
    }

    impl Actor for Slow {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Work {
        n: usize,
        _credit: Credit,
    }

    impl Handler<Work> for Slow {
        type Result = ();
        fn handle(&mut self, work: Work, _: &mut Context<Self>) {
            assert_eq!(work.n, self.seen.load(Ordering::SeqCst), "order kept");
            std::thread::sleep(Duration::from_millis(2));
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Gate;

    impl Actor for Gate {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Held {
        open: std::sync::mpsc::Receiver<()>,
        _credit: Credit,
    }

    impl Handler<Held> for Gate {
        type Result = ();
        fn handle(&mut self, held: Held, _: &mut Context<Self>) {
            let _ = held.open.recv();
        }
    }

    #[test]
    fn the_queue_depth_gauge_counts_the_messages_not_yet_done_with() {
        let system = System::new();
        let credits = Credits::new("unit-depth", 2);
        let depth = crate::telemetry::metrics::queue_depth("unit-depth");
        system.block_on(async {
            let arbiter = Arbiter::new();
            let c = credits.clone();
            let addr = Gate::start_in_arbiter(&arbiter.handle(), move |ctx| {
                ctx.set_mailbox_capacity(c.mailbox_capacity());
                Gate
            });
            let sender = BoundedSender::new(addr.recipient(), &credits);
            let (open_first, first) = std::sync::mpsc::channel();
            let (open_second, second) = std::sync::mpsc::channel();
            for open in [first, second] {
                sender
                    .send(|credit| Held {
                        open,
                        _credit: credit,
                    })
                    .await
                    .unwrap();
            }
            // One being handled, one waiting: both count.
            assert_eq!(depth.get(), 2);
            open_first.send(()).unwrap();
            open_second.send(()).unwrap();
            while depth.get() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(credits.in_flight(), 0);
            arbiter.stop();
        });
    }

    /// Counted apart from the credits (a count read off the semaphore would agree with it
    /// whatever it let through): messages whose send returned, minus those handled.
    #[test]
    fn a_fast_sender_never_has_more_than_the_credits_in_flight() {
        let system = System::new();
        let seen = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let credits = Credits::new("test", 3);
        system.block_on(async {
            let arbiter = Arbiter::new();
            let (s, c) = (seen.clone(), credits.clone());
            let addr = Slow::start_in_arbiter(&arbiter.handle(), move |ctx| {
                ctx.set_mailbox_capacity(c.mailbox_capacity());
                Slow { seen: s }
            });
            let sender = BoundedSender::new(addr.recipient(), &credits);
            let (done, most) = (seen.clone(), max_in_flight.clone());
            let producer = std::thread::spawn(move || {
                for n in 0..200 {
                    sender
                        .send_blocking(|credit| Work { n, _credit: credit })
                        .unwrap();
                    let in_flight = n + 1 - done.load(Ordering::SeqCst);
                    most.fetch_max(in_flight, Ordering::SeqCst);
                }
            });
            while seen.load(Ordering::SeqCst) < 200 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            producer.join().unwrap();
            arbiter.stop();
        });
        assert_eq!(seen.load(Ordering::SeqCst), 200);
        assert!(
            max_in_flight.load(Ordering::SeqCst) <= 3,
            "{max_in_flight:?}"
        );
    }
}
