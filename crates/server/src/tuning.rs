//! The constants behind backlog's behaviour under load, gathered for people tuning or
//! studying it — and for the lab, which reports them beside its figures. An application
//! needs none of them; the builder's settings are the knobs meant to be turned.
//!
//! - [`ACCEPT_BATCH`]: connections one acceptor takes per wake-up before it lets its loop
//!   serve the connections it already has.
//! - [`EXCLUSIVE_ROTATE`]: accepts after which an EPOLLEXCLUSIVE waiter re-registers, so the
//!   kernel's LIFO wake-up order does not pin every new connection on one thread.
//! - [`MUTEX_DELAY`]: how long a `shared` thread that lost the accept mutex waits before
//!   trying again (nginx's `accept_mutex_delay`).
//! - [`EXHAUSTED_PAUSE`]: how long accepting pauses after EMFILE/ENFILE/ENOMEM.
//! - [`DEFAULT_BLOCKING_THREADS`]: the blocking pool started for a handler that may block.
//! - [`MAX_LISTED_CONNECTIONS`]: the most connections one `/debug/connections` lists.
//! - [`somaxconn`]: the kernel's ceiling on a listen backlog.
//! - [`DESCRIPTOR_RESERVE`]: descriptors the default `--max-conns` leaves free.
//! - [`HANDSHAKE_NICE`]: how far an acceptor that runs TLS handshakes lowers its thread's
//!   priority below the readers'.
//! - [`READER_SLICE`]: the scheduler slice readers ask for beside handshaking acceptors or
//!   background workers, so that a waking reader preempts a handshake or a handler instead
//!   of waiting out its slice.
//! - [`DEFAULT_INLINE_LIMIT`]: the CPU a service route's first poll may take and still be
//!   answered on a reader (`--inline-answers learned`).
//! - [`INLINE_PROVEN`]: cheap first polls in a row on the workers that earn a route the
//!   reader.

pub use crate::config::{DEFAULT_BLOCKING_THREADS, DEFAULT_INLINE_LIMIT};
pub use crate::introspect::MAX_LISTED_CONNECTIONS;
pub use crate::priority::{HANDSHAKE_NICE, READER_SLICE};
pub use crate::roles::acceptor::{ACCEPT_BATCH, EXCLUSIVE_ROTATE, EXHAUSTED_PAUSE, MUTEX_DELAY};
pub use crate::roles::inline::PROVEN as INLINE_PROVEN;
pub use crate::roles::listener::somaxconn;
pub use crate::server::DESCRIPTOR_RESERVE;
