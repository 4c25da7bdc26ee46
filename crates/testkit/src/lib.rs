//! What backlog's integration tests share, so that every test speaks HTTP the same way and
//! waits on conditions instead of sleeping.
//!
//! # Layout
//! - [`http`]: one HTTP/1.1 test client — raw TCP connections, a strict response reader,
//!   one-shot round trips, and the checks tests make on a closing server.
//! - [`wait`]: [`wait_until`], polling a condition with a deadline.
//! - [`process`]: what /proc says about a process (resident memory).

pub mod http;
pub mod process;
pub mod wait;

pub use http::{assert_closed, connect, open, read_response, reset, roundtrip, HttpResponse};
pub use wait::wait_until;
