//! The words of the core's protocol: what comes in with an input besides the bytes
//! ([`ParseContext`], [`Stamp`]), and what goes out ([`Verdict`], [`Expiry`], [`Expired`],
//! [`Tally`]). See the parent module for the order they are used in.

use crate::app::refusal::RenderRefusal;
use crate::tls::session::TlsTally;
use h1::{DateCache, EncodeContext, Request};
use std::time::{Duration, Instant, SystemTime};

/// Which timeout a connection is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Header,
    Body,
    Idle,
    Write,
    Linger,
}

/// What to do with the connection once an event has been taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep it: read, write or wait as [`Connection::wants_read`] and the output say.
    Keep,
    /// Stop sending (`shutdown(SHUT_WR)`), then read and discard until the linger
    /// deadline: the close then sends FIN rather than RST and the client reads our refusal.
    HalfClose,
    /// Close the socket. `aborted`: a request was cut off (the peer went away mid-request
    /// or the connection broke).
    Close { aborted: bool },
}

/// What a passed deadline did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Nothing to answer: close now.
    Close,
    /// A 408 is queued: send it, then close (through [`Connection::poll_verdict`]).
    Answered,
    /// A streamed body stopped arriving after its request was handed out: its consumer is
    /// to be told (the request's own answer is the 408's place), then close.
    BodyTimedOut,
}

/// The context a request is parsed in: the application's body limits (asked once each head
/// is read), how refusals look, the clock's date, whether a drain is under way, `now`.
pub(crate) struct ParseContext<'a> {
    /// The application's body limit for a request whose head is read (a route's own limit,
    /// or `None` for the server's): asked, never called into, by the core.
    pub(crate) body_limit: &'a dyn Fn(&Request) -> Option<u64>,
    pub(crate) refusals: Option<&'a RenderRefusal>,
    /// Bodies longer than this (or chunked) are handed on as they arrive rather than read
    /// whole first (a service can take them so); `None`: every body whole.
    pub(crate) stream_over: Option<u64>,
    pub(crate) date: &'a DateCache,
    /// A drain is under way: answers say `Connection: close`.
    pub(crate) draining: bool,
    pub(crate) now: Instant,
}

/// A read the kernel timestamped: when its bytes reached the kernel, how many requests it
/// stands for (1, or [`crate::observe::queue_wait::SAMPLE_EVERY`] for a sampled read), and both
/// clocks as the driver read them at the read — the waits run to that moment, not to the
/// start of a round that may have served many connections first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) arrived: SystemTime,
    pub(crate) weight: u8,
    pub(crate) read_at: (Instant, SystemTime),
}

/// What a connection counted while it was driven: the driver adds it to its thread's
/// counters (the core writes none of them itself) and clears it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Bytes read from the client.
    pub(crate) bytes_in: u64,
    /// Bytes the kernel took from the output.
    pub(crate) bytes_out: u64,
    /// Requests answered here: refusals and 408s (a driver counts those its handlers run).
    pub(crate) requests: u64,
    /// Accept-queue waits, one per connection at its first timestamped read.
    pub(crate) accept_waits: Vec<Duration>,
    /// Receive-queue waits of the requests decoded, each with how many requests it stands
    /// for (a sampled read counts for several).
    pub(crate) receive_waits: Vec<(Duration, u32)>,
    /// Handshakes, failures and the change in handshakes in flight (TLS listeners).
    pub(crate) tls: TlsTally,
}

impl Tally {
    /// Whether nothing was counted.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes_in == 0
            && self.bytes_out == 0
            && self.requests == 0
            && self.accept_waits.is_empty()
            && self.receive_waits.is_empty()
            && self.tls.is_empty()
    }
}

/// What [`super::Connection::poll_request`] found in the bytes received.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Polled {
    /// A request, its body read whole.
    Request(Request, EncodeContext),
    /// A request whose body follows in [`Polled::Body`] pieces (its length, when known).
    Streaming(Request, EncodeContext, Option<u64>),
    /// The next piece of the streaming request's body; `true`: its last.
    Body(bytes::Bytes, bool),
    /// The streaming request's body broke its framing or its limit: its consumer is to be
    /// told (the request has its answer coming; a refusal would be a second one), and no
    /// request follows.
    BodyFailed(h1::Error),
}
