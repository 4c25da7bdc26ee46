//! One client connection's protocol state, with no I/O in it (the quinn-proto way).
//!
//! A [`Connection`] holds no file descriptor and makes no syscall; nor does it read a clock,
//! call the application or write a shared counter. Everything it needs comes in as an
//! argument, and what it counted goes out in a [`Tally`] the driver adds to its thread's
//! counters — so every transition is tested here with no socket, on a made-up clock, and the
//! same core serves both drivers.
//!
//! # Inputs (each with `now`)
//! - bytes received: [`Connection::read_buffer`] lends the buffer they go into (a driver
//!   that reads reads into it; one that receives into its own buffers copies them in), then
//!   [`Connection::received`] reports how many, with the kernel's timestamp when the read
//!   asked for one ([`Stamp`]: the time they arrived, and both clocks at the read);
//! - the peer's FIN: [`Connection::peer_closed`]; a failed call or a reset:
//!   [`Connection::broke`];
//! - bytes sent: [`Connection::sent`], with the buffer [`Connection::poll_transmit`] gave;
//! - an answer: [`Connection::respond`] for a request run on the reader's thread,
//!   [`Connection::complete`] for a worker's (in any order: answers leave in request order);
//! - a deadline passed: [`Connection::expire`], with the kind [`Connection::poll_deadline`]
//!   named;
//! - while lingering after a refusal: [`Connection::discard_input`] for bytes thrown away.
//!
//! # Outputs, polled in this order after any input
//! 1. [`Connection::poll_request`] until `None`: each request to run, here or on a pool
//!    ([`Connection::push_pending`] reserves its answer's place; [`Connection::stall`] keeps
//!    one a full pool refused, [`Connection::take_stalled`] gives it back);
//! 2. [`Connection::poll_transmit`]: the bytes to send now (one send at a time);
//! 3. [`Connection::poll_verdict`]: keep, half-close, or close;
//! 4. [`Connection::wants_read`] (and [`Connection::unblocked`]: requests already buffered
//!    can be parsed again) — whether to take bytes from the kernel, which is the
//!    backpressure;
//! 5. [`Connection::poll_deadline`]: the one deadline it is under now;
//!
//! and then [`Connection::park_buffers`], which lends its idle buffers back to the thread.
//!
//! The time comes in with each input (`now`, and with received bytes the wall clock their
//! kernel timestamps are compared with), the application's body limit comes in as a
//! function to ask ([`ParseContext::body_limit`]), and the requests it answers itself, the
//! bytes and the queue waits go out in the [`Tally`].
//!
//! Buffers are `BytesMut`: received bytes land in `rbuf`, requests are cut out of it without
//! copying, and every response ready for the connection is appended to `wbuf` so that it
//! leaves in one send. In `pool`, responses come back from workers out of order; `slots`
//! puts them back in request order before they reach `wbuf`.

pub(crate) mod buffers;
mod protocol;
#[cfg(test)]
mod tests;
pub(crate) mod timer;

use crate::app::refusal;
use crate::config::Timeouts;
use crate::connection::buffers::Buffers;
use crate::observe::queue_wait::PendingWait;
use crate::roles::worker::Job;
use crate::tls::session::Session;
use crate::tls::TlsFailure;
use bytes::{Buf, Bytes, BytesMut};
use h1::{DateCache, Decoded, EncodeContext, Limits, RequestDecoder, Response, Streamed};
pub(crate) use protocol::{Expired, Expiry, ParseContext, Polled, Stamp, Tally, Verdict};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Unsent output past which a connection's further requests wait: a client that pipelines
/// and never reads must not grow our memory.
pub(crate) const OUTPUT_BOUND: usize = 256 * 1024;
/// Requests of one connection in the worker pool at once (`pool`); past it reading pauses.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// Requests of one connection in the worker pool before any answer has come back.
const INITIAL_IN_FLIGHT: usize = 4;
/// Free space we want in a read buffer before each read.
const READ_SPARE: usize = 4 * 1024;
/// How much a read buffer grows by when it needs room.
const READ_GROW: usize = 16 * 1024;
/// The most a lingering close discards before it gives up and closes.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// A response in request order, as its worker or task sends it: in one part (a worker's
/// encoded answer) or in several (a streamed body, each part as it is produced). `end` is
/// set, with whether the connection stays open, once the last part came.
#[derive(Default)]
pub(crate) struct Slot {
    parts: VecDeque<Bytes>,
    end: Option<bool>,
}

/// Where a connection is in its life. Requests overlap on a keep-alive connection (one is
/// read while earlier ones are answered), so within `Open` what it is doing is
/// its phase (what is owed: output, answers, a body, a head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    /// Reading requests and answering them.
    Open,
    /// No further requests will be read; close once the answers are out. `refused`: it
    /// ended on a refusal, so the close half-closes and lingers first.
    Closing { refused: bool },
    /// Half-closed after a refusal: discarding input until this instant, then close.
    Lingering { until: Instant },
    /// A read or write failed (or the peer reset): close now.
    Broken,
}

/// Why the parser last stopped. Reading more while whole requests still wait in `rbuf`
/// would only move the client's backlog from the kernel's receive queue, where it slows the
/// client, into our memory; so bytes are read only when the parser asked for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intake {
    /// For want of bytes.
    WantsBytes,
    /// For backpressure (answers owed, output full): parse again once it is relieved.
    Held,
    /// A streaming body's consumer has no room: neither parse nor read until
    /// [`Connection::resume_body`].
    BodyPaused,
}

/// What a connection is doing, as its tests check it.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for (the rest of) a request head, or idle between requests.
    ReadingHead,
    /// Reading a request body.
    ReadingBody,
    /// Requests are with the handler (a worker, or a stalled submission).
    Handling,
    /// Answers wait to be sent.
    Writing,
    /// Half-closed after a refusal, discarding input.
    Lingering,
    /// Nothing more will happen: close the socket.
    Closed,
}

pub(crate) struct Connection {
    /// The client's address, as accept reported it; each request carries a copy.
    peer: Option<SocketAddr>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// Bytes a completion-based driver took from `wbuf` and has not yet confirmed sent.
    sending: u32,
    decoder: RequestDecoder,
    life: Life,
    /// The client closed its sending side.
    peer_closed: bool,
    /// Responses not yet written, in request order (`pool`).
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    base_seq: u64,
    /// A response that closes the connection was written: drop the rest.
    discard: bool,
    /// A request that found the worker queue full (`pool` backpressure).
    stalled: Option<Box<Job>>,
    /// Why the parser last stopped, which says whether to read.
    intake: Intake,
    /// The request whose body is streaming ends the connection: read no further request
    /// once the body is in (stopping at its head would starve its body).
    close_after_body: bool,
    /// Requests parsed so far (saturating).
    requests: u32,
    /// When `accept` returned this connection.
    accepted_at: Instant,
    /// How long the first bytes of the request now in `rbuf` waited in the kernel's receive
    /// queue, and how many requests that stands for (sampled timing), counted for each
    /// request they begin.
    receive_wait: PendingWait,
    /// The accept-queue wait is still to be counted, at the first timestamped read.
    accept_wait_pending: bool,
    /// When the bytes of the request head now in `rbuf` started to arrive.
    head_started: Option<Instant>,
    last_read: Instant,
    last_write: Instant,
    /// Bytes discarded while lingering.
    discarded: u32,
    /// Bytes of answers waiting in `slots` for an earlier one or for room in `wbuf`.
    held: u32,
    /// Size of the last answer a worker sent: how many more requests the output bound can
    /// afford to have in flight (`pool`).
    last_answer: u32,
    /// The connection's TLS, on a TLS listener: reads fill its ciphertext buffer, whose
    /// plaintext lands in `rbuf`; `wbuf` is sealed into its output when sent.
    tls: Option<Box<Session>>,
}

/// A length as counted in 32 bits (answers are far smaller than 4 GiB).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Whether the output takes another part: what is discarded takes no room; an empty queue
/// always takes one (even beside a send in flight); else the whole output (`queued` plus
/// what a send holds) must be under [`OUTPUT_BOUND`].
fn room(discard: bool, queued: usize, output: usize) -> bool {
    discard || queued == 0 || output < OUTPUT_BOUND
}

/// Refusals are answered as HTTP/1.1 and close the connection.
fn error_context() -> EncodeContext {
    EncodeContext {
        head: false,
        keep_alive: false,
        version: h1::Version::Http11,
        connect: false,
    }
}

impl Connection {
    pub(crate) fn new(peer: Option<SocketAddr>, limits: Limits, now: Instant) -> Self {
        Connection {
            peer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            sending: 0,
            decoder: RequestDecoder::new(limits),
            life: Life::Open,
            peer_closed: false,
            slots: VecDeque::new(),
            base_seq: 0,
            discard: false,
            stalled: None,
            intake: Intake::WantsBytes,
            close_after_body: false,
            requests: 0,
            accepted_at: now,
            receive_wait: PendingWait::NONE,
            accept_wait_pending: true,
            head_started: None,
            last_read: now,
            last_write: now,
            discarded: 0,
            held: 0,
            last_answer: 0,
            tls: None,
        }
    }

    /// Speak TLS on this connection: everything read is ciphertext for `session`.
    pub(crate) fn with_tls(mut self, session: Session) -> Self {
        self.tls = Some(Box::new(session));
        self
    }

    /// The connection speaks TLS and its handshake is done.
    pub(crate) fn tls_established(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.established())
    }

    /// Sealed records (or handshake messages) waiting to be sent; 0 without TLS.
    fn sealed(&self) -> usize {
        self.tls.as_ref().map_or(0, |t| t.pending_out())
    }

    /// Output queued and not yet handed to a send: answers, and sealed records.
    fn queued(&self) -> usize {
        self.wbuf.len() + self.sealed()
    }

    /// Output not yet taken by the kernel: what is queued, and a send in flight.
    fn output(&self) -> usize {
        self.queued() + self.sending as usize
    }

    /// The connection is about to close: a TLS handshake still going on ends here (the
    /// client went away, or it was cut), and is counted so.
    pub(crate) fn closing(&mut self, tally: &mut Tally) {
        if let Some(tls) = &mut self.tls {
            tls.abandon(TlsFailure::Closed, &mut tally.tls);
        }
    }

    /// When `accept` returned this connection.
    pub(crate) fn accepted_at(&self) -> Instant {
        self.accepted_at
    }

    /// Requests parsed so far.
    pub(crate) fn requests(&self) -> u32 {
        self.requests
    }

    /// Received bytes not yet taken by a request.
    pub(crate) fn buffered_in(&self) -> u64 {
        self.rbuf.len() as u64
    }

    /// What the connection is doing now.
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        match self.life {
            Life::Broken => Phase::Closed,
            Life::Lingering { .. } => Phase::Lingering,
            _ if self.has_output() => Phase::Writing,
            _ if !self.slots.is_empty() || self.stalled.is_some() => Phase::Handling,
            _ if self.decoder.in_body() => Phase::ReadingBody,
            _ => Phase::ReadingHead,
        }
    }

    /// Requests this connection may have with the workers: at most [`MAX_IN_FLIGHT`], and
    /// no more than the output bound can hold at the size of the last answer, so a client
    /// that pipelines requests for large answers and reads slowly cannot make the workers
    /// fill our memory.
    fn in_flight_cap(&self) -> usize {
        if self.last_answer == 0 {
            // Slow start: until one answer shows how large they are.
            return INITIAL_IN_FLIGHT;
        }
        (OUTPUT_BOUND / self.last_answer as usize).clamp(1, MAX_IN_FLIGHT)
    }

    /// The deadline this connection is under now, and which one it is. `None` while the
    /// server itself owes the next step (requests with the workers).
    pub(crate) fn poll_deadline(&self, t: &Timeouts) -> Option<(Instant, Expiry)> {
        if let Life::Lingering { until } = self.life {
            return Some((until, Expiry::Linger));
        }
        if self.has_output() {
            return Some((self.last_write + t.write, Expiry::Write));
        }
        if self.decoder.in_body() && self.intake != Intake::BodyPaused {
            // A body still arriving, even while earlier answers (or its own streaming
            // handler) are owed: the client must keep sending it.
            return Some((self.last_read + t.body, Expiry::Body));
        }
        if !self.slots.is_empty() || self.stalled.is_some() || self.intake == Intake::BodyPaused {
            return None;
        }
        if let Some(start) = self.head_started {
            return Some((start + t.header, Expiry::Header));
        }
        if self.requests == 0 {
            return Some((self.accepted_at + t.header, Expiry::Header));
        }
        Some((self.last_read.max(self.last_write) + t.idle, Expiry::Idle))
    }

    /// Whether another request may be parsed now (all backpressure conditions clear).
    pub(crate) fn may_parse(&self) -> bool {
        self.life == Life::Open
            && self.intake != Intake::BodyPaused
            && self.stalled.is_none()
            && self.slots.len() < self.in_flight_cap()
            && self.output() + (self.held as usize) < OUTPUT_BOUND
    }

    /// Whether the connection wants bytes from the socket now (the driver adds whether the
    /// kernel has any).
    pub(crate) fn wants_read(&self) -> bool {
        if let Life::Lingering { .. } = self.life {
            return true;
        }
        !self.peer_closed && self.intake == Intake::WantsBytes && self.may_parse()
    }

    /// Parsing stopped for output backpressure that has since been relieved: requests
    /// still wait in `rbuf`, and no read event will come for them.
    pub(crate) fn unblocked(&self) -> bool {
        self.may_parse() && self.intake == Intake::Held
    }

    /// Every answer is out and nothing more will come: close.
    fn finished(&self) -> bool {
        let owes_nothing = self.slots.is_empty() && !self.has_output() && self.stalled.is_none();
        match self.life {
            Life::Broken => true,
            Life::Lingering { .. } => false,
            Life::Closing { .. } => owes_nothing,
            Life::Open => self.peer_closed && owes_nothing,
        }
    }

    /// Part of a request has been read and not the rest: a close now aborts it.
    fn mid_request(&self) -> bool {
        !self.rbuf.is_empty() || self.decoder.in_body()
    }

    /// When the connection last got bytes, if it is open and waits for the rest of a
    /// request (a driver's check that the peer is still there).
    pub(crate) fn waiting_mid_request_since(&self) -> Option<Instant> {
        (self.life == Life::Open && !self.peer_closed && self.mid_request())
            .then_some(self.last_read)
    }

    /// Nothing in progress: no partial request, nothing owed. Safe to close when draining.
    pub(crate) fn idle(&self) -> bool {
        self.rbuf.is_empty()
            && !self.decoder.in_body()
            && self.slots.is_empty()
            && !self.has_output()
            && self.stalled.is_none()
    }

    /// Answers wait to be sent, or are being sent.
    fn has_output(&self) -> bool {
        self.output() > 0
    }

    /// Once what is queued is sent, the connection closes: no answer is owed, and no
    /// request will be read (TLS says close_notify then).
    fn ending(&self) -> bool {
        let owes_nothing = self.slots.is_empty() && self.stalled.is_none();
        match self.life {
            Life::Closing { .. } => owes_nothing,
            Life::Open => self.peer_closed && owes_nothing && !self.mid_request(),
            Life::Lingering { .. } | Life::Broken => false,
        }
    }

    // ---- input -------------------------------------------------------------------------

    /// The buffer the next read goes into, with room for it (a buffer is lent from
    /// `spare` if the connection holds none).
    pub(crate) fn read_buffer(&mut self, spare: &mut Buffers) -> &mut BytesMut {
        let buf = match &mut self.tls {
            Some(tls) => &mut tls.inbuf,
            None => &mut self.rbuf,
        };
        spare.lend(buf);
        if buf.capacity() - buf.len() < READ_SPARE {
            buf.reserve(READ_GROW);
        }
        buf
    }

    /// Whether the next bytes begin a request (their arrival is its receive-queue wait).
    pub(crate) fn starts_request(&self) -> bool {
        self.rbuf.is_empty() && !self.decoder.in_body()
    }

    /// `n` bytes were appended to [`Connection::read_buffer`] at `now` (read into it, or
    /// copied from a driver's own buffer); `stamp` is the kernel's receive timestamp, if the
    /// read asked and it gave one.
    pub(crate) fn received(
        &mut self,
        n: usize,
        stamp: Option<Stamp>,
        now: Instant,
        tally: &mut Tally,
    ) {
        tally.bytes_in += n as u64;
        self.last_read = now;
        let n = match &mut self.tls {
            Some(tls) => {
                let opened = tls.open(&mut self.rbuf, now, &mut tally.tls);
                if opened.peer_closed {
                    self.peer_closed = true;
                }
                if opened.failed.is_some() {
                    // What rustls had to say (an alert), or the plain-text 400, goes out;
                    // then half-close and linger as after any refusal.
                    self.life = Life::Closing { refused: true };
                    self.rbuf.clear();
                    return;
                }
                opened.plain
            }
            None => n,
        };
        // They begin a request if the buffer held nothing before them, outside a body.
        let starts = n > 0 && self.rbuf.len() == n && !self.decoder.in_body();
        match stamp {
            Some(stamp) => self.count_waits(stamp, starts, tally),
            // Not timed (or not stamped): the requests these bytes begin have no known wait.
            None if starts => self.receive_wait = PendingWait::NONE,
            None => {}
        }
    }

    /// Whether the connection's accept-queue wait is still to be counted: its first stamped
    /// read is still to come.
    pub(crate) fn first_stamp_pending(&self) -> bool {
        self.accept_wait_pending
    }

    /// Count what a read's kernel timestamp says (see [`crate::observe::queue_wait`]): the
    /// connection's accept-queue wait at its first timestamped read, and, when the read
    /// begins a request, how long its bytes waited in the receive queue (kept for each
    /// request they begin).
    fn count_waits(&mut self, stamp: Stamp, starts: bool, tally: &mut Tally) {
        let Stamp {
            arrived,
            weight,
            read_at: (now, wall),
        } = stamp;
        if !starts && !self.accept_wait_pending {
            // The rest of a request already counted.
            return;
        }
        let waited = wall.duration_since(arrived).unwrap_or(Duration::ZERO);
        if starts {
            self.receive_wait = PendingWait::new(waited, weight.into());
        }
        if self.accept_wait_pending {
            self.accept_wait_pending = false;
            // The bytes arrived `waited` ago; the accept came `since_accept` ago. Bytes that
            // came after the accept mean the connection was out of the queue before it
            // spoke: 0.
            let since_accept = now.saturating_duration_since(self.accepted_at);
            tally.accept_waits.push(waited.saturating_sub(since_accept));
        }
    }

    /// The client closed its sending side (a read returned 0).
    pub(crate) fn peer_closed(&mut self) {
        self.peer_closed = true;
    }

    /// A read or write failed, or the peer reset: nothing more can be done.
    pub(crate) fn broke(&mut self) {
        self.life = Life::Broken;
    }

    /// Whether the connection is lingering (its reads are discarded).
    pub(crate) fn lingering(&self) -> bool {
        matches!(self.life, Life::Lingering { .. })
    }

    /// Lingering: `n` more bytes read and thrown away. `false`: enough, close now.
    pub(crate) fn discard_input(&mut self, n: usize) -> bool {
        self.rbuf.clear();
        if let Some(tls) = &mut self.tls {
            tls.inbuf.clear();
        }
        self.discarded = self.discarded.saturating_add(n as u32);
        self.discarded as usize <= LINGER_MAX_BYTES
    }

    // ---- requests ----------------------------------------------------------------------

    /// The next request to run, if one is complete and backpressure allows. Refusals
    /// (malformed, too large, …) are answered here and end the connection; `100 Continue`
    /// is queued here. Call until it returns `None`, answering each request with
    /// [`Connection::respond`] or, when it goes to a pool, [`Connection::push_pending`].
    pub(crate) fn poll_request(
        &mut self,
        cx: &ParseContext<'_>,
        tally: &mut Tally,
    ) -> Option<Polled> {
        if self.intake == Intake::BodyPaused {
            return None;
        }
        self.intake = Intake::Held;
        while self.may_parse() {
            // Nothing read and no body under way: the decoder could only say "partial". This
            // is how every round ends (the call after the last request of a read), and it
            // comes before the answers are written.
            if self.rbuf.is_empty() && !self.decoder.in_body() {
                self.intake = Intake::WantsBytes;
                break;
            }
            let limit = |req: &h1::Request| (cx.body_limit)(req);
            let decoded = match cx.stream_over {
                // Every body whole: the request is not wrapped on its way out.
                None => self.decoder.decode_with(&mut self.rbuf, limit),
                over => {
                    let mid_body = self.decoder.streaming_body();
                    match self.decoder.decode_streaming(&mut self.rbuf, limit, over) {
                        Ok(Streamed::Decoded(decoded)) => Ok(decoded),
                        Ok(Streamed::Data { bytes, last }) => {
                            self.note_head(cx.now);
                            if last && std::mem::take(&mut self.close_after_body) {
                                self.stop_reading();
                            }
                            return Some(Polled::Body(bytes, last));
                        }
                        Ok(Streamed::Head { req, length }) => {
                            let (req, ctx) = self.begin(req, true, cx, tally);
                            return Some(Polled::Streaming(req, ctx, length));
                        }
                        // The body's request is out and its answer is coming: a refusal
                        // would be a second answer to it. Its consumer is told instead;
                        // and after broken framing no next request can be found, so the
                        // connection closes once the answers are out, lingering.
                        Err(err) if mid_body => {
                            self.life = Life::Closing { refused: true };
                            return Some(Polled::BodyFailed(err));
                        }
                        Err(err) => Err(err),
                    }
                }
            };
            match decoded {
                Ok(Decoded::Partial) => {
                    self.intake = Intake::WantsBytes;
                    break;
                }
                Ok(Decoded::Continue) => self.push_ready(h1::response::CONTINUE, true, cx.now),
                Err(err) => {
                    let mut out = BytesMut::new();
                    refusal::respond(cx.refusals, err.status(), &err.to_string()).encode(
                        error_context(),
                        cx.date,
                        &mut out,
                    );
                    self.push_ready(&out, false, cx.now);
                    self.life = Life::Closing { refused: true };
                    tally.requests += 1;
                    break;
                }
                Ok(Decoded::Request(req)) => {
                    let (req, ctx) = self.begin(req, false, cx, tally);
                    return Some(Polled::Request(req, ctx));
                }
            }
        }
        self.note_head(cx.now);
        None
    }

    /// A request's head is in (`streams`: its body follows as it arrives): count it and its
    /// receive-queue wait, and say how to answer.
    fn begin(
        &mut self,
        mut req: h1::Request,
        streams: bool,
        cx: &ParseContext<'_>,
        tally: &mut Tally,
    ) -> (h1::Request, EncodeContext) {
        self.requests = self.requests.saturating_add(1);
        if let Some((wait, weight)) = self.receive_wait.get() {
            tally.receive_waits.push((wait, weight));
        }
        req.set_peer_addr(self.peer);
        let ctx = EncodeContext::for_request(&req, !cx.draining);
        match (ctx.keep_alive, streams) {
            (true, _) => {}
            (false, true) => self.close_after_body = true,
            (false, false) => self.stop_reading(),
        }
        self.note_head(cx.now);
        (req, ctx)
    }

    /// The streaming body's consumer is full: read no more until [`Connection::resume_body`].
    pub(crate) fn pause_body(&mut self) {
        self.intake = Intake::BodyPaused;
    }

    /// The streaming body's consumer has room again.
    pub(crate) fn resume_body(&mut self) {
        // Bytes may wait in `rbuf`: parse them before reading more.
        self.intake = Intake::Held;
    }

    /// The header deadline runs from the first byte of a request head.
    fn note_head(&mut self, now: Instant) {
        if self.rbuf.is_empty() || self.decoder.in_body() {
            self.head_started = None;
        } else if self.head_started.is_none() {
            self.head_started = Some(now);
        }
    }

    /// No further requests: answer what was read, then close.
    fn stop_reading(&mut self) {
        if self.life == Life::Open {
            self.life = Life::Closing { refused: false };
        }
    }

    /// Answer the request [`Connection::poll_request`] returned, here and now.
    pub(crate) fn respond(
        &mut self,
        resp: &Response,
        ctx: EncodeContext,
        date: &DateCache,
        spare: &mut Buffers,
        now: Instant,
    ) {
        self.respond_with(|out| resp.encode(ctx, date, out), spare, now);
    }

    /// Answer the request [`Connection::poll_request`] returned, here and now, with what
    /// `encode` appends to the buffer it is given (it returns whether the connection stays
    /// open): straight into the output when nothing is owed before it.
    pub(crate) fn respond_with(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> bool,
        spare: &mut Buffers,
        now: Instant,
    ) {
        if self.slots.is_empty() && !self.discard {
            spare.lend(&mut self.wbuf);
            if !self.has_output() {
                self.last_write = now;
            }
            if !encode(&mut self.wbuf) {
                self.stop_reading();
                self.discard = true;
            }
        } else {
            let mut out = BytesMut::new();
            let keep = encode(&mut out);
            self.push_ready(&out, keep, now);
        }
    }

    /// Reserve the next response slot (a request sent to a pool); returns its sequence
    /// number, which its answer comes back with.
    pub(crate) fn push_pending(&mut self) -> u64 {
        self.slots.push_back(Slot::default());
        self.base_seq + self.slots.len() as u64 - 1
    }

    /// A request the pool had no room for: it waits here, and the connection parses no
    /// more, until [`Connection::take_stalled`] gives it another try.
    pub(crate) fn stall(&mut self, job: Job) {
        self.stalled = Some(Box::new(job));
    }

    /// The stalled request, to submit again.
    pub(crate) fn take_stalled(&mut self) -> Option<Job> {
        self.stalled.take().map(|j| *j)
    }

    /// A response that is ready now: straight to the output if nothing is owed before it.
    fn push_ready(&mut self, bytes: &[u8], keep_alive: bool, now: Instant) {
        if self.slots.is_empty() {
            if !self.discard {
                if !self.has_output() {
                    self.last_write = now;
                }
                self.wbuf.extend_from_slice(bytes);
            }
            if !keep_alive {
                self.stop_reading();
                self.discard = true;
            }
        } else {
            self.held = self.held.saturating_add(len32(bytes.len()));
            self.slots.push_back(Slot {
                parts: VecDeque::from([Bytes::copy_from_slice(bytes)]),
                end: Some(keep_alive),
            });
        }
    }

    /// A part of the response for `seq` from a worker or task: the whole of it, or the next
    /// piece of a stream; `end` (with whether the connection stays open) when it is the
    /// last. Moves what is now in order to the output, as far as the output bound allows.
    pub(crate) fn complete(
        &mut self,
        seq: u64,
        bytes: Bytes,
        end: Option<bool>,
        spare: &mut Buffers,
        now: Instant,
    ) {
        let Some(idx) = seq.checked_sub(self.base_seq) else {
            return;
        };
        let (waiting, ended) = match self.slots.get(idx as usize) {
            Some(slot) => (!slot.parts.is_empty(), slot.end.is_some()),
            None => return,
        };
        if ended {
            return;
        }
        if end.is_some() {
            self.last_answer = len32(bytes.len());
        }
        if !self.has_output() {
            self.last_write = now;
        }
        spare.lend(&mut self.wbuf);
        // The answer in order, with room for it: straight to the output (a worker's whole
        // answer usually is; holding it in its slot would allocate for every answer).
        let straight = idx == 0 && !waiting && room(self.discard, self.queued(), self.output());
        if straight && !self.discard {
            self.wbuf.extend_from_slice(&bytes);
        }
        let Some(slot) = self.slots.get_mut(idx as usize) else {
            return;
        };
        if !straight && !bytes.is_empty() {
            self.held = self.held.saturating_add(len32(bytes.len()));
            slot.parts.push_back(bytes);
        }
        slot.end = end;
        self.flush_slots();
    }

    /// Move the answers now in order to the output. A part waits in its slot while the
    /// output is past [`OUTPUT_BOUND`]: a streamed body's producer is paused by the parts it
    /// has outstanding (see `roles::runtime`), so holding them here is what makes a
    /// slow reader slow the stream down rather than grow our memory.
    fn flush_slots(&mut self) {
        // Sealed records and the send in flight do not change here; only `wbuf` grows.
        let (sealed, sending) = (self.sealed(), self.sending as usize);
        while let Some(slot) = self.slots.front_mut() {
            while !slot.parts.is_empty() {
                let queued = sealed + self.wbuf.len();
                if !room(self.discard, queued, queued + sending) {
                    return;
                }
                let part = slot.parts.pop_front().unwrap_or_default();
                self.held = self.held.saturating_sub(len32(part.len()));
                if !self.discard {
                    self.wbuf.extend_from_slice(&part);
                }
            }
            let Some(keep_alive) = slot.end else {
                return;
            };
            self.slots.pop_front();
            self.base_seq += 1;
            if !keep_alive {
                self.stop_reading();
                self.discard = true;
            }
        }
    }

    // ---- output ------------------------------------------------------------------------

    /// The output to send now, unless there is none, a send is still out, or the
    /// connection broke. Answers queued meanwhile wait behind it, in a buffer of their own:
    /// the send takes the whole buffer, not a split of it, because a split leaves the
    /// connection a handle on the send's allocation — parked on the free list, a few bytes'
    /// handle kept a 16 MiB answer's allocation alive for good.
    pub(crate) fn poll_transmit(&mut self) -> Option<BytesMut> {
        if self.sending > 0 || self.life == Life::Broken {
            return None;
        }
        if self.tls.is_some() {
            return self.poll_sealed();
        }
        if self.wbuf.is_empty() {
            return None;
        }
        let out = std::mem::take(&mut self.wbuf);
        self.sending = len32(out.len());
        Some(out)
    }

    /// TLS: seal the answers queued (and close_notify when they are the last), and give
    /// what is to be sent.
    fn poll_sealed(&mut self) -> Option<BytesMut> {
        let ending = self.ending();
        let tls = self.tls.as_mut()?;
        if !self.wbuf.is_empty() {
            tls.seal(&self.wbuf);
            self.wbuf.clear();
        }
        if ending {
            tls.close_notify();
        }
        let out = tls.poll_out()?;
        self.sending = len32(out.len());
        Some(out)
    }

    /// Answer bytes the server holds for this connection: queued, held by a send still in
    /// flight (io_uring), or waiting on a worker in `pool`.
    pub(crate) fn buffered_out(&self) -> u64 {
        (self.output() + self.held as usize) as u64
    }

    /// A send of [`Connection::poll_transmit`]'s buffer has not completed yet.
    pub(crate) fn sending(&self) -> bool {
        self.sending > 0
    }

    /// The send of [`Connection::poll_transmit`]'s buffer completed with `n` bytes taken
    /// (0 when the kernel took none now): what it did not take goes back in front of what
    /// was queued since. A buffer sent whole is handed back, for the driver's free list
    /// (which keeps it if small).
    pub(crate) fn sent(
        &mut self,
        mut buf: BytesMut,
        n: usize,
        now: Instant,
        tally: &mut Tally,
    ) -> Option<BytesMut> {
        tally.bytes_out += n as u64;
        self.sending = 0;
        if n > 0 {
            // The write deadline runs from the last time the kernel took something.
            self.last_write = now;
        }
        if n >= buf.len() {
            // Cleared, not advanced: an advanced view keeps shrinking with every answer
            // until the next encode has to reclaim the front (~70 instructions a request).
            buf.clear();
        } else {
            buf.advance(n);
        }
        if buf.is_empty() {
            if !self.slots.is_empty() {
                self.flush_slots();
            }
            return Some(buf);
        }
        if let Some(tls) = &mut self.tls {
            tls.unsent(buf);
            return None;
        }
        buf.unsplit(std::mem::take(&mut self.wbuf));
        self.wbuf = buf;
        None
    }

    // ---- deadlines and the end ---------------------------------------------------------

    /// The deadline [`Connection::poll_deadline`] named has passed.
    pub(crate) fn expire(
        &mut self,
        kind: Expiry,
        cx: &ParseContext<'_>,
        tally: &mut Tally,
    ) -> Expired {
        let expired = match kind {
            // Connected and never sent a byte (or never finished its TLS handshake):
            // nothing to answer.
            Expiry::Header if self.rbuf.is_empty() && !self.decoder.in_body() => Expired::Close,
            // As for a body whose framing breaks: the answer is the request's own.
            Expiry::Body if self.decoder.streaming_body() => {
                self.life = Life::Closing { refused: true };
                self.rbuf.clear();
                Expired::BodyTimedOut
            }
            Expiry::Header | Expiry::Body => {
                let mut out = BytesMut::new();
                refusal::respond(cx.refusals, 408, "request timed out").encode(
                    error_context(),
                    cx.date,
                    &mut out,
                );
                self.push_ready(&out, false, cx.now);
                self.life = Life::Closing { refused: true };
                self.rbuf.clear();
                tally.requests += 1;
                Expired::Answered
            }
            Expiry::Idle | Expiry::Write | Expiry::Linger => Expired::Close,
        };
        if expired == Expired::Close {
            // A handshake cut by a deadline ends as a timeout.
            if let Some(tls) = &mut self.tls {
                tls.abandon(TlsFailure::Timeout, &mut tally.tls);
            }
        }
        expired
    }

    /// After an event: keep the connection, half-close it, or close it. `idle_over`: a
    /// drain's grace for idle keep-alive connections has ended, so an idle one closes.
    pub(crate) fn poll_verdict(
        &mut self,
        now: Instant,
        linger: Duration,
        idle_over: bool,
    ) -> Verdict {
        if !(self.finished() || (idle_over && self.idle() && !self.lingering())) {
            return Verdict::Keep;
        }
        if self.life == Life::Broken || (self.peer_closed && self.mid_request()) {
            // The client went away mid-request (or reset): nobody to answer.
            return Verdict::Close { aborted: true };
        }
        if self.life == (Life::Closing { refused: true }) && !self.has_output() {
            self.life = Life::Lingering {
                until: now + linger,
            };
            return Verdict::HalfClose;
        }
        Verdict::Close { aborted: false }
    }

    /// Between requests a connection holds no buffers: they go back to the thread's free
    /// list and the next connection to read takes them. An idle keep-alive connection then
    /// costs its slab entry, not 16 KiB; a busy one reuses warm buffers without allocating.
    pub(crate) fn park_buffers(&mut self, spare: &mut Buffers) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 && !self.decoder.in_body() {
            spare.give(std::mem::take(&mut self.rbuf));
        }
        if self.wbuf.is_empty() && self.wbuf.capacity() > 0 {
            spare.give(std::mem::take(&mut self.wbuf));
        }
        if let Some(tls) = &mut self.tls {
            if tls.inbuf.is_empty() && tls.inbuf.capacity() > 0 {
                spare.give(std::mem::take(&mut tls.inbuf));
            }
        }
        if self.slots.is_empty() && self.slots.capacity() > 0 {
            self.slots = VecDeque::new();
        }
    }
}
