//! What backlog's integration tests share, so that every test speaks HTTP the same way and
//! waits on conditions instead of sleeping.
//!
//! # Layout
//! - [`http`]: one HTTP/1.1 test client — raw TCP connections, a strict response reader,
//!   one-shot round trips, and the checks tests make on a closing server.
//! - [`wait`]: [`wait_until`], polling a condition with a deadline.
//! - [`process`]: what /proc says about a process (resident memory).
//! - [`tls`]: a self-signed certificate per test, and a TLS client that trusts it.
//! - [`scratch()`]: a temporary directory that is removed when the test lets go of it, so a
//!   test run leaves nothing under /tmp.

pub mod http;
pub mod process;
pub mod tls;
pub mod wait;

pub use tempfile::TempDir;

/// A fresh directory under the system's temporary directory, named `{prefix}…`, removed
/// with everything in it when dropped.
pub fn scratch(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a scratch directory")
}

pub use http::{
    assert_closed, connect, free_addr, next_response, open, read_response, request, reset,
    roundtrip, HttpResponse,
};
pub use wait::wait_until;
