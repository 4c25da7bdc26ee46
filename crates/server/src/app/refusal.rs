//! The answers the server gives without asking the application — a malformed request (400),
//! a head or body over its limit (431, 413, 414), a client too slow to send its request
//! (408), an unsupported version (505) — and the hook that renders them in the
//! application's own format.
//!
//! The server keeps what makes a refusal safe: its status, and closing the connection after
//! it (after a refusal the server no longer knows where the next request would start). The
//! application chooses only the body and fields, so a JSON API refuses in JSON.

use h1::Response;
use std::sync::Arc;

/// A request the server refused before any handler saw it.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    status: u16,
    reason: &'a str,
}

impl<'a> Refusal<'a> {
    pub(crate) fn new(status: u16, reason: &'a str) -> Self {
        Refusal { status, reason }
    }

    /// The status the server answers with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Why, in a few words ("request body too large", "missing or repeated Host").
    pub fn reason(&self) -> &str {
        self.reason
    }
}

/// Renders refusals; see [`ServerBuilder::on_refusal`](crate::ServerBuilder::on_refusal).
#[derive(Clone)]
pub(crate) struct RenderRefusal(pub(crate) Arc<dyn Fn(&Refusal<'_>) -> Response + Send + Sync>);

impl std::fmt::Debug for RenderRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenderRefusal(..)")
    }
}

/// The response for a refusal: the application's rendering if it gave one, else the reason
/// as one line of text; either way with the refusal's status, closing the connection.
pub(crate) fn respond(render: Option<&RenderRefusal>, status: u16, reason: &str) -> Response {
    match render {
        Some(render) => (render.0)(&Refusal::new(status, reason))
            .with_status(status)
            .close(),
        None => Response::text(status, format!("{reason}\n")).close(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_keeps_status_and_close() {
        let render = RenderRefusal(Arc::new(|r: &Refusal| {
            Response::json_bytes(200, format!("{{\"error\":\"{}\"}}", r.reason()))
        }));
        let resp = respond(Some(&render), 413, "request body too large");
        assert_eq!(resp.status(), 413);
        assert!(resp.wants_close());
        assert_eq!(resp.body_bytes(), br#"{"error":"request body too large"}"#);
        let plain = respond(None, 408, "request timed out");
        assert_eq!((plain.status(), plain.wants_close()), (408, true));
        assert_eq!(plain.body_bytes(), b"request timed out\n");
    }
}
