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
pub use state::{ListenerState, ProcessState, QueueWaits, Sampler, State, ThreadState};

use backlog_server::{introspect::Introspect, Handler, Router};
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
            let limit = req
                .query_param("limit")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(backlog_server::tuning::MAX_LISTED_CONNECTIONS)
                .min(backlog_server::tuning::MAX_LISTED_CONNECTIONS);
            Response::json_bytes(200, listings.get(limit, || list_connections(&view, limit)))
        })
        .get("/", |_req: Request| {
            Response::text(
                200,
                "backlog admin: /metrics /debug/state /debug/connections\n",
            )
        })
}

/// The answer to `/debug/connections?limit=N`, as JSON.
fn list_connections(view: &Introspect, limit: usize) -> Bytes {
    let conns = view.connections(limit, Duration::from_secs(1));
    let body = serde_json::json!({
        "total": conns.total,
        "shown": conns.shown.len(),
        "omitted": conns.total.saturating_sub(conns.shown.len()),
        "limit": limit,
        "connections": conns.shown,
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// Connection listings, each kept for [`state::CACHE`]: the readers answer a listing between
/// their events, four syscalls a connection, so however often a dashboard polls, they are
/// asked at most a few times a second (measured: 2,000 connections listed 160 times a
/// second cost a third of the serving threads' throughput before this).
#[derive(Default)]
struct Listings {
    cached: std::sync::Mutex<Option<(std::time::Instant, usize, Bytes)>>,
}

impl Listings {
    fn get(&self, limit: usize, list: impl FnOnce() -> Bytes) -> Bytes {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, l, body)) = cached.as_ref() {
            if *l == limit && at.elapsed() < state::CACHE {
                return body.clone();
            }
        }
        let body = list();
        *cached = Some((std::time::Instant::now(), limit, body.clone()));
        body
    }
}
