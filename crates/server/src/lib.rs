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
//! - The `http` crate's types at the edge (re-exported as [`http`]): a handler may return
//!   an `http::Response` or `http::StatusCode`, routes take an `http::Method`,
//!   [`Request::header_map`] gives an `http::HeaderMap`.
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
//! The folders are the architecture; a connection meets them top to bottom.
//! - `shape/`: [`topology`] — [`Topology`], who listens, accepts, reads and handles, and the
//!   roles a thread can play; `model`: the presets' [`Model`], [`AcceptStrategy`], [`Balance`]. `wiring`: building any valid topology from the roles.
//! - `roles/`: `listener` (listening sockets: backlog, SO_REUSEPORT, TCP_DEFER_ACCEPT),
//!   `acceptor` (batches, error triage, taking turns on a shared socket), `conn_limit`
//!   (`--max-conns`), `handoff` (an accepted fd to another thread's reader; the balancer),
//!   `reader` (owns connections and feeds their cores), `worker` (handler threads: a
//!   topology's workers and the blocking pool).
//! - `event_loop`: one thread's loop with its typed roles (accept, read, or both), written
//!   once over a driver.
//! - `driver/`: the seam to the kernel's I/O interface ([`Io`]: `--io epoll|uring|auto`):
//!   the `Driver` trait, `epoll` and `uring`, and `token` (what an event is for).
//! - `connection/`: one connection's protocol state with no I/O, no clock and no shared
//!   counter (its inputs and outputs are listed there); `timer` (the per-thread wheel
//!   behind every deadline); `buffers` (the reader's bounded free list).
//! - `app/`: [`handler`], [`router`], [`layer`], [`refusal`] — the API applications use.
//! - `observe/`: [`stats`] (per-thread counters), [`queue_wait`] (waits in the kernel's
//!   queues), `connections` (what a reader tells of its connections when asked);
//!   [`introspect`]: what the admin endpoint and `backlog top` ask a running server.
//! - [`tls`]: [`Tls`] (certificates, reloaded in place) and each connection's rustls
//!   session, which lives inside the connection core; who runs handshakes is the
//!   topology's [`HandshakeBy`].
//! - [`server`]: [`ServerBuilder`], [`Server`], [`ServerHandle`]; `error` ([`ServerError`]),
//!   `config`, `shutdown`,
//!   [`tuning`] (the constants behind its behaviour under load).
//!
//! HTTP itself lives in the `backlog-h1` crate (no I/O); syscalls and `unsafe` in
//! `backlog-sys`.

pub mod app;
mod config;
mod connection;
mod driver;
mod error;
mod event_loop;
pub mod introspect;
pub mod observe;
mod priority;
mod roles;
pub mod server;
pub mod shape;
mod shutdown;
pub mod tls;
pub mod tuning;
mod wiring;

// The public modules keep the paths they had before the tree was folded by concept.
pub use app::{body, handler, layer, refusal, router, service};
pub use observe::{queue_wait, stats};
pub use shape::topology;

pub use body::{BodyError, RequestBody};
pub use config::{BusinessPriority, Config, InlineAnswers, Io, QueueTiming, Timeouts, UnknownName};
pub use error::ServerError;
#[cfg(feature = "serde")]
pub use h1::JsonError;
pub use h1::{
    Extensions, InvalidHeader, Limits, Method, ParamError, Request, RequestBuilder, Response,
    StatusCode,
};
pub use handler::{Blocking, BlockingRule, Blocks, BodyLimit, Handler, IntoResponse};
/// The `http` crate backlog's types convert to and from (`StatusCode`, `Method`,
/// `HeaderMap`, `Response`), for applications that do not name it themselves.
pub use http;
pub use layer::{HandlerExt, Layer, Layered};
pub use refusal::Refusal;
pub use roles::listener::{Listener, Reuseport};
pub use router::Router;
pub use server::{Server, ServerBuilder, ServerHandle};
pub use service::{BoxError, HttpBody, HttpService, PeerAddr, PeerAddrs};
pub use shape::model::{AcceptStrategy, Balance, Model};
pub use tls::{Tls, TlsError};
pub use topology::{AppThreads, HandshakeBy, Topology, TopologyError};
