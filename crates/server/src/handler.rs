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

    /// Whether answering `req` may block the thread (a database call, a file read). In the
    /// models that run handlers on the event loop, such requests go to the server's blocking
    /// pool instead, so one slow call does not stall every other connection of that loop;
    /// `pool` runs all handlers on its workers anyway.
    fn blocks(&self, _req: &Request) -> bool {
        false
    }

    /// Whether `blocks` may say yes for some request. The server looks once, at `bind`:
    /// a handler that may block gets a blocking pool even when none was configured, so a
    /// blocking call never runs on an event loop by accident. Handlers that override
    /// `blocks` should override this too; wrappers forward it.
    fn may_block(&self) -> bool {
        false
    }
}

/// Marks a handler as blocking for every request (see [`Handler::blocks`]). A server with
/// such a handler always has a blocking pool (see
/// [`ServerBuilder::blocking_threads`](crate::ServerBuilder::blocking_threads)).
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
    fn blocks(&self, req: &Request) -> bool {
        (**self).blocks(req)
    }
    fn may_block(&self) -> bool {
        (**self).may_block()
    }
}

impl Handler for Box<dyn Handler> {
    fn call(&self, req: Request) -> Response {
        (**self).call(req)
    }
    fn blocks(&self, req: &Request) -> bool {
        (**self).blocks(req)
    }
    fn may_block(&self) -> bool {
        (**self).may_block()
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
