//! The shutdown signal: one flag, and the wakers of every event loop that must see it.
//!
//! Threads are never abandoned: a trigger sets the flag and writes each loop's eventfd, and
//! each loop then closes its listeners, drains its connections and returns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use sys::Waker;

/// Shared by the server handle and every event loop.
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    requested: AtomicBool,
    wakers: Mutex<Vec<Arc<Waker>>>,
}

impl Shutdown {
    pub(crate) fn register(&self, waker: Arc<Waker>) {
        self.wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
    }

    /// Ask every loop to drain and stop.
    pub(crate) fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        for waker in self.wakers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            waker.wake();
        }
    }

    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}
