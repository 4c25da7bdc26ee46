//! Middleware: code that runs around a handler (authentication, request ids, idempotency)
//! without the handler knowing.
//!
//! A [`Layer`] gets the request and the handler it wraps, as `next`, and decides whether and
//! how to call it. The wrapped pair, [`Layered`], is itself a [`Handler`] that forwards what
//! the server asks of a handler before calling it — whether it blocks, its body limit — to
//! the inner handler, so wrapping never hides a blocking handler from the blocking pool. A
//! layer that blocks by itself (one that asks a database) says so with [`Layer::blocking`].

use crate::app::handler::{BlockingRule, Blocks};
use crate::Handler;
use h1::{Request, Response};
use std::sync::Arc;

/// Runs around a handler.
///
/// Any `Fn(Request, &dyn Handler) -> Response` is a layer:
///
/// ```
/// use backlog_server::{Handler, HandlerExt, Request, Response};
///
/// struct User(String);
/// let auth = |mut req: Request, next: &dyn Handler| match req.header_str("authorization") {
///     Some(token) if token.starts_with("Bearer ") => {
///         let user = User(token[7..].to_string());
///         req.extensions_mut().insert(user);
///         next.call(req)
///     }
///     _ => Response::text(401, "who are you?\n"),
/// };
/// let hello = (|req: Request| {
///     let user = req.extensions().get::<User>().unwrap();
///     Response::text(200, format!("hello {}\n", user.0))
/// })
/// .layer(auth);
/// let req = Request::builder().header("Authorization", "Bearer ann").build().unwrap();
/// assert_eq!(hello.call(req).body_bytes(), b"hello ann\n");
/// assert_eq!(hello.call(Request::builder().build().unwrap()).status(), 401);
/// ```
pub trait Layer: Send + Sync + 'static {
    /// Handle `req`, calling `next` (the wrapped handler) or answering by itself.
    fn call(&self, req: Request, next: &dyn Handler) -> Response;

    /// Which requests this layer itself may block the thread for, besides the handler
    /// (see [Blocking](crate::Handler#blocking)).
    fn blocking(&self) -> Blocks<'_> {
        Blocks::Never
    }
}

impl<F> Layer for F
where
    F: Fn(Request, &dyn Handler) -> Response + Send + Sync + 'static,
{
    fn call(&self, req: Request, next: &dyn Handler) -> Response {
        self(req, next)
    }
}

impl<L: Layer + ?Sized> Layer for Arc<L> {
    fn call(&self, req: Request, next: &dyn Handler) -> Response {
        (**self).call(req, next)
    }
    fn blocking(&self) -> Blocks<'_> {
        (**self).blocking()
    }
}

/// A handler wrapped in a layer.
pub struct Layered<L, H> {
    layer: L,
    inner: H,
}

impl<L: Layer, H: Handler> Layered<L, H> {
    /// `inner`, called through `layer`.
    pub fn new(layer: L, inner: H) -> Self {
        Layered { layer, inner }
    }
}

impl<L: Layer, H: Handler> Handler for Layered<L, H> {
    fn call(&self, req: Request) -> Response {
        self.layer.call(req, &self.inner)
    }
    fn blocking(&self) -> Blocks<'_> {
        match (self.layer.blocking(), self.inner.blocking()) {
            (Blocks::Never, inner) => inner,
            (outer, Blocks::Never) => outer,
            (Blocks::Always, _) | (_, Blocks::Always) => Blocks::Always,
            (Blocks::When(_), Blocks::When(_)) => Blocks::When(self),
        }
    }
    fn body_limit(&self, req: &Request) -> Option<u64> {
        self.inner.body_limit(req)
    }
    fn max_body(&self) -> Option<u64> {
        self.inner.max_body()
    }
}

/// Where layer and handler each block for some requests only: either one blocking is enough.
impl<L: Layer, H: Handler> BlockingRule for Layered<L, H> {
    fn blocks(&self, req: &Request) -> bool {
        self.layer.blocking().blocks(req) || self.inner.blocking().blocks(req)
    }
}

/// `handler.layer(l)`: wrap any handler in a layer.
pub trait HandlerExt: Handler + Sized {
    /// This handler, called through `layer`.
    fn layer<L: Layer>(self, layer: L) -> Layered<L, Self> {
        Layered::new(layer, self)
    }
}

impl<H: Handler> HandlerExt for H {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Blocking, BodyLimit};

    #[test]
    fn a_layer_keeps_what_the_handler_tells_the_server() {
        let inner = Blocking(BodyLimit::new(5, |_r: Request| Response::new(200)));
        let tag = |req: Request, next: &dyn Handler| next.call(req).header("X-Layer", "1");
        let h = inner.layer(tag);
        let req = Request::builder().build().unwrap();
        assert!(h.blocking().may_block() && h.blocking().blocks(&req));
        assert_eq!(h.body_limit(&req), Some(5));
        assert_eq!(h.call(req).header_value("x-layer"), Some(&b"1"[..]));
    }

    /// A layer that blocks for POSTs (a database write).
    pub(crate) struct Db;
    impl Layer for Db {
        fn call(&self, req: Request, next: &dyn Handler) -> Response {
            next.call(req)
        }
        fn blocking(&self) -> Blocks<'_> {
            Blocks::When(self)
        }
    }
    impl BlockingRule for Db {
        fn blocks(&self, req: &Request) -> bool {
            req.method().as_str() == "POST"
        }
    }

    #[test]
    fn a_blocking_layer_makes_the_pair_blocking() {
        let h = (|_r: Request| Response::new(200)).layer(Db);
        assert!(h.blocking().may_block());
        let post = Request::builder().method("POST").build().unwrap();
        assert!(h.blocking().blocks(&post));
        assert!(!h.blocking().blocks(&Request::builder().build().unwrap()));
        // A per-request layer around a per-request handler: either one blocking is enough.
        let both = crate::Router::new()
            .get("/slow", crate::Blocking(|_r: Request| Response::new(200)))
            .get("/fast", |_r: Request| Response::new(200))
            .layer(|req: Request, next: &dyn Handler| next.call(req));
        let h = HandlerExt::layer(both, Db);
        let slow = Request::builder().target("/slow").build().unwrap();
        let fast = Request::builder().target("/fast").build().unwrap();
        let post = Request::builder()
            .method("POST")
            .target("/fast")
            .build()
            .unwrap();
        assert!(h.blocking().blocks(&slow) && h.blocking().blocks(&post));
        assert!(!h.blocking().blocks(&fast));
    }
}
