//! backlog's server core: any connection architecture behind one handler API.
//!
//! Who listens, who accepts, who reads and who runs the handler is a run-time choice: a
//! [`Topology`] of listeners × acceptors × readers × workers, of which the five [`Model`]s are
//! presets. The parts are the domain's nouns, and one builder wires any shape from them:
//!
//! # Layout
//! - `listener`: listening sockets (socket2): backlog, SO_REUSEPORT, TCP_DEFER_ACCEPT.
//! - `acceptor`: the accept role — batches, error triage, taking turns on a shared socket
//!   (EPOLLEXCLUSIVE, accept mutex, herd).
//! - `handoff`: passing an accepted fd to another thread's reader, and the balancer.
//! - `reader`: the reading role — connections, parsing, answering, ordered writes,
//!   backpressure. `connection`: one connection's buffers and state. `buffers`: the
//!   reader's bounded free list of I/O buffers.
//! - `worker`: handler threads (a topology's workers, and the blocking pool).
//! - `timer`: the per-thread timer wheel behind every connection deadline.
//! - `conn_limit`: `--max-conns`, pausing accepts at the ceiling.
//! - `event_loop`: one thread's epoll loop and its typed roles: accept, read, or both.
//! - [`topology`]: [`Topology`], who listens, accepts, reads and handles — any shape, with
//!   the five models as presets. `arch`: wiring a topology from the parts above.
//! - [`handler`], [`router`]: the API applications implement.
//! - [`stats`]: per-thread counters. `shutdown`: the stop signal.
//! - [`introspect`]: what a running server tells the admin endpoint about itself.
//! - [`server`]: [`ServerBuilder`], [`Server`], [`ServerHandle`].
//!
//! HTTP itself lives in the `h1` crate (no I/O); syscalls and `unsafe` in `sys`.

mod acceptor;
mod arch;
mod buffers;
mod config;
mod conn_limit;
mod connection;
mod event_loop;
pub mod handler;
mod handoff;
pub mod introspect;
pub mod layer;
mod listener;
mod reader;
pub mod refusal;
pub mod router;
pub mod server;
mod shutdown;
pub mod stats;
mod timer;
pub mod topology;
mod worker;

pub use acceptor::{ACCEPT_BATCH, EXCLUSIVE_ROTATE, EXHAUSTED_PAUSE, MUTEX_DELAY};
pub use config::{
    AcceptStrategy, Balance, Config, Model, Timeouts, UnknownName, DEFAULT_BLOCKING_THREADS,
};
#[cfg(feature = "serde")]
pub use h1::JsonError;
pub use h1::{
    Extensions, InvalidHeader, Limits, Method, Request, RequestBuilder, Response, StatusCode,
};
pub use handler::{Blocking, BodyLimit, Handler, IntoResponse};
pub use introspect::{ConnInfo, Connections, Introspect, ListenerInfo, MAX_LISTED_CONNECTIONS};
pub use layer::{HandlerExt, Layer, Layered};
pub use listener::{somaxconn, Listener};
pub use refusal::Refusal;
pub use router::Router;
pub use server::{Server, ServerBuilder, ServerError, ServerHandle};
pub use stats::{Role, StatsRegistry, ThreadSnapshot};
pub use topology::{ThreadLayout, Topology, TopologyError};
