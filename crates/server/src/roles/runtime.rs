//! The worker role as a tokio runtime: where a service's futures run.
//!
//! A service ([`crate::app::service`]) answers with futures that may wait on tokio's timers
//! and I/O, so they need a runtime; the reader still parses and writes, in request order,
//! exactly as for a worker pool (RAMCloud's split). Where the shape has workers, every
//! future is spawned on a runtime of that many threads (`worker-0..M-1`). Where it has
//! none, the business runs on the reader: each future is polled once there, and one that
//! is ready at once — the common case of a handler that awaits nothing — is answered with
//! no thread hop; one that is not moves to a runtime of one thread per reader (`async-N`),
//! which polls it again at once (so the wake-up it registered during the first poll, on a
//! waker that goes nowhere, is replaced by the task's before anything can be missed).
//!
//! A response body is collected while it is ready and small ([`STREAM_AFTER`]); past that,
//! or when it must wait, it is streamed: the head goes out (`Content-Length` if the body
//! knows its length, else chunked), then each piece as it is produced. A piece is a
//! [`Completion`] part whose bytes hold a share of the stream's credit ([`STREAM_WINDOW`]);
//! the credit returns when the connection copies the piece into its output, which it does
//! only while its output is under its bound — so a client that reads slowly pauses the
//! producer, and memory per stream stays bounded.
//!
//! Each spawned answer is a task the reader can abort: a connection that closes (the
//! client reset, a drain ran out of time) drops its futures, and the reader counts them.

use crate::app::body::{BodyError, RequestBody};
use crate::app::refusal::{self, RenderRefusal};
use crate::app::service::{AnswerFuture, AsyncApp, BoxError, CallAt};
use crate::observe::stats::ThreadStats;
use crate::priority::{Background, Crew};
use crate::roles::inline::{CheapRoutes, Route};
use crate::roles::worker::{Completion, ConnId, Job, ReplyPort};
use bytes::{BufMut, Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender};
use h1::{BodyCoding, DateCache, EncodeContext, Framing};
use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// A body that has produced this much without ending is streamed rather than collected.
pub(crate) const STREAM_AFTER: usize = 64 * 1024;
/// Bytes of one stream that may be produced and not yet taken into a connection's output.
pub(crate) const STREAM_WINDOW: usize = 256 * 1024;

/// How long a stopping runtime waits for what it still runs (blocking calls; every task
/// of a closed connection was aborted) before leaving it.
const RUNTIME_STOP: Duration = Duration::from_secs(1);

/// Where the answers of one reader's requests go, and what a submission may not exceed.
pub(crate) struct Tasks {
    handle: tokio::runtime::Handle,
    app: Arc<dyn AsyncApp>,
    port: Arc<ReplyPort>,
    /// Answers in progress on this runtime, from every reader; at `cap` a reader stalls.
    in_flight: Arc<AtomicUsize>,
    cap: usize,
    /// Held while the reader is: the runtime stops once every reader has let go.
    _alive: Sender<()>,
    /// Where the readers answer the routes that proved cheap themselves: what the workers'
    /// first polls cost.
    cheap: Option<Arc<CheapRoutes>>,
    /// How the application renders the server's refusals (a body's, answered for a
    /// service that failed with it).
    refusals: Option<RenderRefusal>,
}

/// A reader's link to a service: its runtime, the answers coming back, and whether futures
/// are first polled on the reader itself.
pub(crate) struct ServiceExec {
    pub(crate) tasks: Tasks,
    pub(crate) completions: Receiver<Completion>,
    pub(crate) inline: bool,
    /// The reader's own waker, for the bodies it streams to wake it when they have room.
    pub(crate) waker: Arc<sys::Waker>,
    /// The runtime's workers, when they run in the background: the reader brings them back
    /// when work piles up.
    pub(crate) crew: Option<Arc<Crew>>,
    /// The runtime's workers (where the shape has workers): answers in progress beyond one
    /// each are work waiting.
    pub(crate) workers: usize,
}

impl ServiceExec {
    /// Answers in progress that no worker holds yet.
    pub(crate) fn waiting(&self) -> usize {
        self.tasks.in_progress().saturating_sub(self.workers)
    }
}

/// Request bodies longer than this, or chunked, reach a service as they arrive rather than
/// read whole first.
pub(crate) const STREAM_REQUEST_OVER: u64 = 64 * 1024;

/// One answer's progress before anything of it was sent: calling the service, then
/// collecting its body.
pub(crate) struct Answering {
    ctx: EncodeContext,
    state: State,
    /// The route whose first poll's cost the worker reports, where readers learn.
    route: Option<Route>,
}

enum State {
    Calling(AnswerFuture),
    Collecting {
        /// The answer, past its head (which it holds): its body.
        answer: AnswerFuture,
        got: Collected,
    },
    Taken,
}

/// The body so far: most bodies are one frame, kept as it came (no copy).
#[derive(Default)]
enum Collected {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Collected {
    fn push(&mut self, data: Bytes) {
        *self = match std::mem::take(self) {
            Collected::Empty => Collected::One(data),
            Collected::One(first) => {
                let mut many = BytesMut::with_capacity(first.len() + data.len());
                many.put_slice(&first);
                many.put_slice(&data);
                Collected::Many(many)
            }
            Collected::Many(mut many) => {
                many.put_slice(&data);
                Collected::Many(many)
            }
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Collected::Empty => &[],
            Collected::One(b) => b,
            Collected::Many(b) => b,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where an answer got to.
pub(crate) enum Step {
    /// All of it, to be encoded where it goes.
    Whole(Whole),
    /// The head and the body so far are encoded; the rest is to be streamed.
    Stream(Stream),
}

/// A whole answer: the service's response (its head in the answer that made it) with its
/// body collected, or the 500 a panic or a failure became.
pub(crate) struct Whole {
    ctx: EncodeContext,
    answer: Result<(AnswerFuture, Collected), Failure>,
}

/// Why there is no answer of the service's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    Panicked,
    Failed,
    /// The service failed because its request's body did not come whole (it broke
    /// HTTP/1.1's framing or its limit, stopped arriving, or the client went away: a
    /// [`BodyError`] passed on): the client's fault, answered as the server refuses it.
    Body(BodyError),
    /// The request was refused before the service saw it (a target the `http` crate
    /// cannot hold), or the service passed such a refusal on.
    Refused(h1::Error),
}

impl Failure {
    /// A service's error: the body's if that is somewhere in its chain, else a failure of
    /// the service's own.
    fn of(err: &BoxError) -> Failure {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err.as_ref());
        while let Some(e) = cause {
            if let Some(why) = e.downcast_ref::<BodyError>() {
                return Failure::Body(*why);
            }
            if let Some(refused) = e.downcast_ref::<h1::Error>() {
                return Failure::Refused(*refused);
            }
            cause = e.source();
        }
        Failure::Failed
    }

    /// The status and reason a client's fault is answered with; `None`: a 500.
    fn refusal(self) -> Option<(u16, String)> {
        match self {
            Failure::Body(why) => Some(why.refusal()),
            Failure::Refused(err) => Some((err.status(), err.to_string())),
            Failure::Panicked | Failure::Failed => None,
        }
    }
}

impl Whole {
    /// It is the 500 a panic became (for the thread's counters).
    pub(crate) fn panicked(&self) -> bool {
        matches!(self.answer, Err(Failure::Panicked))
    }

    /// Append the encoded answer to `out` (a refusal rendered by `refusals`, the
    /// application's, when it gave one); whether the connection stays open.
    pub(crate) fn encode(
        self,
        date: &DateCache,
        refusals: Option<&RenderRefusal>,
        out: &mut BytesMut,
    ) -> bool {
        let (mut answer, got) = match self.answer {
            Ok(answer) => answer,
            Err(failure) => {
                let answer = match failure.refusal() {
                    Some((status, reason)) => refusal::respond(refusals, status, &reason),
                    // It closes the connection, as a native handler's panic does.
                    None => h1::Response::internal_error(),
                };
                return answer.encode(self.ctx, date, out);
            }
        };
        let Some(parts) = answer.parts() else {
            return h1::Response::internal_error().encode(self.ctx, date, out);
        };
        // A HEAD's answer has no body to count; the length the service gave is the GET's,
        // and where it gave none (a compressing layer removes it) none is stated.
        let framing = match self.ctx.head && got.is_empty() {
            true => declared_length(parts).map_or(Framing::Unstated, Framing::Length),
            false => Framing::Length(got.len() as u64),
        };
        out.reserve(256 + got.len());
        let head = h1::encode_http_head(parts, self.ctx, date, framing, out);
        // Its fields are on the wire: the map holds the next request's on this thread.
        h1::recycle_header_map(answer.as_mut().take_headers());
        if head.body.is_some() {
            out.put_slice(got.as_slice());
        }
        head.keep_alive
    }
}

/// A body being streamed after its head.
pub(crate) struct Stream {
    out: BytesMut,
    /// The answer, past its head: its body.
    body: AnswerFuture,
    coding: Option<BodyCoding>,
    keep_alive: bool,
    /// With `Content-Length`: the bytes still owed. More are cut; fewer close.
    owed: Option<u64>,
}

/// The answer a failure becomes: a 500, or the refusal of a client's fault.
fn failed(ctx: EncodeContext, failure: Failure) -> Step {
    Step::Whole(Whole {
        ctx,
        answer: Err(failure),
    })
}

impl Answering {
    pub(crate) fn new(fut: AnswerFuture, ctx: EncodeContext) -> Self {
        Answering {
            ctx,
            state: State::Calling(fut),
            route: None,
        }
    }

    /// Report the cost of this answer's first poll on a worker as `route`'s.
    pub(crate) fn learning(mut self, route: Option<Route>) -> Self {
        self.route = route;
        self
    }

    /// Drive the answer as far as it goes without waiting. `Pending` only while nothing
    /// of the body has come: once some has and the rest must be waited for, the head and
    /// that much leave (a stream's first bytes are not held back for its last).
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, date: &DateCache) -> Poll<Step> {
        loop {
            match &mut self.state {
                State::Taken => return Poll::Ready(failed(self.ctx, Failure::Failed)),
                State::Calling(fut) => {
                    match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll_head(cx))) {
                        Err(_) => return Poll::Ready(failed(self.ctx, Failure::Panicked)),
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(Err(err))) => return Poll::Ready(self.fail(&err)),
                        Ok(Poll::Ready(Ok(()))) => {
                            // Matched as Calling just above: the answer, now past its head.
                            let State::Calling(answer) =
                                std::mem::replace(&mut self.state, State::Taken)
                            else {
                                return Poll::Ready(failed(self.ctx, Failure::Failed));
                            };
                            self.state = State::Collecting {
                                answer,
                                got: Collected::Empty,
                            };
                        }
                    }
                }
                State::Collecting { answer: body, got } => loop {
                    if body.is_end_stream() {
                        return Poll::Ready(self.finish());
                    }
                    match catch_unwind(AssertUnwindSafe(|| body.as_mut().poll_data(cx))) {
                        Err(_) => return Poll::Ready(failed(self.ctx, Failure::Panicked)),
                        Ok(Poll::Pending) if got.is_empty() => return Poll::Pending,
                        Ok(Poll::Pending) => return Poll::Ready(self.stream(date)),
                        Ok(Poll::Ready(None)) => return Poll::Ready(self.finish()),
                        Ok(Poll::Ready(Some(Err(err)))) => return Poll::Ready(self.fail(&err)),
                        Ok(Poll::Ready(Some(Ok(data)))) => {
                            got.push(data);
                            if got.len() > STREAM_AFTER {
                                return Poll::Ready(self.stream(date));
                            }
                        }
                    }
                },
            }
        }
    }

    /// The service, or its response's body before the head was sent, failed with `err`.
    fn fail(&self, err: &BoxError) -> Step {
        let failure = Failure::of(err);
        match failure.refusal() {
            Some((status, _)) => {
                tracing::debug!(error = %err, status, "the client's fault: refused")
            }
            None => tracing::warn!(
                error = %err,
                "the service (or its body before the head was sent) failed: answered 500"
            ),
        }
        failed(self.ctx, failure)
    }

    /// The body ended: the whole answer.
    fn finish(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Collecting { answer, got } => Step::Whole(Whole {
                ctx: self.ctx,
                answer: Ok((answer, got)),
            }),
            _ => failed(self.ctx, Failure::Failed),
        }
    }

    /// The body goes on: its head and what came so far, framed by the length it knows or
    /// in chunks.
    fn stream(&mut self, date: &DateCache) -> Step {
        let State::Collecting {
            answer: mut body,
            got,
        } = std::mem::replace(&mut self.state, State::Taken)
        else {
            return failed(self.ctx, Failure::Failed);
        };
        let Some(parts) = body.parts() else {
            return failed(self.ctx, Failure::Failed);
        };
        let length = body
            .size_hint()
            .exact()
            .map(|rest| rest + got.len() as u64)
            .or_else(|| declared_length(parts));
        let framing = length.map_or(Framing::Chunked, Framing::Length);
        let mut out = BytesMut::with_capacity(256 + got.len() + 32);
        let head = h1::encode_http_head(parts, self.ctx, date, framing, &mut out);
        h1::recycle_header_map(body.as_mut().take_headers());
        let mut stream = Stream {
            out,
            body,
            coding: head.body,
            keep_alive: head.keep_alive,
            owed: length,
        };
        stream.put(got.as_slice());
        Step::Stream(stream)
    }
}

/// The `Content-Length` a service set itself, if it is a number.
fn declared_length(parts: &http::response::Parts) -> Option<u64> {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl Stream {
    /// Append a piece of the body as the head framed it.
    fn put(&mut self, data: &[u8]) {
        match self.coding {
            None => {}
            Some(BodyCoding::Chunked) => h1::chunked::encode_chunk(data, &mut self.out),
            Some(BodyCoding::AsIs) => {
                let take = match &mut self.owed {
                    Some(owed) => {
                        let n = (*owed).min(data.len() as u64);
                        *owed -= n;
                        n as usize
                    }
                    None => data.len(),
                };
                self.out.put_slice(&data[..take]);
            }
        }
    }

    /// The body ended: what ends it on the wire, and whether the connection stays open
    /// (not if a promised length was not met, nor after a body cut short by an error).
    fn end(&mut self, clean: bool) -> bool {
        if clean && self.coding == Some(BodyCoding::Chunked) {
            self.out.put_slice(h1::chunked::LAST_CHUNK);
        }
        let short = self.coding == Some(BodyCoding::AsIs) && self.owed.is_some_and(|n| n > 0);
        self.keep_alive && clean && !short
    }
}

/// A stream's credit: bytes sent to the reader and not yet in a connection's output.
#[derive(Default)]
struct Credit {
    outstanding: AtomicUsize,
    freed: Notify,
}

/// A piece of a stream: its bytes, returning their credit when the connection is done with
/// them.
struct Piece {
    bytes: BytesMut,
    credit: Arc<Credit>,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        self.credit
            .outstanding
            .fetch_sub(self.bytes.len(), Ordering::AcqRel);
        self.credit.freed.notify_one();
    }
}

impl Credit {
    /// Wait until the stream may have `more` bytes outstanding.
    async fn reserve(self: &Arc<Self>, more: usize) {
        while self.outstanding.load(Ordering::Acquire) + more > STREAM_WINDOW
            && self.outstanding.load(Ordering::Acquire) > 0
        {
            // A release between the check and here leaves a permit: no wake-up is lost.
            self.freed.notified().await;
        }
        self.outstanding.fetch_add(more, Ordering::AcqRel);
    }

    fn piece(self: &Arc<Self>, bytes: BytesMut) -> Bytes {
        Bytes::from_owner(Piece {
            bytes,
            credit: self.clone(),
        })
    }
}

/// Where a task sends its answer's parts.
struct Reply {
    port: Arc<ReplyPort>,
    conn: ConnId,
    seq: u64,
}

impl Reply {
    fn send(&self, bytes: Bytes, end: Option<bool>) {
        self.port.send(Completion {
            conn: self.conn,
            seq: self.seq,
            bytes,
            end,
        });
    }
}

thread_local! {
    /// The runtime thread's counters, and its Date line.
    static THREAD: RefCell<Option<(Arc<ThreadStats>, DateCache)>> = const { RefCell::new(None) };
    /// A worker in the background: its state and the runtime's answers in progress.
    static BACKGROUND: RefCell<Option<(Background, Arc<AtomicUsize>)>> =
        const { RefCell::new(None) };
}

/// Before a task's poll on a worker in the background: the answers in progress beyond one
/// per worker are the work waiting.
fn adjust_background() {
    BACKGROUND.with(|b| {
        if let Some((b, in_flight)) = b.borrow_mut().as_mut() {
            let waiting = in_flight
                .load(Ordering::Relaxed)
                .saturating_sub(b.workers());
            b.adjust(waiting);
        }
    })
}

/// Run `f` with this runtime thread's counters and a fresh Date line.
fn with_thread<R>(f: impl FnOnce(Option<&ThreadStats>, &DateCache) -> R) -> R {
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        match t.as_mut() {
            Some((stats, date)) => {
                date.refresh_by(Instant::now());
                f(Some(stats), date)
            }
            None => f(None, &DateCache::new(SystemTime::now())),
        }
    })
}

/// Counts the time a task spends being polled as its thread's busy time.
struct Timed<F>(Pin<Box<F>>);

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        adjust_background();
        let start = Instant::now();
        let out = self.0.as_mut().poll(cx);
        let ns = start.elapsed().as_nanos() as u64;
        with_thread(|stats, _| stats.map(|s| s.busy(ns)));
        out
    }
}

/// Lowers the count of answers in progress when the task ends, aborted or not.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A task's whole life: finish the answer, then send it whole or stream it. Where readers
/// learn, the first poll's cost is told to `learn`'s table as its route's.
async fn answer(
    mut answering: Answering,
    reply: Reply,
    mut learn: Option<(Route, Arc<CheapRoutes>)>,
    refusals: Option<RenderRefusal>,
) {
    let step = std::future::poll_fn(|cx| {
        let mut poll = || with_thread(|_, date| answering.poll(cx, date));
        match learn.take() {
            // Measured in what the thread ran, not in wall time: a worker is preempted
            // often (more so in the background), which says nothing of what the route costs.
            Some((route, cheap)) => cheap.on_worker(route, poll, Poll::is_ready),
            None => poll(),
        }
    })
    .await;
    match step {
        Step::Whole(whole) => {
            let mut out = BytesMut::new();
            let panicked = whole.panicked();
            let keep_alive = with_thread(|stats, date| {
                if let Some(stats) = stats {
                    stats.requests(1);
                    if panicked {
                        stats.panicked();
                    }
                }
                whole.encode(date, refusals.as_ref(), &mut out)
            });
            reply.send(out.freeze(), Some(keep_alive));
        }
        Step::Stream(stream) => stream_rest(stream, reply).await,
    }
}

/// Send a streamed body's head and what came with it, then each piece as it is produced,
/// each waiting for the credit the connection returns as it takes pieces into its output.
async fn stream_rest(mut stream: Stream, reply: Reply) {
    if stream.coding.is_none() {
        // No body goes on the wire (HEAD, 204, 304): the head is the whole answer, and the
        // body is dropped unread rather than produced for nothing.
        let keep_alive = stream.end(true);
        with_thread(|stats, _| stats.map(|s| s.requests(1)));
        return reply.send(stream.out.freeze(), Some(keep_alive));
    }
    let credit = Arc::new(Credit::default());
    let first = std::mem::take(&mut stream.out);
    credit.reserve(first.len()).await;
    reply.send(credit.piece(first), None);
    let clean = loop {
        let frame = std::future::poll_fn(|cx| {
            match catch_unwind(AssertUnwindSafe(|| stream.body.as_mut().poll_data(cx))) {
                Ok(poll) => poll.map(Ok),
                Err(_) => Poll::Ready(Err(())),
            }
        })
        .await;
        match frame {
            Ok(Some(Ok(data))) => {
                stream.put(&data);
                let out = std::mem::take(&mut stream.out);
                if out.is_empty() {
                    continue;
                }
                credit.reserve(out.len()).await;
                reply.send(credit.piece(out), None);
            }
            Ok(None) => break true,
            Ok(Some(Err(err))) => {
                tracing::warn!(error = %err, "a response body failed mid-stream: the connection closes");
                break false;
            }
            Err(()) => {
                with_thread(|stats, _| stats.map(|s| s.panicked()));
                break false;
            }
        }
    };
    let keep_alive = stream.end(clean);
    with_thread(|stats, _| stats.map(|s| s.requests(1)));
    reply.send(stream.out.freeze(), Some(keep_alive));
}

impl Tasks {
    /// Begin answering `req` and drive it as far as it goes here, without waiting (the
    /// inline first poll; see the module's doc).
    pub(crate) fn start_here(
        &self,
        req: h1::Request,
        body: Option<RequestBody>,
        ctx: EncodeContext,
        date: &DateCache,
    ) -> (Answering, Poll<Step>) {
        let mut answering = self.call(req, body, ctx, CallAt::Here);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let poll = answering.poll(&mut cx, date);
        (answering, poll)
    }

    /// Call the service for `req` (its body streaming when `body` is given). A request
    /// whose body streams is spawned at once, room or not: its body is already being read,
    /// and a connection has at most one such request at a time.
    pub(crate) fn begin(
        &self,
        req: h1::Request,
        body: Option<RequestBody>,
        ctx: EncodeContext,
    ) -> Answering {
        self.call(req, body, ctx, CallAt::FirstPoll)
    }

    /// The runtime the answers run on. Calls and first polls happen on the reader's thread
    /// in its context (so that a service reaching for tokio's timers or I/O registers with
    /// this runtime's driver), which the reader's loop holds for the thread's life
    /// ([`crate::event_loop`]): entering it per request cost ~80 instructions.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Call the service for `req` where `at` says, in the runtime's context (see
    /// [`Tasks::handle`]).
    fn call(
        &self,
        req: h1::Request,
        body: Option<RequestBody>,
        ctx: EncodeContext,
        at: CallAt,
    ) -> Answering {
        Answering::new(self.app.call(req, body, at), ctx)
    }

    /// Finish on the runtime an answer begun here; the parts go to `conn`'s slot `seq`.
    pub(crate) fn spawn(&self, answering: Answering, conn: ConnId, seq: u64) -> AbortHandle {
        let reply = self.reply(conn, seq);
        let learn = answering.route.zip(self.cheap.clone());
        self.run(answer(answering, reply, learn, self.refusals.clone()))
    }

    /// Answers in progress on the runtime, from every reader.
    pub(crate) fn in_progress(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The routes this reader may answer itself, where it learns them.
    pub(crate) fn cheap(&self) -> Option<&CheapRoutes> {
        self.cheap.as_deref()
    }

    /// Stream on the runtime the rest of a body whose head was produced here.
    pub(crate) fn spawn_stream(&self, stream: Stream, conn: ConnId, seq: u64) -> AbortHandle {
        let reply = self.reply(conn, seq);
        self.run(stream_rest(stream, reply))
    }

    fn reply(&self, conn: ConnId, seq: u64) -> Reply {
        Reply {
            port: self.port.clone(),
            conn,
            seq,
        }
    }

    /// Spawn an answer's task, counted in progress until it ends or is aborted.
    fn run(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = InFlight(self.in_flight.clone());
        let task = async move {
            let _in_flight = in_flight;
            task.await
        };
        self.handle.spawn(Timed(Box::pin(task))).abort_handle()
    }

    /// Hand a parsed request to the runtime, or give it back when as many answers as the
    /// queue depth are already in progress (the reader then stops reading).
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_submit(&self, job: Job) -> Result<AbortHandle, Job> {
        let (conn, seq) = (job.conn, job.seq);
        let answering = self.admit(job)?;
        Ok(self.spawn(answering, conn, seq))
    }

    /// Call the service for a parsed request, to be spawned with the rest of the reader's
    /// round ([`Tasks::spawn`]); or give it back when as many answers as the queue depth are
    /// already in progress. Spawning a round's answers together wakes a parked runtime
    /// thread once for them all, not once each (measured: `pool` parked and woke its worker
    /// for every keep-alive request).
    #[allow(clippy::result_large_err)]
    pub(crate) fn admit(&self, job: Job) -> Result<Answering, Job> {
        if self.in_flight.load(Ordering::Acquire) >= self.cap {
            return Err(job);
        }
        Ok(self.begin(job.req, None, job.ctx))
    }

    /// A reader's link to the runtime behind `handle`: its answers come back through
    /// `port`; `in_flight` is shared by every reader, up to `cap` at once; `cheap`, where
    /// the readers learn routes, is shared by them and the runtime's workers.
    pub(crate) fn new(
        handle: tokio::runtime::Handle,
        app: Arc<dyn AsyncApp>,
        port: ReplyPort,
        in_flight: Arc<AtomicUsize>,
        cap: usize,
        alive: Sender<()>,
        cheap: Option<Arc<CheapRoutes>>,
    ) -> Self {
        Tasks {
            handle,
            app,
            port: Arc::new(port),
            in_flight,
            cap: cap.max(1),
            _alive: alive,
            cheap,
            refusals: None,
        }
    }

    /// Refusals rendered by the application's `render` (see
    /// [`ServerBuilder::on_refusal`](crate::ServerBuilder::on_refusal)).
    pub(crate) fn rendering_refusals(mut self, render: Option<RenderRefusal>) -> Self {
        self.refusals = render;
        self
    }
}

/// A runtime with one worker thread per entry of `stats`, named after it and counting into
/// it; in the background when `background` gives the answers in progress to weigh. Threads
/// tokio adds later for blocking calls are named `{first}-blocking`, count nowhere and keep
/// the scheduler's defaults.
pub(crate) fn start(
    stats: Vec<Arc<ThreadStats>>,
    background: Option<(Arc<Crew>, Arc<AtomicUsize>)>,
) -> std::io::Result<tokio::runtime::Runtime> {
    let names: Vec<String> = stats.iter().map(|s| s.name().to_string()).collect();
    let blocking = format!(
        "{}-blocking",
        names
            .first()
            .map_or("async", |n| n.split('-').next().unwrap_or(n))
    );
    let next = AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(stats.len().max(1))
        .thread_name_fn(move || {
            let i = next.fetch_add(1, Ordering::Relaxed);
            names.get(i).cloned().unwrap_or_else(|| blocking.clone())
        })
        .on_thread_start(move || {
            let name = std::thread::current().name().map(str::to_string);
            let mine = stats.iter().find(|s| Some(s.name()) == name.as_deref());
            if let Some(mine) = mine {
                if let Some((crew, in_flight)) = &background {
                    BACKGROUND.with(|b| {
                        *b.borrow_mut() = Some((Background::enter(crew), in_flight.clone()))
                    });
                }
                THREAD.with(|t| {
                    *t.borrow_mut() = Some((mine.clone(), DateCache::new(SystemTime::now())))
                });
            }
        })
        .enable_all()
        .build()
}

/// The body of the thread that owns the runtime: once every reader has let go (the drain
/// is over, every connection closed and its tasks aborted), stop it.
pub(crate) fn keep(rt: tokio::runtime::Runtime, alive: Receiver<()>) -> impl FnOnce() + Send {
    move || {
        // Returns when the last sender is dropped: nothing is ever sent.
        let _ = alive.recv();
        rt.shutdown_timeout(RUNTIME_STOP);
    }
}
