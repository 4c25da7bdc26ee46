//! `/metrics`: the state in Prometheus text exposition format (prometheus-client).
//!
//! Metric names are API: declared here once, with help text, labelled by listener and
//! thread, never by request data.

use crate::State;
use backlog_server::queue_wait::{WaitSnapshot, BUCKETS_US};
use backlog_server::stats::Role;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
    addr: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreadLabels {
    thread: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProcessLabels {
    pid: String,
    generation: String,
    slot: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    thread: String,
    role: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    thread: String,
    role: String,
    cause: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// A histogram per thread (and kind), as the threads counted it (buckets from
/// [`BUCKETS_US`], 10 µs to 10 s, in seconds).
#[derive(Debug)]
struct WaitHistograms<L>(Vec<(L, WaitSnapshot)>);

impl<L> Default for WaitHistograms<L> {
    fn default() -> Self {
        WaitHistograms(Vec::new())
    }
}

impl<L: EncodeLabelSet + std::fmt::Debug + Send + Sync> EncodeMetric for WaitHistograms<L> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, waits) in &self.0 {
            let buckets: Vec<(f64, u64)> = BUCKETS_US
                .iter()
                .map(|&us| us as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(waits.counts.iter().copied())
                .collect();
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    waits.sum_us as f64 / 1e6,
                    waits.count(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The TcpExt counters and the metric each becomes (without the `backlog_` prefix and the
/// `_total` suffix the encoder adds).
const KERNEL: &[(&str, &str, &str)] = &[
    (
        "ListenOverflows",
        "listen_overflows",
        "Handshakes completed while the accept queue was full (host-wide TcpExt, since start)",
    ),
    (
        "ListenDrops",
        "listen_drops",
        "SYNs and ACKs dropped by listening sockets for any reason (host-wide, since start)",
    ),
    (
        "TCPReqQFullDrop",
        "reqq_full_drops",
        "SYNs dropped because the SYN queue was full and cookies were off (host-wide, since start)",
    ),
    (
        "TCPReqQFullDoCookies",
        "reqq_full_cookies",
        "SYN cookies sent because the SYN queue was full (host-wide, since start)",
    ),
    (
        "SyncookiesSent",
        "syncookies_sent",
        "SYN cookies sent (host-wide, since start)",
    ),
    (
        "SyncookiesRecv",
        "syncookies_recv",
        "Valid SYN cookies received (host-wide, since start)",
    ),
    (
        "SyncookiesFailed",
        "syncookies_failed",
        "Invalid SYN cookies received (host-wide, since start)",
    ),
];

/// Encode `state` as Prometheus text.
pub fn encode(state: &State) -> String {
    let mut registry = Registry::with_prefix("backlog");

    // Labels only where they apply: no `accept` without a shared socket, no `balance`
    // without acceptors choosing among readers.
    let info = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register(
        "info",
        "The running shape (topology; model: its preset or custom), its strategies and its I/O interface (io: epoll or uring; always 1)",
        info.clone(),
    );
    let mut labels = vec![
        ("model".to_string(), state.model.clone()),
        ("topology".to_string(), state.topology.clone()),
        ("io".to_string(), state.io.clone()),
    ];
    for (key, value) in [("accept", &state.accept), ("balance", &state.balance)] {
        if let Some(v) = value {
            labels.push((key.to_string(), v.clone()));
        }
    }
    info.get_or_create(&labels).set(1);

    let aq_len = Family::<ListenerLabels, Gauge>::default();
    let aq_limit = Family::<ListenerLabels, Gauge>::default();
    let syn = Family::<ListenerLabels, Gauge>::default();
    registry.register(
        "accept_queue_length",
        "Connections waiting in the listener's accept queue",
        aq_len.clone(),
    );
    registry.register(
        "accept_queue_limit",
        "The accept queue's limit: the listen backlog after the somaxconn clamp",
        aq_limit.clone(),
    );
    registry.register(
        "syn_recv",
        "Handshakes in SYN_RECV on the listener's port: the SYN queue",
        syn.clone(),
    );
    for l in &state.listeners {
        let labels = ListenerLabels {
            listener: l.index.to_string(),
            addr: l.addr.clone(),
        };
        aq_len
            .get_or_create(&labels)
            .set(l.accept_queue_length as i64);
        aq_limit
            .get_or_create(&labels)
            .set(l.accept_queue_limit as i64);
        syn.get_or_create(&labels).set(l.syn_recv as i64);
    }

    for (counter, name, help) in KERNEL {
        let c = Counter::<u64>::default();
        c.inc_by(state.kernel.get(*counter).copied().unwrap_or(0));
        registry.register(*name, *help, c);
    }

    let accepted = Family::<ThreadLabels, Counter>::default();
    let open = Family::<ThreadLabels, Gauge>::default();
    let requests = Family::<ThreadLabels, Counter>::default();
    let bytes_in = Family::<ThreadLabels, Counter>::default();
    let bytes_out = Family::<ThreadLabels, Counter>::default();
    let handoff = Family::<ThreadLabels, Gauge>::default();
    let panics = Family::<ThreadLabels, Counter>::default();
    let aborted = Family::<ThreadLabels, Counter>::default();
    let lost = Family::<ThreadLabels, Counter>::default();
    let cancelled = Family::<ThreadLabels, Counter>::default();
    let sent_back = Family::<ThreadLabels, Counter>::default();
    let busy = Family::<ThreadLabels, FloatGauge>::default();
    registry.register(
        "accepted",
        "Connections the thread accepted",
        accepted.clone(),
    );
    registry.register(
        "open_connections",
        "Connections the thread holds open",
        open.clone(),
    );
    registry.register(
        "requests",
        "Requests the thread answered (workers: handled)",
        requests.clone(),
    );
    registry.register(
        "bytes_in",
        "Bytes the thread read from clients",
        bytes_in.clone(),
    );
    registry.register(
        "bytes_out",
        "Bytes the thread wrote to clients",
        bytes_out.clone(),
    );
    registry.register(
        "handoff_queue_depth",
        "Items waiting in the thread's hand-off queue (dispatch: connections; pool: requests)",
        handoff.clone(),
    );
    registry.register(
        "handler_panics",
        "Handler panics turned into 500s",
        panics.clone(),
    );
    registry.register(
        "aborted_connections",
        "Connections the client abandoned (a reset, or a FIN mid-request), closed at once",
        aborted.clone(),
    );
    registry.register(
        "lost_connections",
        "Connections passed to this process that the kernel discarded because its descriptor table was full (MSG_CTRUNC): closed unanswered",
        lost.clone(),
    );
    registry.register(
        "cancelled_requests",
        "A service's answers dropped unfinished because their connection closed first (the client went away, or a drain ran out of time)",
        cancelled.clone(),
    );
    registry.register(
        "routes_sent_back",
        "Routes of a service a reader had learned to answer itself and sent back to the workers, because an answer ran long or had to wait on the reader (--inline-answers learned)",
        sent_back.clone(),
    );
    registry.register(
        "thread_busy_ratio",
        "Share of wall time the thread spent outside epoll_wait over the last interval",
        busy.clone(),
    );
    let (mut accept_waits, mut receive_waits) = (
        WaitHistograms::<ThreadLabels>::default(),
        WaitHistograms::<ThreadLabels>::default(),
    );
    let mut handshakes = WaitHistograms::<HandshakeLabels>::default();
    let in_flight = Family::<ThreadLabels, Gauge>::default();
    let tls_failures = Family::<FailureLabels, Counter>::default();
    for t in &state.threads {
        let labels = ThreadLabels {
            thread: t.counters.name.clone(),
            role: t.counters.role.name().to_string(),
        };
        // The threads that read connections count the waits (zeros included, so the
        // series exist before traffic): loops, readers, and acceptors that run TLS
        // handshakes (they read a connection's first bytes); handler threads read nothing.
        let shakes_hands = state
            .layout
            .iter()
            .any(|l| l.name == t.counters.name && l.handshakes);
        if matches!(t.counters.role, Role::Loop | Role::Reader) || shakes_hands {
            accept_waits
                .0
                .push((labels.clone(), t.counters.accept_wait.clone()));
            receive_waits
                .0
                .push((labels.clone(), t.counters.receive_wait.clone()));
        }
        // Handshakes are counted by whoever runs them: readers, loops, or acceptors
        // that complete them before handing a session over.
        if state.tls.is_some()
            && t.counters.role != Role::Worker
            && t.counters.role != Role::Blocking
        {
            let tls = &t.counters.tls;
            for (kind, hist) in [("full", &tls.full), ("resumed", &tls.resumed)] {
                let l = HandshakeLabels {
                    thread: labels.thread.clone(),
                    role: labels.role.clone(),
                    kind: kind.to_string(),
                };
                handshakes.0.push((l, hist.clone()));
            }
            in_flight.get_or_create(&labels).set(tls.in_flight as i64);
            for (cause, n) in &tls.failures {
                let l = FailureLabels {
                    thread: labels.thread.clone(),
                    role: labels.role.clone(),
                    cause: cause.clone(),
                };
                tls_failures.get_or_create(&l).inc_by(*n);
            }
        }
        accepted.get_or_create(&labels).inc_by(t.counters.accepted);
        open.get_or_create(&labels).set(t.counters.open as i64);
        requests.get_or_create(&labels).inc_by(t.counters.requests);
        bytes_in.get_or_create(&labels).inc_by(t.counters.bytes_in);
        bytes_out
            .get_or_create(&labels)
            .inc_by(t.counters.bytes_out);
        handoff
            .get_or_create(&labels)
            .set(t.counters.handoff_queued as i64);
        panics.get_or_create(&labels).inc_by(t.counters.panics);
        aborted.get_or_create(&labels).inc_by(t.counters.aborted);
        lost.get_or_create(&labels).inc_by(t.counters.lost);
        cancelled
            .get_or_create(&labels)
            .inc_by(t.counters.cancelled);
        sent_back
            .get_or_create(&labels)
            .inc_by(t.counters.sent_back);
        busy.get_or_create(&labels).set(t.busy_ratio);
    }

    registry.register(
        "accept_queue_wait_seconds",
        "How long connections waited in the kernel's accept queue: from the arrival of their first bytes to accept (by the thread that read them)",
        accept_waits,
    );
    registry.register(
        "receive_queue_wait_seconds",
        "How long requests' first bytes waited in the kernel's receive queue before the thread read them",
        receive_waits,
    );

    if state.tls.is_some() {
        registry.register(
            "tls_handshake_seconds",
            "TLS handshakes completed, by how long they took from the ClientHello's first byte to done (kind: full or resumed), by the thread that ran them",
            handshakes,
        );
        registry.register(
            "tls_handshakes_in_flight",
            "TLS handshakes begun and not yet done on the thread",
            in_flight,
        );
        registry.register(
            "tls_failures",
            "TLS connections ended by cause: plain_http (plain HTTP on the TLS port, answered 400), bad_handshake (refused ClientHello or handshake), peer_alert (the client refused ours), timeout (the handshake outlasted the header timeout), closed (the client left mid-handshake), bad_record (an undecryptable record after it)",
            tls_failures,
        );
    }

    let imbalance = FloatGauge::default();
    imbalance.set(state.imbalance);
    registry.register(
        "imbalance_ratio",
        "Max over mean of requests per handling thread over the last interval: the threads that run the handler for ordinary requests (loops and readers, or pool's workers; not the blocking pool)",
        imbalance,
    );

    if !state.processes.is_empty() {
        let procs = Family::<ProcessLabels, Gauge>::default();
        registry.register(
            "process",
            "Worker processes under the supervisor (1 each), by generation, slot and state",
            procs.clone(),
        );
        for p in &state.processes {
            let st = match (p.ready, p.draining) {
                (_, true) => "draining",
                (true, false) => "serving",
                (false, false) => "starting",
            };
            procs
                .get_or_create(&ProcessLabels {
                    pid: p.pid.to_string(),
                    generation: p.generation.to_string(),
                    slot: p.slot.to_string(),
                    state: st.into(),
                })
                .set(1);
        }
    }

    let mut out = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        tracing::warn!(%err, "encoding metrics");
    }
    out
}
