//! The roles a thread plays for a connection, in the order a connection meets them: a
//! listening socket ([`listener`]), the thread that accepts it ([`acceptor`], under the
//! ceiling of [`conn_limit`]), the hand-over to another thread ([`handoff`]), the thread
//! that reads it and writes its answers ([`reader`]), and the threads that run handlers
//! ([`worker`]) or a service's futures ([`runtime`]), save the cheap ones a reader learns
//! to answer itself ([`inline`]). Acceptors and readers run on event
//! loops ([`crate::event_loop`]); workers block on their queue, or are a tokio runtime.

pub(crate) mod acceptor;
pub(crate) mod conn_limit;
pub(crate) mod handoff;
pub(crate) mod inline;
pub(crate) mod listener;
pub(crate) mod reader;
pub(crate) mod runtime;
pub(crate) mod worker;
