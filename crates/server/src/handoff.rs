//! Handing a connection from the thread that accepted it to the thread that will read it.
//!
//! memcached's dispatch_conn_new pushes the fd onto the chosen worker's queue and writes a
//! byte to its notify pipe. Here each reader has an [`Inbox`]: an unbounded queue of fds and
//! an eventfd [`Waker`] whose writes coalesce, so a burst of handoffs to one reader costs one
//! wake-up. The [`Balancer`] chooses the reader.

use crate::conn_limit::ConnLimit;
use crate::stats::ThreadStats;
use crate::Balance;
use crossbeam_channel::{Receiver, Sender};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use sys::Waker;

/// A reader's queue of connections handed to it.
pub(crate) struct Inbox {
    tx: Sender<OwnedFd>,
    waker: Arc<Waker>,
    stats: Arc<ThreadStats>,
    closed: Arc<AtomicBool>,
    limit: Arc<ConnLimit>,
}

/// The reader's end of its inbox.
pub(crate) struct InboxReceiver {
    rx: Receiver<OwnedFd>,
    stats: Arc<ThreadStats>,
    closed: Arc<AtomicBool>,
}

pub(crate) fn inbox(
    waker: Arc<Waker>,
    stats: Arc<ThreadStats>,
    limit: Arc<ConnLimit>,
) -> (Inbox, InboxReceiver) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let closed = Arc::new(AtomicBool::new(false));
    (
        Inbox {
            tx,
            waker,
            stats: stats.clone(),
            closed: closed.clone(),
            limit,
        },
        InboxReceiver { rx, stats, closed },
    )
}

impl Inbox {
    /// Queue `fd` for the reader and wake it. The count rises before the send so that the
    /// balancer's next look at this reader already sees the connection.
    fn push(&self, fd: OwnedFd) {
        self.stats.handoff_push();
        if self.tx.send(fd).is_err() {
            // The reader has exited (shutdown): the fd is dropped, closing the connection.
            self.stats.handoff_pop();
            self.limit.release();
            return;
        }
        self.waker.wake();
    }
}

impl Drop for Inbox {
    /// The acceptor is gone (shutdown): tell the reader no more connections will come, so
    /// its drain can finish.
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

impl InboxReceiver {
    /// The acceptor has dropped its end and everything it sent has been taken.
    pub(crate) fn is_disconnected(&self) -> bool {
        self.closed.load(Ordering::SeqCst) && self.rx.is_empty()
    }

    /// The next handed-over connection, if any.
    pub(crate) fn pop(&self) -> Option<OwnedFd> {
        let fd = self.rx.try_recv().ok()?;
        self.stats.handoff_pop();
        Some(fd)
    }
}

/// Chooses the reader for each new connection.
pub(crate) struct Balancer {
    kind: Balance,
    inboxes: Vec<Inbox>,
    next: usize,
    rng: u64,
}

impl Balancer {
    pub(crate) fn new(kind: Balance, inboxes: Vec<Inbox>) -> Self {
        assert!(!inboxes.is_empty(), "a balancer needs at least one reader");
        Balancer {
            kind,
            inboxes,
            next: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Hand `fd` to the reader this strategy picks.
    pub(crate) fn dispatch(&mut self, fd: OwnedFd) {
        let i = self.pick();
        self.inboxes[i].push(fd);
    }

    fn load(&self, i: usize) -> u64 {
        self.inboxes[i].stats.load()
    }

    fn pick(&mut self) -> usize {
        let n = self.inboxes.len();
        match self.kind {
            Balance::RoundRobin => {
                let i = self.next % n;
                self.next = self.next.wrapping_add(1);
                i
            }
            Balance::LeastConns => {
                // Ties go round-robin, so an idle server still spreads its first connections.
                let start = self.next % n;
                self.next = self.next.wrapping_add(1);
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|&i| self.load(i))
                    .unwrap_or(0)
            }
            Balance::P2c => {
                if n == 1 {
                    return 0;
                }
                let a = (self.random() % n as u64) as usize;
                let mut b = (self.random() % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                if self.load(b) < self.load(a) {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// xorshift64: two candidates per connection need speed, not cryptography.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Role;

    fn balancer(kind: Balance, n: usize) -> (Balancer, Vec<Arc<ThreadStats>>) {
        let mut inboxes = Vec::new();
        let mut all = Vec::new();
        for i in 0..n {
            let stats = Arc::new(ThreadStats::new(&format!("reader-{i}"), Role::Reader));
            let limit = Arc::new(ConnLimit::new(100));
            let (inbox, rx) = inbox(Arc::new(Waker::new().unwrap()), stats.clone(), limit);
            std::mem::forget(rx); // keep the channel open
            inboxes.push(inbox);
            all.push(stats);
        }
        (Balancer::new(kind, inboxes), all)
    }

    #[test]
    fn round_robin_rotates() {
        let (mut b, _) = balancer(Balance::RoundRobin, 3);
        let picks: Vec<_> = (0..6).map(|_| b.pick()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_conns_avoids_the_loaded_reader() {
        let (mut b, stats) = balancer(Balance::LeastConns, 3);
        for _ in 0..5 {
            stats[0].opened();
            stats[1].opened();
        }
        for _ in 0..4 {
            assert_eq!(b.pick(), 2);
        }
    }

    #[test]
    fn p2c_never_picks_the_more_loaded_of_two() {
        let (mut b, stats) = balancer(Balance::P2c, 2);
        for _ in 0..10 {
            stats[1].opened();
        }
        for _ in 0..20 {
            assert_eq!(b.pick(), 0);
        }
    }
}
