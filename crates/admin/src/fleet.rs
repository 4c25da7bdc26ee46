//! The admin endpoint of a supervisor (`--processes P`): one view over every worker.
//!
//! Each worker runs its own admin endpoint on an ephemeral loopback port and tells the
//! supervisor where. A scrape of the supervisor fetches every worker's state, names each
//! thread after its process (`w{slot}.g{generation}/loop-0`), sums the totals, and reads
//! the listening sockets' queues itself: it holds them, and they outlive any worker.

use crate::state::{ListenerState, ProcessState, State};
use backlog_server::introspect::Connections;
use backlog_server::{Handler, Listener, Router};
use kernel::SynRecvGauge;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// The thread-name prefix for a worker.
pub fn prefix(p: &ProcessState) -> String {
    format!("w{}.g{}/", p.slot, p.generation)
}

/// The queues of the sockets the supervisor holds (SYN queues through `syn`, which bounds
/// what counting them costs).
pub fn listener_states(listeners: &[Listener], syn: &mut SynRecvGauge) -> Vec<ListenerState> {
    listeners
        .iter()
        .enumerate()
        .map(|(index, l)| {
            let syn_recv = syn.count(l.local_addr()).unwrap_or(0);
            let q = kernel::accept_queue(l).unwrap_or(kernel::AcceptQueue {
                length: 0,
                limit: 0,
            });
            ListenerState {
                index,
                addr: l.local_addr().to_string(),
                accept_queue_length: q.length,
                accept_queue_limit: q.limit,
                syn_recv,
                open: true,
            }
        })
        .collect()
}

/// One state out of the workers' states: threads renamed per process, totals summed, the
/// imbalance taken over every handling thread of every process.
pub fn merge(
    supervisor_pid: u32,
    mut processes: Vec<ProcessState>,
    states: Vec<Option<State>>,
    listeners: Vec<ListenerState>,
) -> State {
    // The model, limits and kernel counters are the same in every worker: take the
    // first's; threads and totals are gathered below. The imbalance is recomputed.
    let mut out = match states.iter().flatten().next() {
        Some(s) => State {
            layout: Vec::new(),
            threads: Vec::new(),
            requests_total: 0,
            open_connections: 0,
            // Percentiles do not add up across processes; each thread keeps its own.
            waits: Default::default(),
            tls: s.tls.as_ref().map(|_| Default::default()),
            ..s.clone()
        },
        None => State::default(),
    };
    out.pid = supervisor_pid;
    out.listeners = listeners;
    for (p, state) in processes.iter_mut().zip(states) {
        let Some(state) = state else { continue };
        let pre = prefix(p);
        p.threads = state.layout.iter().map(|l| l.name.clone()).collect();
        out.layout.extend(state.layout.into_iter().map(|mut l| {
            l.name = format!("{pre}{}", l.name);
            l
        }));
        out.threads.extend(state.threads.into_iter().map(|mut t| {
            t.counters.name = format!("{pre}{}", t.counters.name);
            t
        }));
        out.requests_total += state.requests_total;
        if let (Some(all), Some(tls)) = (out.tls.as_mut(), state.tls.as_ref()) {
            all.add(tls);
        }
        out.open_connections += state.open_connections;
    }
    let handled: Vec<f64> = out
        .threads
        .iter()
        .filter(|t| {
            out.layout
                .iter()
                .any(|l| l.name == t.counters.name && l.handles)
        })
        .map(|t| t.requests_per_s)
        .collect();
    out.imbalance = crate::state::imbalance(&handled);
    out.processes = processes;
    out
}

/// The supervisor's admin application: `/metrics`, `/debug/state` (merged) and
/// `/debug/processes`. `processes` lists the workers now.
pub fn app(
    processes: impl Fn() -> Vec<ProcessState> + Send + Sync + 'static,
    listeners: Arc<std::sync::RwLock<Vec<Listener>>>,
) -> impl Handler {
    let syn = Mutex::new(SynRecvGauge::new(crate::state::SYN_WALK_DIVISOR));
    let processes = Arc::new(processes);
    let for_listing = processes.clone();
    let listings = crate::Listings::default();
    let sample = Arc::new(move || {
        let procs = processes();
        // Workers answer their own scrapes; a slow or dying one costs at most its timeout.
        let states = procs
            .iter()
            .map(|p| {
                p.admin
                    .and_then(|a| crate::fetch_state(a, Duration::from_millis(300)).ok())
            })
            .collect();
        merge(
            std::process::id(),
            procs,
            states,
            listeners
                .read()
                .map(|l| {
                    let mut syn = syn.lock().unwrap_or_else(|e| e.into_inner());
                    listener_states(&l, &mut syn)
                })
                .unwrap_or_default(),
        )
    });
    let (for_metrics, for_state, for_procs) = (sample.clone(), sample.clone(), sample);
    Router::new()
        .get("/metrics", move |_req: h1::Request| {
            h1::Response::new(200)
                .header(
                    "Content-Type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(crate::metrics::encode(&for_metrics()))
        })
        .get("/debug/state", move |_req: h1::Request| {
            h1::Response::json_bytes(
                200,
                serde_json::to_vec_pretty(&for_state()).unwrap_or_default(),
            )
        })
        .get("/debug/processes", move |_req: h1::Request| {
            h1::Response::json_bytes(
                200,
                serde_json::to_vec_pretty(&for_procs().processes).unwrap_or_default(),
            )
        })
        .get("/debug/connections", move |req: h1::Request| {
            let limit = match crate::listing_limit(&req) {
                Ok(limit) => limit,
                Err(refused) => return refused,
            };
            let conns = listings.get(|| connections(&for_listing(), limit));
            h1::Response::json_bytes(200, crate::listing_json(&conns, limit))
        })
}

/// The oldest `limit` connections over every worker, each thread named as in the merged
/// state (`w{slot}.g{generation}/reader-0`). A worker that does not answer within 300 ms
/// is left out of the listing and its total.
fn connections(procs: &[ProcessState], limit: usize) -> Connections {
    let mut all = Connections::default();
    for p in procs {
        let Some(addr) = p.admin else { continue };
        let Ok(listing) = crate::client::fetch_connections(addr, limit, Duration::from_millis(300))
        else {
            continue;
        };
        let pre = prefix(p);
        all.total += listing.total;
        all.shown.extend(listing.shown.into_iter().map(|mut c| {
            c.thread = format!("{pre}{}", c.thread);
            c
        }));
    }
    all.shown.sort_by_key(|c| std::cmp::Reverse(c.age_ms));
    all.shown.truncate(limit);
    all
}
