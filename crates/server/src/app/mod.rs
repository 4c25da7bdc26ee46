//! The application's side: what a handler is ([`handler`]), routing ([`router`]),
//! middleware ([`layer`]), a tower service as the application ([`service`]) with the
//! request bodies it reads ([`body`]), and how the server's own refusals are rendered
//! ([`refusal`]). Nothing here knows the shape it runs on.

pub mod body;
pub mod handler;
pub mod layer;
pub mod refusal;
pub mod router;
pub mod service;

use std::sync::Arc;

/// What a server runs: a native handler (a function of the parsed request, run where the
/// shape says) or a service whose futures run on the worker runtime.
#[derive(Clone)]
pub(crate) enum App {
    Handler(Arc<dyn handler::Handler>),
    Service(Arc<dyn service::AsyncApp>),
}
