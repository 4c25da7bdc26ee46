//! Any `tower::Service` over the `http` crate's types, as the application a server runs.
//!
//! A Rust service is usually written against `http::Request`/`http::Response` and tower —
//! an axum `Router`, hyper's `service_fn`, tower-http's layers around either. This module
//! turns such a service into what the server runs: an object-safe `AsyncApp` whose `call`
//! takes the parsed request and returns one boxed `Answer` — the service's call, then the
//! body (any `http_body::Body`) of the response it gave. Where the futures run and how the
//! bodies reach the socket is the runtime's business (`roles::runtime`): the listener,
//! acceptor and reader roles stay backlog's, with their limits, timeouts and counters.

pub use crate::app::body::RequestBody;
use bytes::{Buf, Bytes};
use http_body::{Body, SizeHint};
use pin_project_lite::pin_project;
use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tower_service::Service;

/// The error type services and bodies are erased to.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service's answer in progress, its types erased: first the service's call, then the
/// response it gave. The two live in one allocation, the response's head and body where
/// the call left them, so an answer costs one box whatever its body is (not a second one
/// to erase the body's type, nor a layer that maps each of its frames), and the head is
/// read where it is rather than moved out (a few hundred bytes) at every step from the
/// service to the encoder.
pub(crate) trait Answer: Send {
    /// Drive the call; ready once the service has answered (its head is then [`parts`]).
    ///
    /// [`parts`]: Answer::parts
    fn poll_head(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>;

    /// After the head: the response's status and fields.
    fn parts(&self) -> Option<&http::response::Parts>;

    /// After the head is encoded: its fields, for the next request's map.
    fn take_headers(self: Pin<&mut Self>) -> http::HeaderMap;

    /// After the head: the body's next piece of data (trailers are skipped: HTTP/1.1
    /// clients rarely ask for them); `None` at its end.
    fn poll_data(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, BoxError>>>;

    /// After the head: whether the body has nothing more to give.
    fn is_end_stream(&self) -> bool;

    /// After the head: what the body knows of its length.
    fn size_hint(&self) -> SizeHint;
}

/// A service's answer to one request, as the runtime holds it.
pub(crate) type AnswerFuture = Pin<Box<dyn Answer>>;

/// A service, with its types erased so that one reader or worker runs any of them.
pub(crate) trait AsyncApp: Send + Sync + 'static {
    /// Start answering `req`, whose body is `body` when it streams (else the bytes read
    /// with it), the service called where `at` says.
    fn call(&self, req: h1::Request, body: Option<RequestBody>, at: CallAt) -> AnswerFuture;
}

/// Where a service's `call` runs: it is the business (a `service_fn` may do all its work
/// there and return a future that is ready), so it runs where the shape runs the business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallAt {
    /// Here and now, if the service is ready: the thread that calls is the one the business
    /// runs on (a shape without workers, whose reader polls each answer first). The request
    /// goes straight into the call instead of being held in the answer until its first
    /// poll.
    Here,
    /// At the answer's first poll, wherever that runs (a worker).
    FirstPoll,
}

/// A tower service the server can run: it takes an `http::Request` whose body is a
/// [`RequestBody`] and answers an `http::Response` whose body is an [`HttpBody`]; it is
/// cloned for each request (tower's `call` takes `&mut self`) and shared by every thread.
/// An axum `Router` (with its state given) is one, as are tower-http's layers around one.
pub trait HttpService<B>:
    Service<
        http::Request<RequestBody>,
        Response = http::Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: Service<
            http::Request<RequestBody>,
            Response = http::Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body the server can stream: any `http_body::Body` that can move between
/// threads (axum's `Body`, a `Full`, a stream of frames).
pub trait HttpBody: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

impl<B> HttpBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// The adaptor from a tower service: a clone per request, made ready, then called.
pub(crate) struct Tower<S, B> {
    service: S,
    peer_addr: PeerAddrs,
    body: PhantomData<fn() -> B>,
}

impl<S: 'static, B> Tower<S, B> {
    pub(crate) fn new(service: S, peer_addr: PeerAddrs) -> Self {
        Tower {
            service: prepared(service),
            peer_addr,
            body: PhantomData,
        }
    }
}

impl<S: HttpService<B>, B: HttpBody> AsyncApp for Tower<S, B> {
    fn call(&self, req: h1::Request, body: Option<RequestBody>, at: CallAt) -> AnswerFuture {
        // A request `http` cannot hold is refused (the error carries its status), not
        // passed on changed.
        let req = match to_http(req, body, self.peer_addr) {
            Ok(req) => req,
            Err(refused) => {
                let step = Step::Failed {
                    err: Some(refused.into()),
                };
                return Box::pin(Answering::<S, B> { step });
            }
        };
        let service = self.service.clone();
        let step = match at {
            CallAt::FirstPoll => Step::Ready {
                service,
                req: Some(req),
            },
            CallAt::Here => call_if_ready(service, req),
        };
        Box::pin(Answering::<S, B> { step })
    }
}

/// The service called now if it is ready (axum's `Router` always is); else held for the
/// first poll, which asks again with a waker that reaches the task. A panic in either is
/// kept and resumed at the first poll, where the runtime counts it as a handler's.
fn call_if_ready<S: HttpService<B>, B>(
    mut service: S,
    req: http::Request<RequestBody>,
) -> Step<S, B> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match catch_unwind(AssertUnwindSafe(|| service.poll_ready(&mut cx))) {
        Ok(Poll::Ready(Ok(()))) => match catch_unwind(AssertUnwindSafe(|| service.call(req))) {
            Ok(call) => Step::Calling { call },
            Err(panic) => Step::Panicked { panic: Some(panic) },
        },
        Ok(Poll::Ready(Err(err))) => Step::Failed {
            err: Some(err.into()),
        },
        Ok(Poll::Pending) => Step::Ready {
            service,
            req: Some(req),
        },
        Err(panic) => Step::Panicked { panic: Some(panic) },
    }
}

/// `service` as it is best called on every request. An axum `Router` that was built without
/// state keeps each handler boxed and makes it a route on every request (a clone and an
/// allocation each time); `Router::with_state(())` makes them routes once, which is what
/// `axum::serve` and `Router::into_make_service` do before serving. The same is done here,
/// with the `axum` feature, for a service that is an axum `Router` (any other is as given).
#[cfg(feature = "axum")]
fn prepared<S: 'static>(mut service: S) -> S {
    if let Some(router) = (&mut service as &mut dyn Any).downcast_mut::<axum::Router>() {
        *router = std::mem::take(router).with_state(());
    }
    service
}

#[cfg(not(feature = "axum"))]
fn prepared<S>(service: S) -> S {
    service
}

pin_project! {
    /// One answer of a tower service: readiness, the call, the body.
    struct Answering<S: HttpService<B>, B> {
        #[pin]
        step: Step<S, B>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<S: HttpService<B>, B> {
        Ready { service: S, req: Option<http::Request<RequestBody>> },
        Calling { #[pin] call: S::Future },
        Body { parts: http::response::Parts, #[pin] body: B },
        Failed { err: Option<BoxError> },
        Panicked { panic: Option<Box<dyn Any + Send>> },
        Gone,
    }
}

impl<S: HttpService<B>, B: HttpBody> Answer for Answering<S, B> {
    fn poll_head(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut step = self.project().step;
        loop {
            match step.as_mut().project() {
                StepProj::Ready { service, req } => {
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        step.set(Step::Gone);
                        return Poll::Ready(Err(err.into()));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Ready(Err("the request was taken".into()));
                    };
                    let call = service.call(req);
                    step.set(Step::Calling { call });
                }
                StepProj::Calling { call } => {
                    let resp = ready!(call.poll(cx));
                    match resp {
                        Err(err) => {
                            step.set(Step::Gone);
                            return Poll::Ready(Err(err.into()));
                        }
                        Ok(resp) => {
                            let (parts, body) = resp.into_parts();
                            step.set(Step::Body { parts, body });
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
                StepProj::Failed { err } => {
                    let err = err.take().unwrap_or_else(|| "the service failed".into());
                    step.set(Step::Gone);
                    return Poll::Ready(Err(err));
                }
                StepProj::Panicked { panic } => {
                    if let Some(panic) = panic.take() {
                        step.set(Step::Gone);
                        std::panic::resume_unwind(panic);
                    }
                    return Poll::Ready(Err("the service panicked".into()));
                }
                StepProj::Body { .. } | StepProj::Gone => {
                    return Poll::Ready(Err("the head was already taken".into()))
                }
            }
        }
    }

    fn parts(&self) -> Option<&http::response::Parts> {
        match &self.step {
            Step::Body { parts, .. } => Some(parts),
            _ => None,
        }
    }

    fn take_headers(self: Pin<&mut Self>) -> http::HeaderMap {
        match self.project().step.project() {
            StepProj::Body { parts, .. } => std::mem::take(&mut parts.headers),
            _ => http::HeaderMap::new(),
        }
    }

    fn poll_data(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, BoxError>>> {
        let StepProj::Body { mut body, .. } = self.project().step.project() else {
            return Poll::Ready(None);
        };
        loop {
            let mut data = match ready!(body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(err)) => return Poll::Ready(Some(Err(err.into()))),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    // Trailers: an HTTP/1.1 answer here carries none.
                    Err(_trailers) => continue,
                },
            };
            return Poll::Ready(Some(Ok(data.copy_to_bytes(data.remaining()))));
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.step {
            Step::Body { body, .. } => body.is_end_stream(),
            _ => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.step {
            Step::Body { body, .. } => body.size_hint(),
            _ => SizeHint::with_exact(0),
        }
    }
}

/// The client's address, in a request's extensions when the server was asked for it
/// ([`ServerBuilder::peer_addrs`](crate::ServerBuilder::peer_addrs); axum's
/// `Extension<PeerAddr>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Whether each request a service is given carries its client's address as a [`PeerAddr`]
/// extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerAddrs {
    /// No: the default, as with `axum::serve`, whose `ConnectInfo` is asked for too. An
    /// extension costs every request an allocation and a map entry (measured: about 7% of
    /// the instructions of a keep-alive request to an axum `Router`).
    #[default]
    Omitted,
    /// Yes.
    Inserted,
}

/// The parsed request as the service's `http::Request`: method, target, version and fields
/// carried over (the field values share the request's head), the body — the bytes read with
/// it, not copied, or `body` when it streams — and, if asked, the peer's address as a
/// [`PeerAddr`] extension. Refused when `http` cannot hold its target.
fn to_http(
    req: h1::Request,
    body: Option<RequestBody>,
    peer: PeerAddrs,
) -> Result<http::Request<RequestBody>, h1::Error> {
    let addr = match peer {
        PeerAddrs::Inserted => req.peer_addr(),
        PeerAddrs::Omitted => None,
    };
    let mut http = req
        .into_http()?
        .map(|whole| body.unwrap_or_else(|| RequestBody::whole(whole)));
    if let Some(addr) = addr {
        http.extensions_mut().insert(PeerAddr(addr));
    }
    Ok(http)
}

#[cfg(all(test, feature = "axum"))]
mod tests {
    use super::prepared;
    use axum::routing::get;
    use tower::ServiceExt;

    #[test]
    fn a_router_built_without_state_has_its_handlers_made_routes_once() {
        let router = axum::Router::new()
            .route("/", get(|| async { "hi" }))
            .fallback(|| async { (http::StatusCode::NOT_FOUND, "none") });
        // axum's Debug names a handler still boxed, to be made a route per request.
        assert!(format!("{router:?}").contains("BoxedHandler"));
        let router = prepared(router);
        assert!(
            !format!("{router:?}").contains("BoxedHandler"),
            "{router:?}"
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (path, status, body) in [("/", 200, "hi"), ("/elsewhere", 404, "none")] {
            let req = http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let resp = rt.block_on(router.clone().oneshot(req)).unwrap();
            assert_eq!(resp.status(), status, "{path}");
            let bytes = rt
                .block_on(axum::body::to_bytes(resp.into_body(), 1024))
                .unwrap();
            assert_eq!(&bytes[..], body.as_bytes(), "{path}");
        }
    }

    #[test]
    fn any_other_service_is_given_as_it_is() {
        let layered = tower::ServiceBuilder::new()
            .map_response(|r: http::Response<axum::body::Body>| r)
            .service(axum::Router::<()>::new().route("/", get(|| async { "hi" })));
        // Not a `Router` itself (a layer around one): left as it is, boxed handler and all.
        assert!(format!("{:?}", prepared(layered)).contains("BoxedHandler"));
        assert_eq!(prepared(7_u8), 7);
    }
}
