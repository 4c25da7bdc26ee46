//! The one handler API every model runs, and the guard that keeps a panicking handler from
//! taking its thread down.

use h1::{Request, Response};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Turns a request into a response. The same handler runs under every model; it never knows
/// which thread layout called it, so it must be `Send + Sync`.
pub trait Handler: Send + Sync + 'static {
    /// Answer one request.
    fn call(&self, req: Request) -> Response;
}

impl<F> Handler for F
where
    F: Fn(Request) -> Response + Send + Sync + 'static,
{
    fn call(&self, req: Request) -> Response {
        self(req)
    }
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn call(&self, req: Request) -> Response {
        (**self).call(req)
    }
}

impl Handler for Box<dyn Handler> {
    fn call(&self, req: Request) -> Response {
        (**self).call(req)
    }
}

/// Run `handler`; a panic becomes a 500 that closes the connection. Returns whether it
/// panicked, for the thread's counters.
pub(crate) fn call_guarded(handler: &dyn Handler, req: Request) -> (Response, bool) {
    match catch_unwind(AssertUnwindSafe(|| handler.call(req))) {
        Ok(resp) => (resp, false),
        Err(_) => (Response::text(500, "Internal Server Error\n").close(), true),
    }
}
