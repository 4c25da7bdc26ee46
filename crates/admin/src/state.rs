//! One sample of everything the admin endpoint shows, and the sampler that takes it.

use backlog_server::{
    introspect::Introspect, queue_wait::WaitSnapshot, stats::Role, stats::ThreadSnapshot,
    topology::ThreadLayout,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a sample is reused: scrapers arriving together cost one kernel read.
pub(crate) const CACHE: Duration = Duration::from_millis(250);
/// Counting a SYN queue walks every socket on the host ([`kernel::SynRecvGauge`]): scrapes
/// may spend at most 1/this of a core on it, however often they come.
pub(crate) const SYN_WALK_DIVISOR: u32 = 100;

/// One listening socket's queues.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerState {
    /// Index among the server's listeners (reuseport has several on one address).
    pub index: usize,
    /// Bound address.
    pub addr: String,
    /// Connections waiting in the accept queue.
    pub accept_queue_length: u32,
    /// The accept queue's limit (backlog after the somaxconn clamp).
    pub accept_queue_limit: u32,
    /// Handshakes waiting in the SYN queue for this port (SYN_RECV; shared by every
    /// listener on the port).
    pub syn_recv: u32,
    /// Whether the socket is still open.
    pub open: bool,
}

/// One thread's counters, plus rates over the last interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadState {
    /// The counters since start.
    #[serde(flatten)]
    pub counters: ThreadSnapshot,
    /// Share of wall time spent outside epoll_wait (workers: running handlers) over the
    /// last interval.
    pub busy_ratio: f64,
    /// Requests per second over the last interval.
    pub requests_per_s: f64,
    /// Queue-wait percentiles over the last interval.
    #[serde(default)]
    pub waits: QueueWaits,
}

/// The median and 99th percentile of the two queue waits over an interval, in µs; `None`
/// when nothing was counted (timing off, or no traffic).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueWaits {
    /// Accept queue: handshake done (first bytes received) to `accept`.
    pub accept_p50_us: Option<u64>,
    /// Accept queue, 99th percentile.
    pub accept_p99_us: Option<u64>,
    /// Receive queue: a request's bytes received to read.
    pub receive_p50_us: Option<u64>,
    /// Receive queue, 99th percentile.
    pub receive_p99_us: Option<u64>,
    /// Connections counted in the accept figures.
    pub accepted: u64,
    /// Requests counted in the receive figures.
    pub requests: u64,
}

impl QueueWaits {
    /// The percentiles of these waits.
    pub fn of(accept: &WaitSnapshot, receive: &WaitSnapshot) -> Self {
        let us = |s: &WaitSnapshot, q| s.quantile(q).map(|d| d.as_micros() as u64);
        QueueWaits {
            accept_p50_us: us(accept, 0.5),
            accept_p99_us: us(accept, 0.99),
            receive_p50_us: us(receive, 0.5),
            receive_p99_us: us(receive, 0.99),
            accepted: accept.count(),
            requests: receive.count(),
        }
    }
}

/// One worker process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessState {
    /// Its pid.
    pub pid: u32,
    /// Its generation (1 at start, one more per reload).
    pub generation: u32,
    /// Its place among the workers.
    pub slot: usize,
    /// It has said it serves.
    pub ready: bool,
    /// It was told to drain (replaced by a reload, or shutting down).
    pub draining: bool,
    /// Seconds since it started.
    pub age_s: f64,
    /// Its own admin endpoint.
    pub admin: Option<SocketAddr>,
    /// Its threads, by name (as in its own layout).
    #[serde(default)]
    pub threads: Vec<String>,
}

/// The running shape as numbers and names (what [`State::topology`] says as text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Listening sockets on the port.
    pub listeners: usize,
    /// Accept-only threads.
    pub acceptors: usize,
    /// Threads that own connections.
    pub readers: usize,
    /// Handler threads.
    pub workers: usize,
    /// How threads sharing one socket take turns; `None` when no socket is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    /// How acceptors choose a reader; `None` without acceptors or with one reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// The model it is the preset of, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
}

impl Shape {
    /// The shape of `t`.
    pub fn of(t: &backlog_server::Topology) -> Shape {
        Shape {
            listeners: t.listeners(),
            acceptors: t.acceptors(),
            readers: t.readers(),
            workers: t.workers(),
            accept: t.shares_a_socket().then(|| t.accept().name().to_string()),
            balance: t.balances().then(|| t.balance().name().to_string()),
            preset: t.preset_of().map(|m| m.name().to_string()),
        }
    }
}

/// Everything `/debug/state` returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The model this shape is the preset of, or `custom`.
    pub model: String,
    /// The shape: `listeners=L acceptors=A readers=R workers=W` (and `accept=`, `balance=`
    /// where they apply), as `--topology` takes it.
    pub topology: String,
    /// The same shape as a structure.
    #[serde(default)]
    pub shape: Shape,
    /// The I/O interface the loops run on: `epoll` or `uring`.
    #[serde(default)]
    pub io: String,
    /// How threads sharing one socket take turns; `None` when no socket is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<String>,
    /// How acceptors choose a reader; `None` without acceptors or with one reader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Backlog in force.
    pub backlog: u32,
    /// `--max-conns`.
    pub max_conns: usize,
    /// Which thread listens, accepts, reads and handles.
    pub layout: Vec<ThreadLayout>,
    /// Listening sockets and their queues.
    pub listeners: Vec<ListenerState>,
    /// Host TcpExt counters (ListenOverflows, ListenDrops, …) since the server started.
    pub kernel: BTreeMap<String, u64>,
    /// Per-thread counters.
    pub threads: Vec<ThreadState>,
    /// Length of the interval the rates cover, seconds.
    pub interval_s: f64,
    /// Max over mean of requests per handling thread in the interval (1.0 is even).
    pub imbalance: f64,
    /// Requests answered since start.
    pub requests_total: u64,
    /// Connections open now.
    pub open_connections: u64,
    /// Worker processes, when a supervisor answers (`--processes`); empty otherwise.
    #[serde(default)]
    pub processes: Vec<ProcessState>,
    /// Queue-wait percentiles of the whole server over the interval.
    #[serde(default)]
    pub waits: QueueWaits,
    /// TLS handshakes across the server, when its listeners speak TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsState>,
}

/// TLS across the server: handshakes over the interval, failures since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsState {
    /// Handshakes completed per second (full and resumed).
    pub handshakes_per_s: f64,
    /// Of which resumed.
    pub resumed_per_s: f64,
    /// Full handshakes' median duration (ClientHello's first byte to done), µs.
    pub full_p50_us: Option<u64>,
    /// Full handshakes, 99th percentile.
    pub full_p99_us: Option<u64>,
    /// Resumed handshakes, 99th percentile.
    pub resumed_p99_us: Option<u64>,
    /// Handshakes going on now.
    pub in_flight: u64,
    /// Connections TLS ended, by cause, since start.
    pub failures: BTreeMap<String, u64>,
}

impl TlsState {
    /// The server's TLS: the `full` and `resumed` handshakes its threads completed over the
    /// last `secs` seconds, and the gauges and failure counts of their counters `now`.
    pub fn of(
        full: &WaitSnapshot,
        resumed: &WaitSnapshot,
        now: &[ThreadSnapshot],
        secs: f64,
    ) -> TlsState {
        let mut out = TlsState::default();
        for t in now {
            out.in_flight += t.tls.in_flight;
            for (cause, n) in &t.tls.failures {
                *out.failures.entry(cause.clone()).or_insert(0) += n;
            }
        }
        let us = |s: &WaitSnapshot, q| s.quantile(q).map(|d| d.as_micros() as u64);
        out.handshakes_per_s = (full.count() + resumed.count()) as f64 / secs;
        out.resumed_per_s = resumed.count() as f64 / secs;
        out.full_p50_us = us(full, 0.5);
        out.full_p99_us = us(full, 0.99);
        out.resumed_p99_us = us(resumed, 0.99);
        out
    }

    /// Several processes' TLS as one: rates, gauges and failures add up; of the
    /// percentiles, which do not, the worst process's is kept.
    pub fn add(&mut self, other: &TlsState) {
        self.handshakes_per_s += other.handshakes_per_s;
        self.resumed_per_s += other.resumed_per_s;
        self.in_flight += other.in_flight;
        for (cause, n) in &other.failures {
            *self.failures.entry(cause.clone()).or_insert(0) += n;
        }
        let worst = |a: Option<u64>, b: Option<u64>| a.max(b);
        self.full_p50_us = worst(self.full_p50_us, other.full_p50_us);
        self.full_p99_us = worst(self.full_p99_us, other.full_p99_us);
        self.resumed_p99_us = worst(self.resumed_p99_us, other.resumed_p99_us);
    }
}

struct Previous {
    at: Instant,
    threads: Vec<ThreadSnapshot>,
}

/// Takes samples for the admin endpoint; remembers the previous one for rates.
pub struct Sampler {
    view: Introspect,
    baseline: kernel::TcpExt,
    cached: Mutex<Option<(Instant, Arc<State>)>>,
    previous: Mutex<Option<Previous>>,
    syn: Mutex<kernel::SynRecvGauge>,
}

impl Sampler {
    /// A sampler whose kernel counters start from now.
    pub fn new(view: Introspect) -> Self {
        Sampler {
            baseline: kernel::TcpExt::read().unwrap_or_default(),
            view,
            cached: Mutex::new(None),
            previous: Mutex::new(None),
            syn: Mutex::new(kernel::SynRecvGauge::new(SYN_WALK_DIVISOR)),
        }
    }

    /// The current state, sampled now unless a sample is fresher than 250 ms.
    pub fn state(&self) -> Arc<State> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, state)) = cached.as_ref() {
            if at.elapsed() < CACHE {
                return state.clone();
            }
        }
        let state = Arc::new(self.sample());
        *cached = Some((Instant::now(), state.clone()));
        state
    }

    fn sample(&self) -> State {
        let view = &self.view;
        let now = Instant::now();
        let mut syn = self.syn.lock().unwrap_or_else(|e| e.into_inner());
        let listeners: Vec<ListenerState> = view
            .listeners()
            .into_iter()
            .enumerate()
            .map(|(index, l)| {
                let syn_recv = syn.count(l.addr).unwrap_or_else(|err| {
                    tracing::debug!(%err, "sock_diag failed");
                    0
                });
                ListenerState {
                    index,
                    addr: l.addr.to_string(),
                    accept_queue_length: l.accept_queue.map_or(0, |q| q.length),
                    accept_queue_limit: l.accept_queue.map_or(0, |q| q.limit),
                    syn_recv,
                    open: l.accept_queue.is_some(),
                }
            })
            .collect();
        let kernel = kernel::TcpExt::read()
            .map(|now| now.since(&self.baseline).counters)
            .unwrap_or_default();

        let topology = view.topology();
        let shape = Shape::of(&topology);
        let snapshot = view.stats().snapshot();
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let (interval, prev) = match previous.as_ref() {
            Some(p) => (now.duration_since(p.at), Some(&p.threads)),
            None => (view.uptime(), None),
        };
        let secs = interval.as_secs_f64().max(1e-3);
        // The threads that run the handler for ordinary requests: loops and readers that
        // handle inline, or pool's workers. The blocking pool runs the exceptions; counting
        // its idle threads would read an even load as imbalanced.
        let handles: Vec<bool> = snapshot
            .iter()
            .map(|t| {
                t.role != Role::Blocking
                    && view
                        .layout()
                        .iter()
                        .find(|l| l.name == t.name)
                        .is_some_and(|l| l.handles)
            })
            .collect();
        let mut threads = Vec::new();
        let mut handled = Vec::new();
        let (mut all_accept, mut all_receive) = (WaitSnapshot::default(), WaitSnapshot::default());
        let (mut all_full, mut all_resumed) = (WaitSnapshot::default(), WaitSnapshot::default());
        for (i, t) in snapshot.iter().enumerate() {
            let before = prev.and_then(|p| p.iter().find(|o| o.name == t.name));
            let d_requests = t.requests - before.map_or(0, |b| b.requests);
            let d_busy = t.busy_ns - before.map_or(0, |b| b.busy_ns);
            if handles[i] {
                handled.push(d_requests as f64);
            }
            let (accept, receive) = t.waits_since(before);
            all_accept.merge(&accept);
            all_receive.merge(&receive);
            let (full, resumed) = t.handshakes_since(before);
            all_full.merge(&full);
            all_resumed.merge(&resumed);
            threads.push(ThreadState {
                counters: t.clone(),
                busy_ratio: (d_busy as f64 / 1e9 / secs).min(1.0),
                requests_per_s: d_requests as f64 / secs,
                waits: QueueWaits::of(&accept, &receive),
            });
        }
        let imbalance = imbalance(&handled);
        let tls = view
            .tls()
            .then(|| TlsState::of(&all_full, &all_resumed, &snapshot, secs));
        *previous = Some(Previous {
            at: now,
            threads: snapshot.clone(),
        });
        let requests_total = snapshot
            .iter()
            .zip(&handles)
            .filter(|(_, h)| **h)
            .map(|(t, _)| t.requests)
            .sum();
        State {
            model: topology.name().to_string(),
            topology: topology.to_string(),
            accept: shape.accept.clone(),
            balance: shape.balance.clone(),
            shape,
            io: view.io().name().to_string(),
            pid: std::process::id(),
            uptime_s: view.uptime().as_secs_f64(),
            backlog: view.backlog(),
            max_conns: view.max_conns(),
            layout: view.layout().to_vec(),
            listeners,
            kernel,
            threads,
            interval_s: secs,
            imbalance,
            requests_total,
            open_connections: snapshot
                .iter()
                .filter(|t| !matches!(t.role, Role::Worker | Role::Blocking))
                .map(|t| t.open)
                .sum(),
            processes: Vec::new(),
            waits: QueueWaits::of(&all_accept, &all_receive),
            tls,
        }
    }
}

/// Max over mean; 1.0 when every thread did the same, and when nothing was done.
pub fn imbalance(per_thread: &[f64]) -> f64 {
    let total: f64 = per_thread.iter().sum();
    if per_thread.is_empty() || total <= 0.0 {
        return 1.0;
    }
    let mean = total / per_thread.len() as f64;
    per_thread.iter().cloned().fold(0.0, f64::max) / mean
}

#[cfg(test)]
mod tests {
    #[test]
    fn imbalance_is_max_over_mean() {
        assert_eq!(super::imbalance(&[10.0, 10.0]), 1.0);
        assert_eq!(super::imbalance(&[30.0, 10.0]), 1.5);
        assert_eq!(super::imbalance(&[0.0, 0.0]), 1.0);
    }
}
