//! The readiness driver: one epoll per loop, sockets edge-triggered, the reader reading and
//! writing them itself.
//!
//! Edge-triggered: a read shorter than the buffer means the kernel queue is empty, so a
//! keep-alive request costs one `read` and one `write`, with `epoll_wait` amortised. What an
//! edge said is kept per connection ([`EdgeState`]) until a read has used it up. Listeners
//! are level-triggered, so an acceptor may stop after a batch and leave the rest queued in
//! the kernel.

use super::Written;
use super::{ConnEvent, Driver, Event, Io, Listen, ListenSocket, Read};
use crate::driver::token::Token;
use bytes::BytesMut;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;
use sys::{Epoll, Events, Interest, Readiness, Waker};

/// Events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;

pub(crate) struct EpollDriver {
    epoll: Epoll,
    events: Events,
    /// Whether the acceptor's listeners are registered.
    listening: bool,
}

/// What the last edges said about a connection.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EdgeState {
    /// The kernel may hold bytes we have not read yet.
    readable: bool,
    /// The client's FIN was reported: read until a read returns 0, since a short read
    /// before it is followed by no further edge.
    fin_seen: bool,
}

/// The handle a round acts through.
pub(crate) struct EpollIo<'a> {
    epoll: &'a Epoll,
    listening: &'a mut bool,
}

impl Driver for EpollDriver {
    type Conn = EdgeState;
    type Note = Readiness;
    type Io<'s, 'r>
        = EpollIo<'s>
    where
        Self: 'r,
        'r: 's;
    const NONBLOCKING: bool = true;
    const MAY_MISS_RESETS: bool = false;

    fn new(waker: &Arc<Waker>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.add(&**waker, Token::Waker.to_u64(), Interest::Readable)?;
        Ok(EpollDriver {
            epoll,
            events: Events::with_capacity(EVENTS_PER_WAIT),
            listening: false,
        })
    }

    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.epoll.wait(&mut self.events, timeout)
    }

    fn dispatch(&mut self, mut f: impl FnMut(&mut EpollIo<'_>, Event<'_, Readiness>)) {
        let EpollDriver {
            epoll,
            events,
            listening,
        } = self;
        let mut io = EpollIo { epoll, listening };
        // Accept first (nginx does the same with its posted accept events): a connection
        // waiting in the accept queue holds a slot there that a burst needs, and the queue
        // overflows while the loop serves requests ahead of it.
        for (raw, _) in events.iter() {
            if let Token::Listener(index) = Token::from_u64(raw) {
                f(&mut io, Event::ListenerReady(usize::from(index)));
            }
        }
        for (raw, readiness) in events.iter() {
            match Token::from_u64(raw) {
                Token::Waker => f(&mut io, Event::Woken),
                Token::Listener(_) => {}
                token @ Token::Conn { .. } => {
                    let broken = readiness.broken();
                    f(
                        &mut io,
                        Event::Conn(token, ConnEvent::Ready { broken }, readiness),
                    );
                }
            }
        }
    }

    fn with_io<R>(&mut self, f: impl FnOnce(&mut EpollIo<'_>) -> R) -> R {
        f(&mut EpollIo {
            epoll: &self.epoll,
            listening: &mut self.listening,
        })
    }
}

impl EpollIo<'_> {
    fn register<L: ListenSocket>(&mut self, listeners: &[Arc<L>], exclusive: bool) {
        if *self.listening {
            return;
        }
        let interest = if exclusive {
            Interest::ReadableExclusive
        } else {
            Interest::Readable
        };
        for (i, l) in listeners.iter().enumerate() {
            if let Err(err) = self
                .epoll
                .add(&**l, Token::Listener(i as u16).to_u64(), interest)
            {
                tracing::error!(%err, "cannot poll listener");
            }
        }
        *self.listening = true;
    }

    fn deregister<L: ListenSocket>(&mut self, listeners: &[Arc<L>]) {
        if !*self.listening {
            return;
        }
        for l in listeners {
            let _ = self.epoll.delete(&**l);
        }
        *self.listening = false;
    }
}

impl Io for EpollIo<'_> {
    type Conn = EdgeState;
    type Note = Readiness;

    fn listen<L: ListenSocket>(&mut self, listeners: &[Arc<L>], how: Listen) {
        match how {
            Listen::On { exclusive, .. } => self.register(listeners, exclusive),
            Listen::Off | Listen::Stop => self.deregister(listeners),
        }
    }

    fn requeue<L: ListenSocket>(&mut self, listeners: &[Arc<L>]) {
        self.deregister(listeners);
        self.register(listeners, true);
    }

    fn listening(&self) -> bool {
        *self.listening
    }

    fn open(&mut self, fd: &OwnedFd, token: Token, _: &mut EdgeState, _: bool) -> io::Result<()> {
        // Registration reports data that is already waiting (TCP_DEFER_ACCEPT, fast
        // clients): epoll checks readiness when a file is added.
        self.epoll.add(fd, token.to_u64(), Interest::Connection)
    }

    fn note(c: &mut EdgeState, readiness: Readiness) {
        if readiness.peer_closed() {
            c.fin_seen = true;
        }
        if readiness.readable() {
            c.readable = true;
        }
    }

    fn input_waiting(c: &EdgeState) -> bool {
        c.readable
    }

    fn read_all(c: &mut EdgeState) {
        c.readable = true;
    }

    fn read(&mut self, fd: &OwnedFd, c: &mut EdgeState, buf: &mut BytesMut, timed: bool) -> Read {
        let spare = buf.capacity() - buf.len();
        loop {
            let read = if timed {
                sys::socket::recv_into(fd, buf, 1)
            } else {
                sys::socket::read_into(fd, buf, 1).map(|n| (n, None))
            };
            return match read {
                Ok((0, _)) => Read::Closed,
                Ok((n, arrived)) => {
                    // A short read emptied the kernel queue; the next edge tells us when
                    // more arrives — unless the client's FIN came with these bytes: then
                    // no edge will come, and the read that returns 0 must be made now.
                    if n < spare && !c.fin_seen {
                        c.readable = false;
                    }
                    Read::Bytes(n, arrived)
                }
                Err(err) if sys::would_block(&err) => {
                    c.readable = false;
                    Read::Again
                }
                Err(err) if sys::interrupted(&err) => continue,
                Err(_) => Read::Failed,
            };
        }
    }

    /// Write what is ready; whatever the kernel does not take waits for the next writable
    /// edge.
    fn write(&mut self, fd: &OwnedFd, _: Token, w: Written<'_>) {
        while let Some(out) = w.conn.poll_transmit() {
            let (n, more) = loop {
                match sys::socket::write(fd, &out) {
                    Ok(n) => break (n, n == out.len()),
                    Err(err) if sys::would_block(&err) => break (0, false),
                    Err(err) if sys::interrupted(&err) => continue,
                    Err(_) => {
                        w.conn.broke();
                        break (0, false);
                    }
                }
            };
            if let Some(buf) = w.conn.sent(out, n, w.now, w.tally) {
                w.spare.give(buf);
            }
            if !more {
                break;
            }
        }
    }

    fn shutdown_write(&mut self, fd: &OwnedFd, c: &mut EdgeState) {
        let _ = sys::socket::shutdown_write(fd);
        c.readable = true;
    }

    fn want_input(&mut self, _: &OwnedFd, _: Token, _: &mut EdgeState, _: bool, _: bool) {}

    fn close(&mut self, fd: OwnedFd, _: EdgeState, _: bool) {
        // Closing the last descriptor takes it out of the epoll.
        drop(fd);
    }

    fn may_miss_reset(_: &EdgeState) -> bool {
        false
    }

    fn quiet(_: &EdgeState) -> bool {
        true
    }

    fn detach(&mut self, fd: &OwnedFd, _: EdgeState) {
        // Bytes already waiting are reported to the next epoll when it registers the fd.
        let _ = self.epoll.delete(fd);
    }
}
