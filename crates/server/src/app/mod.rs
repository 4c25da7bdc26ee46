//! The application's side: what a handler is ([`handler`]), routing ([`router`]),
//! middleware ([`layer`]) and how the server's own refusals are rendered ([`refusal`]).
//! Nothing here knows the shape it runs on.

pub mod handler;
pub mod layer;
pub mod refusal;
pub mod router;
