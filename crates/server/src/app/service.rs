//! Any `tower::Service` over the `http` crate's types, as the application a server runs.
//!
//! A Rust service is usually written against `http::Request`/`http::Response` and tower —
//! an axum `Router`, hyper's `service_fn`, tower-http's layers around either. This module
//! turns such a service into what the server runs: an object-safe `AsyncApp` whose `call`
//! takes the parsed request and returns a boxed future of a response whose body is any
//! `http_body::Body`. Where the futures run and how the bodies reach the socket is the
//! runtime's business (`roles::runtime`): the listener, acceptor and reader roles stay
//! backlog's, with their limits, timeouts and counters.

pub use crate::app::body::RequestBody;
use bytes::{Buf, Bytes};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use tower_service::Service;

/// The error type services and bodies are erased to.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body as the runtime drives it: any body, its data as `Bytes`.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A service's answer to one request.
pub(crate) type AnswerFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, BoxError>> + Send>>;

/// A service, with its types erased so that one reader or worker runs any of them.
pub(crate) trait AsyncApp: Send + Sync + 'static {
    /// Start answering `req`.
    fn call(&self, req: http::Request<RequestBody>) -> AnswerFuture;
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
pub(crate) struct Tower<S, B>(S, PhantomData<fn() -> B>);

impl<S, B> Tower<S, B> {
    pub(crate) fn new(service: S) -> Self {
        Tower(service, PhantomData)
    }
}

impl<S: HttpService<B>, B: HttpBody> AsyncApp for Tower<S, B> {
    fn call(&self, req: http::Request<RequestBody>) -> AnswerFuture {
        let mut svc = self.0.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            let resp = svc.call(req).await.map_err(Into::into)?;
            Ok(resp.map(|body| {
                body.map_frame(|frame| frame.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                    .map_err(Into::into)
                    .boxed_unsync()
            }))
        })
    }
}

/// The client's address, in every request's extensions (axum: `Extension<PeerAddr>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The parsed request as the service's `http::Request`: method, target, version and fields
/// carried over (the field values share the request's head), the body — the bytes read with it, not copied, or
/// `body` when it streams — and the peer's address as a [`PeerAddr`] extension.
pub(crate) fn to_http(req: h1::Request, body: Option<RequestBody>) -> http::Request<RequestBody> {
    let peer = req.peer_addr();
    let mut http = req
        .into_http()
        .map(|whole| body.unwrap_or_else(|| RequestBody::whole(whole)));
    if let Some(peer) = peer {
        http.extensions_mut().insert(PeerAddr(peer));
    }
    http
}
