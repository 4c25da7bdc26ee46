//! Per-thread counters: what each thread accepted, holds, served and moved.
//!
//! Each thread owns one [`ThreadStats`], padded to its own cache lines so that two threads
//! counting never contend for a line; only the owner writes most fields. Readers (the exit
//! table now, the admin endpoint later) load them with `Relaxed`.
//!
//! # Atomic Ordering
//! Every counter is independent and monotonic (or a gauge) and no other memory is published
//! through it, so `Relaxed` suffices everywhere.

use crate::observe::queue_wait::{WaitHistogram, WaitSnapshot};
/// The thread roles the counters are kept for (defined with the shape they make up).
pub use crate::shape::topology::Role;
use crate::tls::{Handshake, TlsFailure};
use crossbeam_utils::CachePadded;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// One thread's counters.
#[derive(Debug)]
pub struct ThreadStats {
    name: String,
    role: Role,
    c: CachePadded<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    handoff_queued: AtomicU64,
    panics: AtomicU64,
    aborted: AtomicU64,
    cancelled: AtomicU64,
    sent_back: AtomicU64,
    lost: AtomicU64,
    busy_ns: AtomicU64,
    accept_wait: WaitHistogram,
    receive_wait: WaitHistogram,
    tls: TlsCounters,
}

/// TLS handshakes a thread ran: how long each took (full and resumed apart), how many are
/// going on, and why the others failed.
#[derive(Debug, Default)]
struct TlsCounters {
    full: WaitHistogram,
    resumed: WaitHistogram,
    in_flight: AtomicI64,
    failures: [AtomicU64; TlsFailure::ALL.len()],
}

/// A copy of one thread's TLS counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsSnapshot {
    /// Full handshakes completed, by how long they took (ClientHello's first byte to done).
    pub full: WaitSnapshot,
    /// Resumed handshakes completed, by how long they took.
    pub resumed: WaitSnapshot,
    /// Handshakes going on now.
    pub in_flight: u64,
    /// Connections TLS ended, by cause ([`TlsFailure::name`]).
    pub failures: BTreeMap<String, u64>,
}

impl TlsSnapshot {
    /// Whether this thread never saw a TLS connection.
    pub fn is_empty(&self) -> bool {
        self.full.count() == 0
            && self.resumed.count() == 0
            && self.in_flight == 0
            && self.failures.values().all(|&n| n == 0)
    }
}

/// A point-in-time copy of one thread's counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThreadSnapshot {
    /// Thread name, as in /proc/PID/task/*/comm.
    pub name: String,
    /// What it does.
    pub role: Role,
    /// Connections it accepted.
    pub accepted: u64,
    /// Connections it holds open now.
    pub open: u64,
    /// Requests it answered (workers: handled).
    pub requests: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// Items waiting in its hand-off queue (dispatch: fds; pool: requests).
    pub handoff_queued: u64,
    /// Handler panics turned into 500s.
    pub panics: u64,
    /// Connections the client abandoned: a reset, or a FIN in the middle of a request.
    /// Closed at once rather than left to a timeout.
    #[serde(default)]
    pub aborted: u64,
    /// A service's answers dropped unfinished because their connection closed first (the
    /// client went away, or a drain ran out of time): their futures were cancelled.
    #[serde(default)]
    pub cancelled: u64,
    /// Routes of a service this reader had learned to answer itself and sent back to the
    /// workers, because one of their answers ran long or had to wait here
    /// ([`InlineAnswers::Learned`](crate::InlineAnswers::Learned)).
    #[serde(default)]
    pub sent_back: u64,
    /// Connections passed to this process that the kernel discarded before it could take
    /// them (its descriptor table was full: MSG_CTRUNC). Each is a client whose
    /// connection was closed unanswered.
    #[serde(default)]
    pub lost: u64,
    /// Nanoseconds spent outside epoll_wait (or, for workers, running handlers).
    pub busy_ns: u64,
    /// How long the connections this thread read waited in the accept queue.
    #[serde(default)]
    pub accept_wait: WaitSnapshot,
    /// How long the requests this thread read waited in the receive queue.
    #[serde(default)]
    pub receive_wait: WaitSnapshot,
    /// Its TLS handshakes (empty on a plain-HTTP server).
    #[serde(default)]
    pub tls: TlsSnapshot,
}

impl ThreadSnapshot {
    /// The accept-queue and receive-queue waits this thread counted since `before` (an
    /// earlier snapshot of the same thread; `None`: since start).
    pub fn waits_since(&self, before: Option<&ThreadSnapshot>) -> (WaitSnapshot, WaitSnapshot) {
        match before {
            Some(b) => (
                self.accept_wait.since(&b.accept_wait),
                self.receive_wait.since(&b.receive_wait),
            ),
            None => (self.accept_wait.clone(), self.receive_wait.clone()),
        }
    }

    /// The full and the resumed TLS handshakes this thread completed since `before` (as
    /// [`ThreadSnapshot::waits_since`]).
    pub fn handshakes_since(
        &self,
        before: Option<&ThreadSnapshot>,
    ) -> (WaitSnapshot, WaitSnapshot) {
        match before {
            Some(b) => (
                self.tls.full.since(&b.tls.full),
                self.tls.resumed.since(&b.tls.resumed),
            ),
            None => (self.tls.full.clone(), self.tls.resumed.clone()),
        }
    }
}

impl ThreadStats {
    pub(crate) fn new(name: &str, role: Role) -> Self {
        ThreadStats {
            name: name.to_string(),
            role,
            c: CachePadded::new(Counters::default()),
        }
    }

    /// The thread's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn accepted(&self) {
        self.c.accepted.fetch_add(1, Relaxed);
    }
    pub(crate) fn opened(&self) {
        self.c.open.fetch_add(1, Relaxed);
    }
    pub(crate) fn closed(&self) {
        self.c.open.fetch_sub(1, Relaxed);
    }
    /// Connections this thread has open now.
    pub(crate) fn open(&self) -> u64 {
        self.c.open.load(Relaxed)
    }
    pub(crate) fn requests(&self, n: u64) {
        self.c.requests.fetch_add(n, Relaxed);
    }
    pub(crate) fn handoff_push(&self) {
        self.c.handoff_queued.fetch_add(1, Relaxed);
    }
    pub(crate) fn handoff_pop(&self) {
        self.c.handoff_queued.fetch_sub(1, Relaxed);
    }
    pub(crate) fn panicked(&self) {
        self.c.panics.fetch_add(1, Relaxed);
    }
    pub(crate) fn lost(&self) {
        self.c.lost.fetch_add(1, Relaxed);
    }

    pub(crate) fn aborted(&self) {
        self.c.aborted.fetch_add(1, Relaxed);
    }
    pub(crate) fn cancelled(&self, n: u64) {
        self.c.cancelled.fetch_add(n, Relaxed);
    }
    pub(crate) fn sent_back(&self) {
        self.c.sent_back.fetch_add(1, Relaxed);
    }
    pub(crate) fn accept_waited(&self, wait: std::time::Duration) {
        self.c.accept_wait.record(wait);
    }
    pub(crate) fn receive_waited(&self, wait: std::time::Duration, weight: u32) {
        self.c.receive_wait.record_for(wait, weight);
    }
    /// Add what a connection core counted, and clear it for the next call.
    pub(crate) fn add(&self, tally: &mut crate::connection::Tally) {
        if tally.is_empty() {
            return;
        }
        if tally.requests > 0 {
            self.requests(tally.requests);
        }
        if tally.bytes_in > 0 {
            self.c.bytes_in.fetch_add(tally.bytes_in, Relaxed);
        }
        if tally.bytes_out > 0 {
            self.c.bytes_out.fetch_add(tally.bytes_out, Relaxed);
        }
        for wait in tally.accept_waits.drain(..) {
            self.accept_waited(wait);
        }
        for (wait, weight) in tally.receive_waits.drain(..) {
            self.receive_waited(wait, weight);
        }
        if !tally.tls.is_empty() {
            let t = std::mem::take(&mut tally.tls);
            for (kind, took) in t.handshakes {
                match kind {
                    Handshake::Full => self.c.tls.full.record(took),
                    Handshake::Resumed => self.c.tls.resumed.record(took),
                }
            }
            for (counter, n) in self.c.tls.failures.iter().zip(t.failures) {
                if n > 0 {
                    counter.fetch_add(u64::from(n), Relaxed);
                }
            }
            self.c.tls.in_flight.fetch_add(t.in_flight, Relaxed);
        }
        tally.requests = 0;
        tally.bytes_in = 0;
        tally.bytes_out = 0;
    }
    pub(crate) fn busy(&self, ns: u64) {
        self.c.busy_ns.fetch_add(ns, Relaxed);
    }

    /// Open connections plus connections handed over but not yet picked up: the load figure
    /// `least-conns` and `p2c` compare.
    pub(crate) fn load(&self) -> u64 {
        self.c.open.load(Relaxed) + self.c.handoff_queued.load(Relaxed)
    }

    /// Copy the counters.
    pub fn snapshot(&self) -> ThreadSnapshot {
        ThreadSnapshot {
            name: self.name.clone(),
            role: self.role,
            accepted: self.c.accepted.load(Relaxed),
            open: self.c.open.load(Relaxed),
            requests: self.c.requests.load(Relaxed),
            bytes_in: self.c.bytes_in.load(Relaxed),
            bytes_out: self.c.bytes_out.load(Relaxed),
            handoff_queued: self.c.handoff_queued.load(Relaxed),
            panics: self.c.panics.load(Relaxed),
            aborted: self.c.aborted.load(Relaxed),
            cancelled: self.c.cancelled.load(Relaxed),
            sent_back: self.c.sent_back.load(Relaxed),
            lost: self.c.lost.load(Relaxed),
            busy_ns: self.c.busy_ns.load(Relaxed),
            accept_wait: self.c.accept_wait.snapshot(),
            receive_wait: self.c.receive_wait.snapshot(),
            tls: TlsSnapshot {
                full: self.c.tls.full.snapshot(),
                resumed: self.c.tls.resumed.snapshot(),
                in_flight: self.c.tls.in_flight.load(Relaxed).max(0) as u64,
                failures: TlsFailure::ALL
                    .iter()
                    .map(|f| {
                        let n = self.c.tls.failures[f.index()].load(Relaxed);
                        (f.name().to_string(), n)
                    })
                    .collect(),
            },
        }
    }
}

/// Every thread's counters, in start order.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    threads: Mutex<Vec<Arc<ThreadStats>>>,
}

impl StatsRegistry {
    pub(crate) fn add(&self, name: &str, role: Role) -> Arc<ThreadStats> {
        let stats = Arc::new(ThreadStats::new(name, role));
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(stats.clone());
        stats
    }

    /// A snapshot of every thread.
    pub fn snapshot(&self) -> Vec<ThreadSnapshot> {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|t| t.snapshot())
            .collect()
    }

    /// The per-thread table printed when the server exits.
    pub fn table(&self) -> String {
        let rows = self.snapshot();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10} {:<8} {:>9} {:>6} {:>10} {:>12} {:>12} {:>6} {:>9}",
            "thread",
            "role",
            "accepted",
            "open",
            "requests",
            "bytes_in",
            "bytes_out",
            "panics",
            "busy_ms"
        );
        for r in rows {
            let _ = writeln!(
                out,
                "{:<10} {:<8} {:>9} {:>6} {:>10} {:>12} {:>12} {:>6} {:>9}",
                r.name,
                r.role.name(),
                r.accepted,
                r.open,
                r.requests,
                r.bytes_in,
                r.bytes_out,
                r.panics,
                r.busy_ns / 1_000_000
            );
        }
        out
    }
}
