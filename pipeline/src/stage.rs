//! What a stage reads from and writes to.
//!
//! A stage holds a `Box<dyn Source<T>>` and a `Box<dyn Sink<U>>`, never a
//! concrete channel: in one process they are the two ends of [`bounded`];
//! cut across processes they would be a JetStream consumer and publisher.
//! A bounded queue is the backpressure: a full one makes the sender wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// What crosses a boundary that may become a process boundary: a body of a
/// known version with a key that makes a redelivery recognisable.
pub trait Message: Send + 'static {
    /// The wire version of this message type.
    const VERSION: u16;
    /// Equal for two deliveries of the same message (a replay after a
    /// restart, a resend): consumers drop or upsert by it.
    fn dedup_key(&self) -> String;
}

/// One answer of [`Source::recv`].
#[derive(Debug)]
pub enum Recv<T> {
    /// The next item.
    Item(T),
    /// Nothing arrived in time; the source is still open.
    Idle,
    /// Every sender is gone and the queue is empty: the stage ends.
    Closed,
}

/// Where a stage reads from.
pub trait Source<T>: Send {
    /// The next item, waiting at most `wait`.
    fn recv(&mut self, wait: Duration) -> Recv<T>;
}

/// Where a stage writes to. `send` waits while the queue is full.
pub trait Sink<T>: Send {
    /// Hands `item` on; gives it back when the reader is gone.
    fn send(&mut self, item: T) -> Result<(), Closed<T>>;
}

/// The reader of a sink is gone; the item comes back.
#[derive(Debug)]
pub struct Closed<T>(pub T);

impl<T> std::fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the next stage has stopped")
    }
}

impl<T: std::fmt::Debug> std::error::Error for Closed<T> {}

/// The sending end of [`bounded`].
#[derive(Debug)]
pub struct Sender<T> {
    tx: mpsc::SyncSender<T>,
    depth: Arc<AtomicU64>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            depth: self.depth.clone(),
        }
    }
}

/// The receiving end of [`bounded`].
#[derive(Debug)]
pub struct Receiver<T> {
    rx: mpsc::Receiver<T>,
    depth: Arc<AtomicU64>,
}

/// A queue of at most `capacity` items between two stages; `depth` counts
/// what is in it (the `queue_depth` of the reading stage's metrics).
pub fn bounded<T>(capacity: usize, depth: Arc<AtomicU64>) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = mpsc::sync_channel(capacity.max(1));
    (
        Sender {
            tx,
            depth: depth.clone(),
        },
        Receiver { rx, depth },
    )
}

impl<T: Send> Sink<T> for Sender<T> {
    fn send(&mut self, item: T) -> Result<(), Closed<T>> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.tx.send(item).map_err(|mpsc::SendError(item)| {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            Closed(item)
        })
    }
}

impl<T: Send> Source<T> for Receiver<T> {
    fn recv(&mut self, wait: Duration) -> Recv<T> {
        match self.rx.recv_timeout(wait) {
            Ok(item) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Recv::Item(item)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Recv::Idle,
            Err(mpsc::RecvTimeoutError::Disconnected) => Recv::Closed,
        }
    }
}

/// A sink that hands every item to a function (a subscriber in the same
/// thread, a test).
pub struct FnSink<F>(pub F);

impl<T, F: FnMut(T) + Send> Sink<T> for FnSink<F> {
    fn send(&mut self, item: T) -> Result<(), Closed<T>> {
        (self.0)(item);
        Ok(())
    }
}
