//! One client connection's state, owned by exactly one reader thread.
//!
//! Buffers are `BytesMut`: reads land in `rbuf` straight from the kernel, requests are cut
//! out of it without copying, and every response ready for the connection is appended to
//! `wbuf` so that it leaves in one `write`. In `pool`, responses come back from workers out
//! of order; `slots` puts them back in request order before they reach `wbuf`.

use crate::config::Timeouts;
use crate::worker::Job;
use bytes::{Bytes, BytesMut};
use h1::{Limits, RequestDecoder};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Instant;

/// Unsent output past which a connection's further requests wait: a client that pipelines
/// and never reads must not grow our memory.
pub(crate) const OUTPUT_BOUND: usize = 256 * 1024;
/// Requests of one connection in the worker pool at once (`pool`); past it reading pauses.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// Requests of one connection in the worker pool before any answer has come back.
const INITIAL_IN_FLIGHT: usize = 4;

/// [`Connection::timer_tick`] when the connection has no entry in the wheel.
pub(crate) const NO_TICK: u64 = u64::MAX;

/// [`Connection::receive_wait_us`] when no wait is known.
pub(crate) const NO_WAIT: u32 = u32::MAX;

/// A response slot in request order: `None` until its worker answers.
pub(crate) type Slot = Option<(Bytes, bool)>;

pub(crate) struct Connection {
    pub(crate) fd: OwnedFd,
    /// The client's address, as accept reported it; each request carries a copy.
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) gen: u32,
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) decoder: RequestDecoder,
    /// Edge-triggered: the kernel may hold bytes we have not read yet.
    pub(crate) readable: bool,
    /// The client closed its sending side (read returned 0).
    pub(crate) peer_closed: bool,
    /// epoll reported the client's FIN: read until a read returns 0, since a short read
    /// before it is followed by no further edge.
    pub(crate) fin_seen: bool,
    /// No further requests will be read; close once the answers are out.
    pub(crate) closing: bool,
    /// A read or write failed: close now.
    pub(crate) broken: bool,
    /// The connection ended on a refused request: half-close before closing.
    pub(crate) refused: bool,
    /// Responses not yet written, in request order (`pool`).
    pub(crate) slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    pub(crate) base_seq: u64,
    /// A response that closes the connection was written: drop the rest.
    pub(crate) discard: bool,
    /// A request that found the worker queue full (`pool` backpressure).
    pub(crate) stalled: Option<Box<Job>>,
    /// The parser stopped for want of bytes (not because of backpressure). Reading more
    /// while whole requests still wait in `rbuf` would only move the client's backlog from
    /// the kernel's receive queue, where it slows the client, into our memory.
    pub(crate) wants_bytes: bool,
    /// Requests parsed so far (saturating).
    pub(crate) requests: u32,
    /// When `accept` returned this connection.
    pub(crate) accepted_at: Instant,
    /// How long the first bytes of the request now in `rbuf` waited in the kernel's receive
    /// queue, in µs ([`NO_WAIT`]: not known), counted for each request they begin.
    pub(crate) receive_wait_us: u32,
    /// The accept-queue wait is still to be counted, at the first timestamped read.
    pub(crate) accept_wait_pending: bool,
    /// When the bytes of the request head now in `rbuf` started to arrive.
    pub(crate) head_started: Option<Instant>,
    pub(crate) last_read: Instant,
    pub(crate) last_write: Instant,
    /// The tick of this connection's live entry in its thread's timer wheel.
    /// [`NO_TICK`] when none (a sentinel, not an `Option`: it saves 8 bytes per connection).
    pub(crate) timer_tick: u64,
    /// Half-closed after a refusal: discarding input until this instant, then close.
    pub(crate) lingering: Option<Instant>,
    /// Bytes discarded while lingering.
    pub(crate) discarded: u32,
    /// Bytes of answers waiting in `slots` for an earlier one (`pool`).
    pub(crate) held: usize,
    /// Size of the last answer a worker sent: how many more requests the output bound can
    /// afford to have in flight (`pool`).
    pub(crate) last_answer: u32,
}

/// Which timeout a connection is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Header,
    Body,
    Idle,
    Write,
    Linger,
}

impl Connection {
    pub(crate) fn new(
        fd: OwnedFd,
        peer: Option<SocketAddr>,
        gen: u32,
        limits: Limits,
        now: Instant,
    ) -> Self {
        Connection {
            fd,
            peer,
            gen,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            decoder: RequestDecoder::new(limits),
            readable: false,
            peer_closed: false,
            fin_seen: false,
            closing: false,
            broken: false,
            refused: false,
            slots: VecDeque::new(),
            base_seq: 0,
            discard: false,
            stalled: None,
            wants_bytes: true,
            requests: 0,
            accepted_at: now,
            receive_wait_us: NO_WAIT,
            accept_wait_pending: true,
            head_started: None,
            last_read: now,
            last_write: now,
            timer_tick: NO_TICK,
            lingering: None,
            discarded: 0,
            held: 0,
            last_answer: 0,
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
    pub(crate) fn deadline(&self, t: &Timeouts) -> Option<(Instant, Expiry)> {
        if let Some(until) = self.lingering {
            return Some((until, Expiry::Linger));
        }
        if !self.wbuf.is_empty() {
            return Some((self.last_write + t.write, Expiry::Write));
        }
        if !self.slots.is_empty() || self.stalled.is_some() {
            return None;
        }
        if self.decoder.in_body() {
            return Some((self.last_read + t.body, Expiry::Body));
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
        !self.closing
            && !self.broken
            && self.stalled.is_none()
            && self.slots.len() < self.in_flight_cap()
            && self.wbuf.len() + self.held < OUTPUT_BOUND
    }

    /// Whether to read from the socket now.
    pub(crate) fn may_read(&self) -> bool {
        self.readable && !self.peer_closed && self.wants_bytes && self.may_parse()
    }

    /// Every answer is out and nothing more will come: close.
    pub(crate) fn finished(&self) -> bool {
        self.broken
            || ((self.closing || self.peer_closed)
                && self.slots.is_empty()
                && self.wbuf.is_empty()
                && self.stalled.is_none())
    }

    /// Part of a request has been read and not the rest: a close now aborts it.
    pub(crate) fn mid_request(&self) -> bool {
        !self.rbuf.is_empty() || self.decoder.in_body()
    }

    /// Nothing in progress: no partial request, nothing owed. Safe to close when draining.
    pub(crate) fn idle(&self) -> bool {
        self.rbuf.is_empty()
            && !self.decoder.in_body()
            && self.slots.is_empty()
            && self.wbuf.is_empty()
            && self.stalled.is_none()
    }

    /// Reserve the next response slot; returns its sequence number.
    pub(crate) fn push_pending(&mut self) -> u64 {
        self.slots.push_back(None);
        self.base_seq + self.slots.len() as u64 - 1
    }

    /// A response that is ready now: straight to the output if nothing is owed before it.
    pub(crate) fn push_ready(&mut self, bytes: &[u8], keep_alive: bool) {
        if self.slots.is_empty() {
            if !self.discard {
                self.wbuf.extend_from_slice(bytes);
            }
            if !keep_alive {
                self.closing = true;
                self.discard = true;
            }
        } else {
            self.held += bytes.len();
            self.slots
                .push_back(Some((Bytes::copy_from_slice(bytes), keep_alive)));
        }
    }

    /// A worker's response for `seq`. Moves every response now in order to the output.
    pub(crate) fn complete(&mut self, seq: u64, bytes: Bytes, keep_alive: bool) {
        let Some(idx) = seq.checked_sub(self.base_seq) else {
            return;
        };
        self.last_answer = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            self.held += bytes.len();
            *slot = Some((bytes, keep_alive));
        }
        while let Some(Some(_)) = self.slots.front() {
            let Some(Some((bytes, keep_alive))) = self.slots.pop_front() else {
                break;
            };
            self.held -= bytes.len();
            self.base_seq += 1;
            if !self.discard {
                self.wbuf.extend_from_slice(&bytes);
            }
            if !keep_alive {
                self.closing = true;
                self.discard = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn conn() -> Connection {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        Connection::new(OwnedFd::from(l), None, 0, Limits::default(), Instant::now())
    }

    #[test]
    fn out_of_order_completions_are_written_in_request_order() {
        let mut c = conn();
        let a = c.push_pending();
        let b = c.push_pending();
        c.push_ready(b"C", true);
        c.complete(b, Bytes::from_static(b"B"), true);
        assert!(c.wbuf.is_empty(), "B must wait for A");
        c.complete(a, Bytes::from_static(b"A"), true);
        assert_eq!(&c.wbuf[..], b"ABC");
        assert!(c.slots.is_empty());
    }

    #[test]
    fn a_closing_response_drops_the_ones_after_it() {
        let mut c = conn();
        let a = c.push_pending();
        let b = c.push_pending();
        c.complete(b, Bytes::from_static(b"B"), true);
        c.complete(a, Bytes::from_static(b"A"), false);
        assert_eq!(&c.wbuf[..], b"A");
        assert!(c.closing);
    }
}

#[cfg(test)]
mod size {
    /// Every open connection carries one of these even while idle; buffers are lent only
    /// while bytes are in flight. Keep it small (nginx spends ~560 B per idle connection).
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<super::Connection>();
        assert!(size <= 400, "Connection is {size} bytes");
    }
}
