//! Waking a sleeping event loop from another thread: an eventfd in the loop's epoll.
//!
//! memcached wakes a worker with a byte on a notify pipe; an eventfd does the same with one fd
//! and a counter that never fills. Writes are coalesced: while a wake-up is pending and not
//! yet seen by the loop, further `wake` calls cost one atomic and no syscall, so an acceptor
//! handing a burst of connections to one reader makes one `write`, not one per connection.

use rustix::event::{eventfd, EventfdFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// An eventfd with a pending flag.
///
/// # Atomic Ordering
/// The producer publishes work (a channel send) and then calls [`Waker::wake`]; the loop calls
/// [`Waker::reset`] and then drains its queues. `pending` is swapped and stored with `SeqCst`
/// so that either the producer sees `false` and writes the eventfd, or the loop's drain, which
/// comes after its store of `false`, sees the work. No wake-up is lost either way.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    /// A new non-blocking eventfd.
    pub fn new() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::NONBLOCK | EventfdFlags::CLOEXEC)?;
        Ok(Waker {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    /// Wake the loop that polls this eventfd, unless a wake-up is already pending.
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            // A full counter (2^64-2 pending wakes) cannot happen: the loop resets it.
            let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        }
    }

    /// Called by the loop when the eventfd is readable, before it drains its queues.
    pub fn reset(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
        self.pending.store(false, Ordering::SeqCst);
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Epoll, Events, Interest};
    use std::time::Duration;

    #[test]
    fn wake_is_seen_once_and_reset_rearms() {
        let ep = Epoll::new().unwrap();
        let waker = Waker::new().unwrap();
        ep.add(&waker, 1, Interest::Readable).unwrap();
        let mut events = Events::with_capacity(4);
        waker.wake();
        waker.wake();
        ep.wait(&mut events, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(events.len(), 1);
        waker.reset();
        ep.wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        assert!(events.is_empty(), "reset must drain the counter");
        waker.wake();
        ep.wait(&mut events, Some(Duration::from_secs(1))).unwrap();
        assert_eq!(events.len(), 1);
    }
}
