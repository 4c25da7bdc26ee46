//! What a running server can tell about itself, for the admin endpoint and `backlog top`.
//!
//! Counters are read from the threads' atomics; the kernel is asked about listeners (accept
//! queue) on the caller's thread; per-connection detail is asked of each reader, which
//! answers between events from the connections it owns — the serving threads pay nothing
//! until someone asks.

pub use crate::observe::connections::ConnInfo;
use crate::observe::connections::{ConnQuery, ReaderPort};
use crate::observe::stats::StatsRegistry;
use crate::roles::conn_limit::ConnLimit;
use crate::roles::listener::Listener;
use crate::shape::topology::{ThreadLayout, Topology};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A listening socket and its accept queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerInfo {
    /// Bound address.
    pub addr: SocketAddr,
    /// Its accept queue now; `None` once closed (after shutdown).
    pub accept_queue: Option<kernel::AcceptQueue>,
}

/// The most connections [`Introspect::connections`] lists, whatever is asked: each costs its
/// reader four syscalls, on the thread that serves it.
pub const MAX_LISTED_CONNECTIONS: usize = 1000;

/// An answer to [`Introspect::connections`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    /// Connections open across the readers that answered.
    pub total: usize,
    /// The oldest of them, oldest first, at most the limit asked for.
    pub shown: Vec<ConnInfo>,
}

pub(crate) struct Inner {
    pub(crate) topology: Topology,
    /// The I/O interface every loop runs on (`auto` already resolved).
    pub(crate) io: crate::Io,
    pub(crate) layout: Vec<ThreadLayout>,
    pub(crate) registry: Arc<StatsRegistry>,
    pub(crate) listeners: Vec<(SocketAddr, Weak<Listener>)>,
    pub(crate) readers: Vec<ReaderPort>,
    pub(crate) backlog: u32,
    pub(crate) conn_limit: Arc<ConnLimit>,
    /// The listeners speak TLS.
    pub(crate) tls: bool,
    pub(crate) started: Instant,
}

/// A cheap, cloneable view into a running server.
#[derive(Clone)]
pub struct Introspect {
    pub(crate) inner: Arc<Inner>,
}

impl Introspect {
    /// The shape running: who listens, accepts, reads and handles (its `preset` names the
    /// model, if it is one).
    pub fn topology(&self) -> Topology {
        self.inner.topology
    }
    /// The I/O interface every loop runs on: epoll or io_uring (never `auto`, which is
    /// resolved at start).
    pub fn io(&self) -> crate::Io {
        self.inner.io
    }
    /// Whether the listeners speak TLS.
    pub fn tls(&self) -> bool {
        self.inner.tls
    }
    /// Every thread and what it does.
    pub fn layout(&self) -> &[ThreadLayout] {
        &self.inner.layout
    }
    /// Per-thread counters.
    pub fn stats(&self) -> &StatsRegistry {
        &self.inner.registry
    }
    /// The backlog in force (after the somaxconn clamp).
    pub fn backlog(&self) -> u32 {
        self.inner.backlog
    }
    /// The `--max-conns` ceiling.
    pub fn max_conns(&self) -> usize {
        self.inner.conn_limit.max()
    }
    /// Time since start.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Each listening socket with its accept queue, read from the kernel now.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.inner
            .listeners
            .iter()
            .map(|(addr, weak)| ListenerInfo {
                addr: *addr,
                accept_queue: weak.upgrade().and_then(|l| kernel::accept_queue(&*l).ok()),
            })
            .collect()
    }

    /// The `limit` oldest connections (at most [`MAX_LISTED_CONNECTIONS`]) and how many there
    /// are, asked of the readers that own them (each answers within `wait`).
    pub fn connections(&self, limit: usize, wait: Duration) -> Connections {
        let limit = limit.min(MAX_LISTED_CONNECTIONS);
        let mut answers = Vec::new();
        for port in &self.inner.readers {
            let (reply, rx) = crossbeam_channel::bounded(1);
            if port.queries.send(ConnQuery { limit, reply }).is_ok() {
                port.waker.wake();
                answers.push(rx);
            }
        }
        let deadline = Instant::now() + wait;
        let mut out = Connections::default();
        for rx in answers {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Ok((total, list)) = rx.recv_timeout(left) {
                out.total += total;
                out.shown.extend(list);
            }
        }
        out.shown.sort_by_key(|c| std::cmp::Reverse(c.age_ms));
        out.shown.truncate(limit);
        out
    }
}
