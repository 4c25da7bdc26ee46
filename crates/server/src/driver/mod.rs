//! The seam between the event loop and the kernel's I/O interface (the mio `Selector` idea).
//!
//! The loop ([`crate::event_loop`]), the acceptor and the reader are written once over
//! [`Driver`]; what differs between readiness (epoll) and completions (io_uring) lives in one
//! file per driver, with the state each keeps per connection ([`Io::Conn`]) and per listener.
//! A round is: [`Driver::wait`] (submit what was queued, sleep until something happens or
//! the deadline), then [`Driver::dispatch`], which hands every [`Event`] to the loop together
//! with an [`Io`] handle through which the roles act on their sockets. Neither role ever asks
//! which driver it has: where the two differ (who reads a socket, who sends, how a listener
//! is armed), the [`Io`] method does what its driver needs, and does nothing where that
//! driver needs nothing.
//!
//! What the two drivers do for the same call:
//!
//! | call | epoll | io_uring |
//! |---|---|---|
//! | [`Io::open`] | register, edge-triggered | arm a multishot receive |
//! | [`Io::read`] | `read`/`recvmsg` into the connection's buffer | never asked: bytes come as [`ConnEvent::Received`] |
//! | [`Io::write`] | `write` until the kernel stops taking | one `send` in flight, its buffer back in [`ConnEvent::Sent`] |
//! | [`Io::want_input`] | nothing (edges keep coming) | arm or cancel the receive (backpressure) |
//! | [`Io::close`] | `close` | cancel what is in flight, queue the close |
//! | [`Io::detach`] | deregister | nothing (a connection is moved only once its receive ended) |
//! | [`Io::listen`] | register or deregister the listeners | multishot accept, or a readiness poll near the ceiling |

pub(crate) mod epoll;
#[cfg(test)]
pub(crate) mod fake;
pub(crate) mod token;
pub(crate) mod uring;

use crate::connection::buffers::Buffers;
use crate::connection::{Connection, Tally};
use crate::driver::token::Token;
use bytes::BytesMut;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use sys::Waker;

/// One thread's I/O interface: made on the loop's thread (an io_uring belongs to the thread
/// that made it), polling the loop's waker from the start.
pub(crate) trait Driver: Sized {
    /// What the driver keeps for each connection (in the reader's table, beside the core).
    type Conn: Default;
    /// What a connection event tells the driver about its own state (see [`Io::note`]).
    type Note: Copy;
    /// The handle the roles act through during a round (`'s`: the round's borrow of the
    /// driver's queue, itself borrowed for `'r`).
    type Io<'s, 'r>: Io<Conn = Self::Conn, Note = Self::Note>
    where
        Self: 'r,
        'r: 's;

    /// Accepted sockets are made non-blocking (readiness) or left blocking (completions
    /// wait in the kernel, never in a `read`).
    const NONBLOCKING: bool;
    /// A peer's reset may go unreported while a connection waits for bytes (see
    /// [`Io::may_miss_reset`]): only then do its readers look for such connections.
    const MAY_MISS_RESETS: bool;

    fn new(waker: &Arc<Waker>) -> io::Result<Self>;
    /// Submit what was queued and sleep until something happens, at most `timeout`.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Hand every event of the round to `f`, listeners' first where the driver can tell
    /// (a connection waiting in the accept queue holds a slot a burst needs).
    fn dispatch(&mut self, f: impl FnMut(&mut Self::Io<'_, '_>, Event<'_, Self::Note>));
    /// Act outside `dispatch` (before the wait, when a drain begins).
    fn with_io<R>(&mut self, f: impl FnOnce(&mut Self::Io<'_, '_>) -> R) -> R;
}

/// What happened, whichever driver saw it.
pub(crate) enum Event<'a, N> {
    /// The loop's eventfd fired: another thread wants it to look at its inboxes.
    Woken,
    /// Listener `index` has connections queued: take a batch with `accept4`.
    ListenerReady(usize),
    /// The driver accepted a connection itself (io_uring's multishot accept), or the
    /// accept failed.
    Accepted(io::Result<OwnedFd>),
    /// Something for a connection; the note is the driver's own (see [`Io::note`]).
    Conn(Token, ConnEvent<'a>, N),
}

/// What happened on a connection.
pub(crate) enum ConnEvent<'a> {
    /// The socket has something to read — bytes, the FIN — which [`Io::read`] takes when
    /// the reader drives it; `broken`: the peer reset it (nothing can be answered).
    Ready { broken: bool },
    /// Bytes the driver received for it (an empty slice is the FIN), or the error that
    /// ended the receive; `arrived` is the kernel's stamp when timestamps are on.
    Received {
        data: io::Result<&'a [u8]>,
        arrived: Option<SystemTime>,
    },
    /// A send finished: how much the kernel took, and the buffer back.
    Sent {
        result: io::Result<usize>,
        buf: BytesMut,
    },
}

/// A listening socket, as a driver polls it (the acceptor's listeners are these; the driver
/// needs no more of them).
pub(crate) trait ListenSocket: AsFd {
    /// Connections come passed over a Unix socket (received, not accepted): it can only be
    /// polled, then read.
    fn is_passed(&self) -> bool;
}

/// How the acceptor wants its listeners polled from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listen {
    /// Not now (at the ceiling, paused, or another thread holds the accept mutex).
    Off,
    /// Tell of queued connections. `exclusive`: the socket is shared and one waiter is
    /// woken per connection (EPOLLEXCLUSIVE); `own`: no other thread accepts from it;
    /// `room`: connections `--max-conns` still allows.
    On {
        exclusive: bool,
        own: bool,
        room: usize,
    },
    /// Shutting down: cancel everything armed and arm nothing again.
    Stop,
}

/// A connection's core and what a write reports to, lent to [`Io::write`].
pub(crate) struct Written<'a> {
    pub(crate) conn: &'a mut Connection,
    pub(crate) tally: &'a mut Tally,
    /// Where a buffer sent whole goes back.
    pub(crate) spare: &'a mut Buffers,
    pub(crate) now: Instant,
}

/// The result of one [`Io::read`].
#[derive(Debug)]
pub(crate) enum Read {
    /// `n` bytes appended to the buffer (with the kernel's stamp for a timed read).
    Bytes(usize, Option<SystemTime>),
    /// The peer's FIN.
    Closed,
    /// Nothing to read now; the driver tells when there is.
    Again,
    /// The read failed: the connection is broken.
    Failed,
}

/// What the roles ask of the driver during a round.
pub(crate) trait Io {
    type Conn: Default;
    type Note: Copy;

    /// Poll (or stop polling) the acceptor's listeners.
    fn listen<L: ListenSocket>(&mut self, listeners: &[Arc<L>], how: Listen);
    /// Move this thread to the back of the shared listeners' waiters (EPOLLEXCLUSIVE wakes
    /// the last to wait first, so a busy thread would keep every connection).
    fn requeue<L: ListenSocket>(&mut self, listeners: &[Arc<L>]);
    /// Whether anything is still armed on the listeners (after [`Listen::Stop`], the
    /// acceptor closes once nothing is: a connection taken before the cancel is answered).
    fn listening(&self) -> bool;

    /// Start serving a connection: events for it carry `token`.
    fn open(
        &mut self,
        fd: &OwnedFd,
        token: Token,
        c: &mut Self::Conn,
        stamps: bool,
    ) -> io::Result<()>;
    /// Take in what an event said about the connection's driver state.
    fn note(c: &mut Self::Conn, note: Self::Note);
    /// Whether the socket may hold bytes [`Io::read`] would take.
    fn input_waiting(c: &Self::Conn) -> bool;
    /// Whether to read until the socket says there is nothing (a drain: a request the
    /// client already sent is answered, not lost).
    fn read_all(c: &mut Self::Conn);
    /// Read into `buf` (its spare capacity); `timed`: through `recvmsg`, for the kernel's
    /// receive timestamp.
    fn read(&mut self, fd: &OwnedFd, c: &mut Self::Conn, buf: &mut BytesMut, timed: bool) -> Read;
    /// Send what the connection has ready ([`Connection::poll_transmit`]).
    fn write(&mut self, fd: &OwnedFd, token: Token, w: Written<'_>);
    /// Stop sending (a refusal's half-close), then read until the FIN.
    fn shutdown_write(&mut self, fd: &OwnedFd, c: &mut Self::Conn);
    /// Take bytes from the kernel while `wants`; leave them there (and slow the client)
    /// while not.
    fn want_input(
        &mut self,
        fd: &OwnedFd,
        token: Token,
        c: &mut Self::Conn,
        wants: bool,
        stamps: bool,
    );
    /// Close the connection (`sending`: a send may still be in flight).
    fn close(&mut self, fd: OwnedFd, c: Self::Conn, sending: bool);
    /// Whether nothing is armed on the connection (no receive, and the reader knows of no
    /// send): it may move to another thread's driver.
    fn quiet(c: &Self::Conn) -> bool;
    /// Stop serving a quiet connection here without closing it: it moves to another loop.
    fn detach(&mut self, fd: &OwnedFd, c: Self::Conn);
    /// Whether a reset may go unreported while the connection waits for bytes (see
    /// `Reader::sweep_reset`): such a driver's readers ask the kernel now and then.
    fn may_miss_reset(c: &Self::Conn) -> bool;
}
