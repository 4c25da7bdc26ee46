//! The one handler API every model runs, what a handler may return, and the guard that keeps
//! a panicking handler from taking its thread down.
//!
//! A handler is a function from [`Request`] to anything that is [`IntoResponse`]: a
//! [`Response`], or a `Result` whose error renders itself, so `?` works in handlers. Beside
//! answering, a handler tells the server two things it must know before calling it: which
//! calls may block the thread ([`Handler::blocking`], honoured in every model) and how large a
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

/// An `http::Response` with a body of bytes, as an application built on the `http` crate
/// makes them.
impl<B: Into<bytes::Bytes>> IntoResponse for http::Response<B> {
    fn into_response(self) -> Response {
        Response::from(self)
    }
}

impl IntoResponse for http::StatusCode {
    fn into_response(self) -> Response {
        Response::new(self.as_u16())
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

/// A path parameter that is missing or does not parse ([`Request::param_as`]): 400 with
/// the reason.
impl IntoResponse for h1::ParamError {
    fn into_response(self) -> Response {
        Response::text(400, format!("{self}\n"))
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
/// with [`blocking`](Self::blocking) or by being wrapped in [`Blocking`]. Such requests go
/// to the server's blocking pool, in every model: one slow call then never stalls the other
/// connections of an event loop, nor queues fast requests behind it on `pool`'s workers. A
/// server whose handler may block always has that pool (sized by
/// [`ServerBuilder::blocking_threads`](crate::ServerBuilder::blocking_threads), 4 threads
/// unless set).
///
/// Whether there is a pool and which requests go to it are one answer, [`Blocks`]: a handler
/// that blocks for some requests only hands over the [`BlockingRule`] that picks them, so it
/// cannot say "this request blocks" without the server knowing, at `bind`, that a pool is
/// needed.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn call(&self, req: Request) -> Response;

    /// Which requests may block the thread (see [Blocking](#blocking)): asked at `bind`
    /// (is a pool needed?) and for each request (does this one go to it?).
    fn blocking(&self) -> Blocks<'_> {
        Blocks::Never
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

/// Which of a handler's requests may block its thread (see [Blocking](Handler#blocking)).
#[derive(Clone, Copy)]
pub enum Blocks<'a> {
    /// None: every request runs where the shape runs handlers.
    Never,
    /// Every request goes to the blocking pool.
    Always,
    /// The requests this rule picks (a router's blocking routes, a layer's keyed requests).
    When(&'a dyn BlockingRule),
}

impl Blocks<'_> {
    /// Whether `req` may block.
    pub fn blocks(&self, req: &Request) -> bool {
        match self {
            Blocks::Never => false,
            Blocks::Always => true,
            Blocks::When(rule) => rule.blocks(req),
        }
    }

    /// Whether any request may block: the server then has a blocking pool.
    pub fn may_block(&self) -> bool {
        !matches!(self, Blocks::Never)
    }
}

impl std::fmt::Debug for Blocks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Blocks::Never => "Never",
            Blocks::Always => "Always",
            Blocks::When(_) => "When(..)",
        })
    }
}

/// Picks, request by request, which calls of a handler that blocks for some requests go to
/// the blocking pool ([`Blocks::When`]).
pub trait BlockingRule: Send + Sync {
    /// Whether answering `req` may block the thread.
    fn blocks(&self, req: &Request) -> bool;
}

impl<F: Fn(&Request) -> bool + Send + Sync> BlockingRule for F {
    fn blocks(&self, req: &Request) -> bool {
        self(req)
    }
}

/// Marks a handler as blocking for every request (see [Blocking](Handler#blocking)). A
/// server with such a handler always has a blocking pool.
pub struct Blocking<H>(pub H);

impl<H: Handler> Handler for Blocking<H> {
    fn call(&self, req: Request) -> Response {
        self.0.call(req)
    }
    fn blocking(&self) -> Blocks<'_> {
        Blocks::Always
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
    fn blocking(&self) -> Blocks<'_> {
        self.inner.blocking()
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
            fn blocking(&self) -> Blocks<'_> {
                (**self).blocking()
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
        Err(_) => (Response::internal_error(), true),
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
        assert!(h.blocking().may_block() && h.blocking().blocks(&req));
        assert_eq!(h.body_limit(&req), Some(10));
        let boxed: Box<dyn Handler> = Box::new(Arc::new(h));
        assert!(boxed.blocking().may_block() && boxed.max_body() == Some(10));
    }

    /// The bug this type removes: a handler that said "this request blocks" without saying
    /// "I may block" ran its blocking call on the event loop. Now the rule is the answer to
    /// both questions.
    #[test]
    fn a_handler_blocking_for_some_requests_needs_a_pool_by_construction() {
        struct Slow;
        impl Handler for Slow {
            fn call(&self, _req: Request) -> Response {
                Response::new(200)
            }
            fn blocking(&self) -> Blocks<'_> {
                Blocks::When(&|req: &Request| req.path() == "/slow")
            }
        }
        let slow = Request::builder().target("/slow").build().unwrap();
        let fast = Request::builder().target("/fast").build().unwrap();
        let b = Slow.blocking();
        assert!(b.may_block());
        assert!(b.blocks(&slow) && !b.blocks(&fast));
        assert!(!(|_r: Request| Response::new(200)).blocking().may_block());
    }
}
