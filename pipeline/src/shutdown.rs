//! One stop signal for the stages that have no input to close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A cloneable stop signal: threads poll or wait on it; async tasks await
/// [`Shutdown::wait_async`] (mini-redis's `Shutdown`, vector's `ShutdownSignal`).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stopped: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    notify: tokio::sync::watch::Sender<bool>,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            stopped: AtomicBool::new(false),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            notify: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Shutdown {
    /// A signal not yet given.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Gives the signal (idempotent).
    pub fn trigger(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.wake.notify_all();
        drop(_guard);
        self.inner.notify.send_replace(true);
    }

    /// Whether the signal was given.
    pub fn is_triggered(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Sleeps up to `wait`, waking early on the signal; returns whether it was given.
    pub fn wait_timeout(&self, wait: Duration) -> bool {
        if self.is_triggered() {
            return true;
        }
        let guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .inner
            .wake
            .wait_timeout_while(guard, wait, |_| !self.is_triggered());
        self.is_triggered()
    }

    /// Resolves once the signal is given.
    pub async fn wait_async(&self) {
        let mut rx = self.inner.notify.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
