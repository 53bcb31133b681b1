//! The one bounded send of the data path. actix's mailbox bound does not
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

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Work {
        n: usize,
        credit: Credit,
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

    /// A receiver that counts what it really holds: messages received minus credits it
    /// has released. It keeps each credit a while (as a stage keeps one while it works),
    /// then lets the oldest go, one per tick.
    struct Holder {
        held: std::collections::VecDeque<Credit>,
        received: Arc<AtomicUsize>,
        released: Arc<AtomicUsize>,
        most_held: Arc<AtomicUsize>,
    }

    impl Actor for Holder {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.run_interval(Duration::from_millis(1), |holder, _| {
                if holder.held.pop_front().is_some() {
                    holder.released.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    }

    impl Handler<Work> for Holder {
        type Result = ();
        fn handle(&mut self, work: Work, _: &mut Context<Self>) {
            let received = self.received.fetch_add(1, Ordering::SeqCst) + 1;
            assert_eq!(work.n + 1, received, "order kept");
            self.held.push_back(work.credit);
            let held = received - self.released.load(Ordering::SeqCst);
            self.most_held.fetch_max(held, Ordering::SeqCst);
        }
    }

    /// The receiver's own count, not the semaphore's: were the sender not to wait for a
    /// credit, the holder would receive all 200 at once and hold far more than 3. Its
    /// mailbox is large on purpose, so that only the credits can bound it.
    #[test]
    fn a_fast_sender_never_has_more_than_the_credits_in_flight() {
        let system = System::new();
        let (received, released, most_held) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let credits = Credits::new("test", 3);
        system.block_on(async {
            let arbiter = Arbiter::new();
            let (r, l, m) = (received.clone(), released.clone(), most_held.clone());
            let addr = Holder::start_in_arbiter(&arbiter.handle(), move |ctx| {
                ctx.set_mailbox_capacity(1000);
                Holder {
                    held: Default::default(),
                    received: r,
                    released: l,
                    most_held: m,
                }
            });
            let sender = BoundedSender::new(addr.recipient(), &credits);
            let producer = std::thread::spawn(move || {
                for n in 0..200 {
                    sender.send_blocking(|credit| Work { n, credit }).unwrap();
                }
            });
            while released.load(Ordering::SeqCst) < 200 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            producer.join().unwrap();
            arbiter.stop();
        });
        assert_eq!(received.load(Ordering::SeqCst), 200);
        let most = most_held.load(Ordering::SeqCst);
        assert!(
            most <= 3,
            "the receiver held {most} messages with 3 credits"
        );
        assert!(
            most >= 2,
            "the receiver was never behind ({most}): the test tests nothing"
        );
    }
}
