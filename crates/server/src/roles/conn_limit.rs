//! `--max-conns`: the process-wide ceiling on open connections.
//!
//! At the ceiling, acceptors stop calling accept and stop polling their listeners: new
//! connections wait in the kernel's accept queue (and past its backlog, the kernel pushes
//! back on clients) instead of being accepted and dropped, or exhausting file descriptors.
//! When a connection closes and the count falls below the ceiling, the paused acceptors are
//! woken to resume.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use sys::Waker;

/// Open-connection count against a ceiling.
///
/// # Atomic Ordering
/// `open` is a counter compared with a constant; it guards no other memory, so `Relaxed`
/// would do. `AcqRel`/`Acquire` are used so that an acceptor that read "below the ceiling"
/// after its wake-up sees the count the releasing thread left.
#[derive(Debug)]
pub(crate) struct ConnLimit {
    open: AtomicUsize,
    max: usize,
    acceptors: Mutex<Vec<Arc<Waker>>>,
}

impl ConnLimit {
    pub(crate) fn new(max: usize) -> Self {
        ConnLimit {
            open: AtomicUsize::new(0),
            max: max.max(1),
            acceptors: Mutex::new(Vec::new()),
        }
    }

    /// An acceptor to wake when room appears.
    pub(crate) fn watch(&self, waker: Arc<Waker>) {
        self.acceptors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(waker);
    }

    /// Claim room for one more connection, before accepting it.
    pub(crate) fn try_acquire(&self) -> bool {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.release();
            return false;
        }
        true
    }

    /// A connection closed (or a claimed slot went unused).
    pub(crate) fn release(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) >= self.max {
            for waker in self
                .acceptors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                waker.wake();
            }
        }
    }

    /// Count a connection that is already accepted, ceiling or not (io_uring's multishot
    /// accept takes whatever arrives; it is stopped well before the ceiling).
    pub(crate) fn force_acquire(&self) {
        self.open.fetch_add(1, Ordering::AcqRel);
    }

    /// How many more connections fit under the ceiling.
    pub(crate) fn room(&self) -> usize {
        self.max.saturating_sub(self.open.load(Ordering::Acquire))
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_ceiling_and_frees_on_release() {
        let limit = ConnLimit::new(2);
        assert!(limit.try_acquire());
        assert!(limit.try_acquire());
        assert!(!limit.try_acquire());
        assert_eq!(limit.room(), 0);
        limit.release();
        assert_eq!(limit.room(), 1);
        assert!(limit.try_acquire());
    }
}
