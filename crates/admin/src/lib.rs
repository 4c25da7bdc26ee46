//! The admin endpoint: what the server and the kernel know about its queues, over HTTP.
//!
//! Served by backlog's own core — a `single`-model server on its own thread named `admin` —
//! so a scrape never runs on a serving thread:
//! - `GET /metrics`: Prometheus text exposition ([`metrics`]).
//! - `GET /debug/state`: the same as JSON, plus the model and its thread layout ([`State`]).
//! - `GET /debug/connections?limit=N`: the oldest connections' kernel queues, `N` of them
//!   (default and most: [`backlog_server::tuning::MAX_LISTED_CONNECTIONS`], 1000) with a count of the rest.
//!   Each listed connection costs its reader four syscalls, so the cap is not negotiable.
//!
//! A supervisor (`--processes`) serves [`fleet::app`] instead: the same endpoints over every
//! worker process, plus `GET /debug/processes`.
//!
//! [`client::fetch_state`] reads `/debug/state` from another process (`backlog top`, the lab).
//!
//! Kernel reads (TCP_INFO, sock_diag, /proc/net/netstat) happen in [`Sampler`], at most once
//! per scrape and cached briefly, so several scrapers cost one sample.

pub mod client;
pub mod fleet;
pub mod metrics;
pub mod state;

pub use client::fetch_state;
pub use state::{
    ListenerState, ProcessState, QueueWaits, Sampler, Shape, State, ThreadState, TlsState,
};

use backlog_server::{
    introspect::{Connections, Introspect},
    Handler, Router,
};
use bytes::Bytes;
use h1::{Request, Response};
use std::sync::Arc;
use std::time::Duration;

/// The admin application for the server behind `view`.
pub fn app(view: Introspect) -> impl Handler {
    let sampler = Arc::new(Sampler::new(view.clone()));
    let listings = Listings::default();
    let (for_metrics, for_state) = (sampler.clone(), sampler);
    Router::new()
        .get("/metrics", move |_req: Request| {
            let state = for_metrics.state();
            Response::new(200)
                .header(
                    "Content-Type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(metrics::encode(&state))
        })
        .get("/debug/state", move |_req: Request| {
            let state = for_state.state();
            Response::json_bytes(200, serde_json::to_vec_pretty(&*state).unwrap_or_default())
        })
        .get("/debug/connections", move |req: Request| {
            let limit = match listing_limit(&req) {
                Ok(limit) => limit,
                Err(refused) => return refused,
            };
            let conns = listings.get(|| view.connections(limit, Duration::from_secs(1)));
            Response::json_bytes(200, listing_json(&conns, limit))
        })
        .get("/", |_req: Request| {
            Response::text(
                200,
                "backlog admin: /metrics /debug/state /debug/connections\n",
            )
        })
}

/// `?limit=N` of a connection listing, at most (and by default)
/// [`MAX_LISTED_CONNECTIONS`](backlog_server::tuning::MAX_LISTED_CONNECTIONS); a limit that
/// is not a number is the 400 to answer, not a listing of the default size.
pub(crate) fn listing_limit(req: &Request) -> Result<usize, Response> {
    let max = backlog_server::tuning::MAX_LISTED_CONNECTIONS;
    match req.query_param("limit") {
        None => Ok(max),
        Some(v) => v.parse::<usize>().map(|n| n.min(max)).map_err(|_| {
            Response::text(
                400,
                format!("limit must be a non-negative integer, not {v:?}\n"),
            )
        }),
    }
}

/// The answer to `/debug/connections?limit=N`, as JSON: the oldest `limit` of `conns`.
pub(crate) fn listing_json(conns: &Connections, limit: usize) -> Bytes {
    let shown = &conns.shown[..conns.shown.len().min(limit)];
    let body = serde_json::json!({
        "total": conns.total,
        "shown": shown.len(),
        "omitted": conns.total.saturating_sub(shown.len()),
        "limit": limit,
        "connections": shown,
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// One connection listing per [`state::CACHE`], whatever the limit asked: the readers
/// answer a listing between their events, four syscalls a connection, so however often and
/// with whatever limits a dashboard polls, they are asked at most a few times a second
/// (measured: 2,000 connections listed 160 times a second cost a third of the serving
/// threads' throughput; a cache keyed by the limit let rotating limits 901…1000 cost 30%).
/// Within the window every request is answered from the last listing, cut to its limit (a
/// larger limit than that listing's gets what it has).
#[derive(Default)]
pub(crate) struct Listings {
    cached: std::sync::Mutex<Option<(std::time::Instant, Arc<Connections>)>>,
}

impl Listings {
    pub(crate) fn get(&self, list: impl FnOnce() -> Connections) -> Arc<Connections> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, conns)) = cached.as_ref() {
            if at.elapsed() < state::CACHE {
                return conns.clone();
            }
        }
        let conns = Arc::new(list());
        *cached = Some((std::time::Instant::now(), conns.clone()));
        conns
    }
}

/// The admin listener's own limits: it must answer an operator while slow or idle clients
/// hold connections (an attack, or a dashboard left open). A scrape sends its head at once,
/// so a short header timeout frees a slot held by a client that never finishes within a
/// second; 400 such clients kept `/metrics` waiting ~11 s behind the default 10 s.
pub fn admin_timeouts() -> backlog_server::Timeouts {
    backlog_server::Timeouts {
        header: Duration::from_secs(1),
        body: Duration::from_secs(1),
        idle: Duration::from_secs(5),
        ..backlog_server::Timeouts::default()
    }
}
