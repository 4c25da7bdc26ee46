//! `backlog lab`: measures the five models and other topologies side by side, with nginx, Node and hyper as
//! anchors, under real and hostile load (slow clients, accept storms, SYN floods, reloads).
//!
//! # Layout
//! - [`loadgen`]: the load generator (epoll threads, closed-loop and fixed-rate, keep-alive,
//!   pipelining, churn; HdrHistogram latencies).
//! - [`target`]: servers under test, each started as its own process on a fresh port:
//!   backlog in every model (and in processes), nginx, Node and hyper; CPU and RSS read
//!   from /proc.
//! - [`scenario`]: what a scenario is, and the hostile traffic beside its load.
//! - [`plan`]: which scenarios against which targets (`--quick` or full).
//! - [`run`]: the measuring loop, and the kernel's queues read from the server's namespace.
//! - [`results`]: what a run produced (results.json).
//! - [`netns`]: the network namespaces for storms and floods, and half-open handshakes.
//! - [`syscalls`]: syscalls per request, from `strace -c -f` during a separate short run.
//! - [`report`]: results.json, report.md and SVG plots; [`shapes`]: its sections on
//!   topologies, the thread sweep and which shape suits which workload.
//! - [`tls`]: the TLS scenarios' certificate and clients (one suite and one key exchange
//!   for every server).
//! - [`floor`]: the physical floor, a minimal server under epoll or io_uring; [`engine`]:
//!   what it does with a connection's bytes (canned answers, or HttpArena's endpoints).
//! - `anchor_hyper` (feature `hyper`): the hyper 1.x anchor server.
//! - `anchor_axum` (feature `axum`): one axum app, served by `axum::serve` and by backlog.
//! - `anchor_actix` (feature `actix`), `anchor_minihttp` (feature `minihttp`): peers from
//!   the field serving HttpArena's endpoints.

#[cfg(feature = "actix")]
pub mod anchor_actix;
#[cfg(feature = "axum")]
pub mod anchor_axum;
#[cfg(feature = "hyper")]
pub mod anchor_hyper;
#[cfg(feature = "minihttp")]
pub mod anchor_minihttp;
pub mod engine;
pub mod floor;
pub mod loadgen;
pub mod netns;
pub mod plan;
mod plot;
pub mod report;
pub mod results;
pub mod run;
pub mod scenario;
pub mod shapes;
pub mod syscalls;
pub mod target;
pub mod tls;
