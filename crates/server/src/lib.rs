//! backlog's server core: an HTTP/1.1 server whose connection architecture — who listens,
//! who accepts, who reads, who runs the handler — is a run-time choice, behind one handler
//! API.
//!
//! ```no_run
//! use backlog_server::{Blocking, Model, Request, Response, Router, Server};
//!
//! fn main() -> Result<(), backlog_server::ServerError> {
//!     let app = Router::new()
//!         .get("/", |_req: Request| Response::text(200, "Hello, World!\n"))
//!         .get("/hello/{name}", |req: Request| {
//!             Response::text(200, format!("Hello, {}!\n", req.param("name").unwrap()))
//!         })
//!         // A handler that blocks runs on the blocking pool, never on an event loop.
//!         .get("/report", Blocking(|_req: Request| Response::text(200, "slow work\n")));
//!     Server::builder()
//!         .listen("127.0.0.1:3000".parse().unwrap())
//!         .model(Model::Dispatch) // or .topology("listeners=1 acceptors=1 readers=4".parse()?)
//!         .serve_until_signal(app)?; // SIGINT/SIGTERM: finish what was accepted, then return
//!     Ok(())
//! }
//! ```
//!
//! # The application API
//! - [`Handler`]: any `Fn(Request) -> impl IntoResponse`; [`IntoResponse`] lets handlers
//!   return `Result<_, E>` with an error type that renders itself. [`Blocking`] and
//!   [`Handler::blocking`] send blocking calls to a pool; [`BodyLimit`] sets a route's body
//!   limit, applied before the body is read.
//! - [`Router`]: exact paths, `{name}` parameters, prefixes; every method; fallback,
//!   405 with `Allow`; [`nest`](Router::nest), [`merge`](Router::merge).
//! - [`Layer`]: middleware; wrapping keeps what the handler tells the server. Layers pass
//!   values on in [`Request::extensions`].
//! - [`Request`] (with [`Request::builder`] for tests without a socket), [`Response`],
//!   [`StatusCode`]. With the `serde` feature (on by default): `Request::json`,
//!   `Request::query_as`, `Response::json`, and [`JsonError`] (415/400).
//! - [`Server`] and [`ServerBuilder`]: listen, choose the shape, set limits and timeouts,
//!   [`on_refusal`](ServerBuilder::on_refusal) to render the server's own 4xx, serve.
//!
//! # Shapes
//! A [`Topology`] of listeners × acceptors × readers × workers, of which the five [`Model`]s
//! are presets: `single` (one loop, Node.js), `dispatch` (one acceptor hands connections to
//! N readers, memcached), `pool` (readers queue parsed requests to workers, answers return
//! in order, RAMCloud), `shared` (N loops accept on one socket, nginx), `reuseport` (N
//! listeners on one port).
//!
//! # Layout
//! - `listener`: listening sockets (socket2): backlog, SO_REUSEPORT, TCP_DEFER_ACCEPT.
//! - `acceptor`: the accept role — batches, error triage, taking turns on a shared socket
//!   (EPOLLEXCLUSIVE, accept mutex, herd).
//! - `handoff`: passing an accepted fd to another thread's reader, and the balancer.
//! - `reader`: the reading role, a driver over `connection` — one connection's protocol
//!   state without I/O (parsing, answering, ordered writes, backpressure, deadlines, how
//!   it ends). `buffers`: the reader's bounded free list of I/O buffers.
//! - `worker`: handler threads (a topology's workers, and the blocking pool).
//! - `timer`: the per-thread timer wheel behind every connection deadline.
//! - `token`: what an event or a completion is for (waker, listener, connection), one layout
//!   for both drivers.
//! - `conn_limit`: `--max-conns`, pausing accepts at the ceiling.
//! - `event_loop`: one thread's epoll loop and its typed roles: accept, read, or both.
//!   `uring_loop`: the same roles on an io_uring ([`Io`]: `--io epoll|uring|auto`).
//! - [`topology`]: [`Topology`], who listens, accepts, reads and handles. `arch`: wiring a
//!   topology from the parts above.
//! - [`handler`], [`layer`], [`router`], [`refusal`]: the API applications implement.
//! - [`stats`]: per-thread counters; [`queue_wait`]: how long connections and requests waited
//!   in the kernel's accept and receive queues. `shutdown`: the stop signal.
//! - [`introspect`]: what a running server tells backlog's admin endpoint and `top`.
//! - [`tuning`]: the constants behind its behaviour under load.
//! - [`server`]: [`ServerBuilder`], [`Server`], [`ServerHandle`].
//!
//! HTTP itself lives in the `backlog-h1` crate (no I/O); syscalls and `unsafe` in
//! `backlog-sys`.

mod acceptor;
mod arch;
mod buffers;
mod config;
mod conn_limit;
mod connection;
mod driver;
mod event_loop;
pub mod handler;
mod handoff;
pub mod introspect;
pub mod layer;
mod listener;
pub mod queue_wait;
mod reader;
pub mod refusal;
pub mod router;
pub mod server;
mod shutdown;
pub mod stats;
mod timer;
mod token;
pub mod topology;
pub mod tuning;
mod worker;

pub use config::{AcceptStrategy, Balance, Config, Io, Model, QueueTiming, Timeouts, UnknownName};
#[cfg(feature = "serde")]
pub use h1::JsonError;
pub use h1::{
    Extensions, InvalidHeader, Limits, Method, Request, RequestBuilder, Response, StatusCode,
};
pub use handler::{Blocking, BlockingRule, Blocks, BodyLimit, Handler, IntoResponse};
pub use layer::{HandlerExt, Layer, Layered};
pub use listener::{Listener, Reuseport};
pub use refusal::Refusal;
pub use router::Router;
pub use server::{Server, ServerBuilder, ServerError, ServerHandle};
pub use topology::{Topology, TopologyError};
