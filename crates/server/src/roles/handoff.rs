//! Handing a connection from the thread that accepted it to the thread that will read it.
//!
//! memcached's dispatch_conn_new pushes the fd onto the chosen worker's queue and writes a
//! byte to its notify pipe. Here each reader has an [`Inbox`]: an unbounded queue of fds and
//! an eventfd [`Waker`] whose writes coalesce, so a burst of handoffs to one reader costs one
//! wake-up. The [`Balancer`] chooses the reader.

use crate::connection::Connection;
use crate::observe::stats::ThreadStats;
use crate::roles::conn_limit::ConnLimit;
use crate::Balance;
use crossbeam_channel::{Receiver, Sender};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use sys::socket::Accepted;
use sys::Waker;

/// A connection handed to a reader.
pub(crate) enum Handed {
    /// A socket as accepted.
    Accepted(Accepted),
    /// A socket an acceptor ran the TLS handshake on, with the connection's state: the
    /// established session and any request bytes that came with the handshake's last
    /// flight (the peer and accept time are in it).
    Established(OwnedFd, Box<Connection>),
}

/// A reader's queue of connections handed to it. Cloned once per acceptor that may feed
/// the reader: several acceptors can hand connections to one reader.
pub(crate) struct Inbox {
    tx: Sender<Handed>,
    waker: Arc<Waker>,
    stats: Arc<ThreadStats>,
    senders: Arc<AtomicUsize>,
    limit: Arc<ConnLimit>,
}

/// The reader's end of its inbox.
pub(crate) struct InboxReceiver {
    rx: Receiver<Handed>,
    stats: Arc<ThreadStats>,
    senders: Arc<AtomicUsize>,
}

pub(crate) fn inbox(
    waker: Arc<Waker>,
    stats: Arc<ThreadStats>,
    limit: Arc<ConnLimit>,
) -> (Inbox, InboxReceiver) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let senders = Arc::new(AtomicUsize::new(1));
    (
        Inbox {
            tx,
            waker,
            stats: stats.clone(),
            senders: senders.clone(),
            limit,
        },
        InboxReceiver { rx, stats, senders },
    )
}

impl Inbox {
    /// Queue `fd` for the reader and wake it. The count rises before the send so that the
    /// balancer's next look at this reader already sees the connection.
    fn push(&self, fd: Handed) {
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

impl Clone for Inbox {
    fn clone(&self) -> Self {
        self.senders.fetch_add(1, Ordering::SeqCst);
        Inbox {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
            stats: self.stats.clone(),
            senders: self.senders.clone(),
            limit: self.limit.clone(),
        }
    }
}

impl Drop for Inbox {
    /// An acceptor is gone (shutdown). When it was the last one feeding this reader, tell the
    /// reader no more connections will come, so its drain can finish — not when the first of
    /// several goes, which would end the drain while others still hand connections over.
    fn drop(&mut self) {
        if self.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.waker.wake();
        }
    }
}

impl InboxReceiver {
    /// Every acceptor has dropped its end and everything they sent has been taken.
    pub(crate) fn is_disconnected(&self) -> bool {
        self.senders.load(Ordering::SeqCst) == 0 && self.rx.is_empty()
    }

    /// The next handed-over connection, if any.
    pub(crate) fn pop(&self) -> Option<Handed> {
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
    pub(crate) fn dispatch(&mut self, fd: Accepted) {
        self.hand(Handed::Accepted(fd));
    }

    /// Hand a connection (a socket, or a socket with its state) to the reader this strategy
    /// picks.
    pub(crate) fn hand(&mut self, handed: Handed) {
        let i = self.pick();
        self.inboxes[i].push(handed);
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
    use crate::observe::stats::Role;

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
