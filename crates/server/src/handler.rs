//! The one handler API every model runs, what a handler may return, and the guard that keeps
//! a panicking handler from taking its thread down.
//!
//! A handler is a function from [`Request`] to anything that is [`IntoResponse`]: a
//! [`Response`], or a `Result` whose error renders itself, so `?` works in handlers. Beside
//! answering, a handler tells the server two things it must know before calling it: whether
//! the call may block the thread ([`Handler::blocks`], honoured in every model) and how large a
//! body it accepts ([`Handler::body_limit`], applied before the body is read). Wrappers
//! ([`Blocking`], [`BodyLimit`], [`crate::Layer`]s, the [`crate::Router`]) forward both.

use h1::{Request, Response, StatusCode};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// What a handler may return: anything that can become a response.
pub trait IntoResponse {
    /// The response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        Response::new(self.0)
    }
}

/// `Ok` and `Err` both render: an application error type implements [`IntoResponse`] once
/// (say, as a JSON problem document) and handlers use `?`.
impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

/// A JSON body or query that did not fit: 415 or 400 with the reason as JSON
/// (`{"error": "..."}`).
#[cfg(feature = "serde")]
impl IntoResponse for h1::JsonError {
    fn into_response(self) -> Response {
        Response::json(
            self.status(),
            &serde_json::json!({ "error": self.to_string() }),
        )
    }
}

/// Turns a request into a response. The same handler runs under every model; it never knows
/// which thread layout called it, so it must be `Send + Sync`.
///
/// Any `Fn(Request) -> impl IntoResponse` is a handler.
///
/// # Blocking
/// A handler that may block its thread (a database call, a file read, a sleep) must say so,
/// with [`blocks`](Self::blocks) or by being wrapped in [`Blocking`]. Such requests go to
/// the server's blocking pool, in every model: one slow call then never stalls the other
/// connections of an event loop, nor queues fast requests behind it on `pool`'s workers. A
/// server whose handler [`may_block`](Self::may_block) always has that pool (sized by
/// [`ServerBuilder::blocking_threads`](crate::ServerBuilder::blocking_threads), 4 threads
/// unless set).
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn call(&self, req: Request) -> Response;

    /// Whether answering `req` may block the thread (see [Blocking](#blocking)).
    fn blocks(&self, _req: &Request) -> bool {
        false
    }

    /// Whether `blocks` may say yes for some request. The server looks once, at `bind`, to
    /// decide whether it needs a blocking pool. Handlers that override `blocks` override this
    /// too; wrappers forward it.
    fn may_block(&self) -> bool {
        false
    }

    /// The largest body this handler accepts for `req` (whose head has been read, its body
    /// not yet), replacing the server's `max_body_bytes` for it; `None` keeps the server's.
    /// A larger body is refused with 413 before it is read.
    fn body_limit(&self, _req: &Request) -> Option<u64> {
        self.max_body()
    }

    /// The body limit this handler has for every request, if any: what a router records
    /// for a route when the route is added, so that requests to routes without a limit cost
    /// no lookup.
    fn max_body(&self) -> Option<u64> {
        None
    }
}

/// Marks a handler as blocking for every request (see [Blocking](Handler#blocking)). A
/// server with such a handler always has a blocking pool.
pub struct Blocking<H>(pub H);

impl<H: Handler> Handler for Blocking<H> {
    fn call(&self, req: Request) -> Response {
        self.0.call(req)
    }
    fn blocks(&self, _req: &Request) -> bool {
        true
    }
    fn may_block(&self) -> bool {
        true
    }
    fn body_limit(&self, req: &Request) -> Option<u64> {
        self.0.body_limit(req)
    }
    fn max_body(&self) -> Option<u64> {
        self.0.max_body()
    }
}

/// A handler with its own body limit in bytes: larger bodies get 413 (rendered like every
/// other refusal, see [`ServerBuilder::on_refusal`](crate::ServerBuilder::on_refusal))
/// before they are read. The limit may be smaller or larger than the server's.
pub struct BodyLimit<H> {
    limit: u64,
    inner: H,
}

impl<H: Handler> BodyLimit<H> {
    /// `inner`, accepting bodies of at most `limit` bytes.
    pub fn new(limit: u64, inner: H) -> Self {
        BodyLimit { limit, inner }
    }
}

impl<H: Handler> Handler for BodyLimit<H> {
    fn call(&self, req: Request) -> Response {
        self.inner.call(req)
    }
    fn blocks(&self, req: &Request) -> bool {
        self.inner.blocks(req)
    }
    fn may_block(&self) -> bool {
        self.inner.may_block()
    }
    fn body_limit(&self, _req: &Request) -> Option<u64> {
        Some(self.limit)
    }
    fn max_body(&self) -> Option<u64> {
        Some(self.limit)
    }
}

impl<F, R> Handler for F
where
    F: Fn(Request) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    fn call(&self, req: Request) -> Response {
        self(req).into_response()
    }
}

/// A handler behind a pointer is the handler: every question is forwarded.
macro_rules! forward_through {
    ($([$($generics:tt)*] $ptr:ty),*) => {$(
        impl<$($generics)*> Handler for $ptr {
            fn call(&self, req: Request) -> Response {
                (**self).call(req)
            }
            fn blocks(&self, req: &Request) -> bool {
                (**self).blocks(req)
            }
            fn may_block(&self) -> bool {
                (**self).may_block()
            }
            fn body_limit(&self, req: &Request) -> Option<u64> {
                (**self).body_limit(req)
            }
            fn max_body(&self) -> Option<u64> {
                (**self).max_body()
            }
        }
    )*};
}

// `Box<dyn Handler>` only: a boxed closure is already a handler through `Fn`.
forward_through!([H: Handler + ?Sized] Arc<H>, [] Box<dyn Handler>);

/// Run `handler`; a panic becomes a 500 that closes the connection. Returns whether it
/// panicked, for the thread's counters.
pub(crate) fn call_guarded(handler: &dyn Handler, req: Request) -> (Response, bool) {
    match catch_unwind(AssertUnwindSafe(|| handler.call(req))) {
        Ok(resp) => (resp, false),
        Err(_) => (Response::text(500, "Internal Server Error\n").close(), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct NotFound;
    impl IntoResponse for NotFound {
        fn into_response(self) -> Response {
            Response::text(404, "no such item")
        }
    }

    fn find(req: Request) -> Result<Response, NotFound> {
        let id = req.query_param("id").ok_or(NotFound)?;
        Ok(Response::text(200, id.to_string()))
    }

    #[test]
    fn result_handlers_render_their_errors() {
        let call =
            |target: &str| Handler::call(&find, Request::builder().target(target).build().unwrap());
        assert_eq!(call("/?id=7").status(), 200);
        assert_eq!(call("/").status(), 404);
        let status = |_r: Request| StatusCode(StatusCode::NO_CONTENT);
        assert_eq!(
            Handler::call(&status, Request::builder().build().unwrap()).status(),
            204
        );
    }

    #[test]
    fn wrappers_keep_blocking_and_limits() {
        let h = Blocking(BodyLimit::new(10, |_r: Request| Response::new(200)));
        let req = Request::builder().build().unwrap();
        assert!(h.may_block() && h.blocks(&req));
        assert_eq!(h.body_limit(&req), Some(10));
        let boxed: Box<dyn Handler> = Box::new(Arc::new(h));
        assert!(boxed.may_block() && boxed.max_body() == Some(10));
    }
}
